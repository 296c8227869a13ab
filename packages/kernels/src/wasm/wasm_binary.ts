// A small WebAssembly binary emitter, so the fast CPU kernels are written in TypeScript and need no
// C/Rust toolchain (the route jax-js takes). It covers exactly what the kernels use: one imported
// memory (shared when threads are available), functions with typed locals, structured control flow,
// scalar i32/f32/f64, the 128-bit SIMD proposal, the relaxed-SIMD fused multiply-add, and i32 atomics.
//
// Code is built as expression trees flattened to bytes: every helper returns the bytes of an
// instruction together with its operands' bytes (post-order), so `f32x4.add(a, b)` reads like the
// value it computes. Binary format: WebAssembly Core Specification 2.0, chapter 5 (binary format);
// opcodes of SIMD (0xfd prefix), relaxed SIMD and threads (0xfe prefix) from their proposals.

export type Code = number[];

/** A fixed-length tuple type, for destructuring local indices. */
export type Tuple<T, N extends number, R extends T[] = []> = number extends N ? T[] : R['length'] extends N ? R : Tuple<T, N, [T, ...R]>;

export const enum ValType { i32 = 0x7f, i64 = 0x7e, f32 = 0x7d, f64 = 0x7c, v128 = 0x7b }

/** Unsigned LEB128. */
export function uleb(v: number): number[] {
  const out: number[] = [];
  let x = v >>> 0;
  if (v > 0xffffffff || v < 0) throw new Error(`uleb: ${v} is not a u32`);
  do {
    let byte = x & 0x7f;
    x >>>= 7;
    if (x !== 0) byte |= 0x80;
    out.push(byte);
  } while (x !== 0);
  return out;
}

/** Signed LEB128 of a 32-bit integer. */
export function sleb(v: number): number[] {
  const out: number[] = [];
  let x = v | 0;
  if (x !== v) throw new Error(`sleb: ${v} is not an i32`);
  for (;;) {
    const byte = x & 0x7f;
    x >>= 7;
    if ((x === 0 && (byte & 0x40) === 0) || (x === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

const f32Bytes = (v: number): number[] => Array.from(new Uint8Array(new Float32Array([v]).buffer));
const f64Bytes = (v: number): number[] => Array.from(new Uint8Array(new Float64Array([v]).buffer));
const cat = (...parts: Code[]): Code => ([] as number[]).concat(...parts);
/** memarg: alignment exponent and byte offset. */
const mem = (align: number, offset: number): number[] => [...uleb(align), ...uleb(offset)];
const simd = (opcode: number): number[] => [0xfd, ...uleb(opcode)];

// ------------------------------------------------------------------------------ control and locals
/** A sequence of instructions: bytes and pieces of code, in order (flattened one level). */
export type Body = (number | Code)[];
const flat = (b: Body): Code => {
  const out: number[] = [];
  for (const x of b) {
    if (typeof x === 'number') out.push(x);
    else for (const y of x) out.push(y);
  }
  return out;
};

export const block = (body: Body): Code => cat([0x02, 0x40], flat(body), [0x0b]);
export const loop = (body: Body): Code => cat([0x03, 0x40], flat(body), [0x0b]);
export const if_ = (cond: Code, then: Body, else_?: Body): Code =>
  cat(cond, [0x04, 0x40], flat(then), else_ ? cat([0x05], flat(else_)) : [], [0x0b]);
/** Branch to the enclosing label `depth` levels out (0 = innermost). */
export const br = (depth: number): Code => [0x0c, ...uleb(depth)];
export const br_if = (depth: number, cond: Code): Code => cat(cond, [0x0d, ...uleb(depth)]);
export const ret = (value?: Code): Code => cat(value ?? [], [0x0f]);
export const call = (fn: number, ...args: Code[]): Code => cat(...args, [0x10, ...uleb(fn)]);
export const drop = (v: Code): Code => cat(v, [0x1a]);
export const select = (a: Code, b: Code, cond: Code): Code => cat(a, b, cond, [0x1b]);
export const get = (l: number): Code => [0x20, ...uleb(l)];
export const set = (l: number, v: Code): Code => cat(v, [0x21, ...uleb(l)]);
export const tee = (l: number, v: Code): Code => cat(v, [0x22, ...uleb(l)]);

/**
 * for (i = start; i < end; i += step) body, as block { loop { br_if exit (i >= end); body; i += step;
 * br loop } }. `end` is re-evaluated each iteration. Inside `body`, br(1) leaves the loop (there is no
 * `continue`: guard the rest of the body with if_).
 */
export function forRange(i: number, start: Code, end: Code, step: number | Code, body: Body): Code {
  const inc = typeof step === 'number' ? i32.const(step) : step;
  return cat(
    set(i, start),
    block(loop([br_if(1, i32.ge_s(get(i), end)), flat(body), set(i, i32.add(get(i), inc)), br(0)])),
  );
}

// ------------------------------------------------------------------------------ scalar ops
const bin = (opc: number) => (a: Code, b: Code): Code => cat(a, b, [opc]);
const un = (opc: number) => (a: Code): Code => cat(a, [opc]);

export const i32 = {
  const: (v: number): Code => [0x41, ...sleb(v)],
  load: (addr: Code, offset = 0): Code => cat(addr, [0x28], mem(2, offset)),
  store: (addr: Code, v: Code, offset = 0): Code => cat(addr, v, [0x36], mem(2, offset)),
  eqz: un(0x45), eq: bin(0x46), ne: bin(0x47), lt_s: bin(0x48), lt_u: bin(0x49), gt_s: bin(0x4a),
  gt_u: bin(0x4b), le_s: bin(0x4c), le_u: bin(0x4d), ge_s: bin(0x4e), ge_u: bin(0x4f),
  add: bin(0x6a), sub: bin(0x6b), mul: bin(0x6c), div_s: bin(0x6d), div_u: bin(0x6e), rem_s: bin(0x6f),
  rem_u: bin(0x70), and: bin(0x71), or: bin(0x72), xor: bin(0x73), shl: bin(0x74), shr_s: bin(0x75), shr_u: bin(0x76),
  trunc_f32_s: un(0xa8), trunc_f64_s: un(0xaa), reinterpret_f32: un(0xbc),
  min_s: (a: Code, b: Code, tmpA: number, tmpB: number): Code => select(tee(tmpA, a), tee(tmpB, b), i32.lt_s(get(tmpA), get(tmpB))),
  // threads proposal
  atomic_load: (addr: Code, offset = 0): Code => cat(addr, [0xfe, 0x10], mem(2, offset)),
  atomic_add: (addr: Code, v: Code, offset = 0): Code => cat(addr, v, [0xfe, 0x1e], mem(2, offset)),
};

export const f32 = {
  const: (v: number): Code => [0x43, ...f32Bytes(v)],
  load: (addr: Code, offset = 0): Code => cat(addr, [0x2a], mem(2, offset)),
  store: (addr: Code, v: Code, offset = 0): Code => cat(addr, v, [0x38], mem(2, offset)),
  eq: bin(0x5b), ne: bin(0x5c), lt: bin(0x5d), gt: bin(0x5e), le: bin(0x5f), ge: bin(0x60),
  abs: un(0x8b), neg: un(0x8c), floor: un(0x8e), sqrt: un(0x91),
  add: bin(0x92), sub: bin(0x93), mul: bin(0x94), div: bin(0x95), min: bin(0x96), max: bin(0x97),
  convert_i32_s: un(0xb2), demote_f64: un(0xb6), reinterpret_i32: un(0xbe),
};

export const f64 = {
  const: (v: number): Code => [0x44, ...f64Bytes(v)],
  load: (addr: Code, offset = 0): Code => cat(addr, [0x2b], mem(3, offset)),
  store: (addr: Code, v: Code, offset = 0): Code => cat(addr, v, [0x39], mem(3, offset)),
  lt: bin(0x63), gt: bin(0x64),
  abs: un(0x99), neg: un(0x9a), sqrt: un(0x9f),
  add: bin(0xa0), sub: bin(0xa1), mul: bin(0xa2), div: bin(0xa3), max: bin(0xa5),
  convert_i32_s: un(0xb7), promote_f32: un(0xbb),
};

// ------------------------------------------------------------------------------ SIMD
const sbin = (opc: number) => (a: Code, b: Code): Code => cat(a, b, simd(opc));
const sun = (opc: number) => (a: Code): Code => cat(a, simd(opc));

export const v128 = {
  load: (addr: Code, offset = 0): Code => cat(addr, simd(0x00), mem(0, offset)),
  /** Aligned-hint variant is not used: unaligned v128 loads are as fast on current x86/ARM cores. */
  load32_splat: (addr: Code, offset = 0): Code => cat(addr, simd(0x09), mem(2, offset)),
  load32_zero: (addr: Code, offset = 0): Code => cat(addr, simd(0x5c), mem(2, offset)),
  load64_zero: (addr: Code, offset = 0): Code => cat(addr, simd(0x5d), mem(3, offset)),
  store: (addr: Code, v: Code, offset = 0): Code => cat(addr, v, simd(0x0b), mem(0, offset)),
  store32_lane: (addr: Code, v: Code, lane: number, offset = 0): Code => cat(addr, v, simd(0x5a), mem(2, offset), [lane]),
  store64_lane: (addr: Code, v: Code, lane: number, offset = 0): Code => cat(addr, v, simd(0x5b), mem(3, offset), [lane]),
  const_f32x4: (a: number, b = a, c = a, d = a): Code => cat(simd(0x0c), f32Bytes(a), f32Bytes(b), f32Bytes(c), f32Bytes(d)),
  const_i32x4: (a: number, b = a, c = a, d = a): Code =>
    cat(simd(0x0c), ...[a, b, c, d].map((x) => Array.from(new Uint8Array(new Int32Array([x]).buffer)))),
  not: sun(0x4d), and: sbin(0x4e), andnot: sbin(0x4f), or: sbin(0x50), xor: sbin(0x51),
  /** 1 if any bit is set. */
  any_true: sun(0x53),
  /** Lanes of a where mask bits are set, else b. */
  bitselect: (a: Code, b: Code, mask: Code): Code => cat(a, b, mask, simd(0x52)),
  shuffle: (a: Code, b: Code, lanes: number[]): Code => cat(a, b, simd(0x0d), lanes),
};

export const i32x4 = {
  splat: sun(0x11),
  extract_lane: (v: Code, lane: number): Code => cat(v, simd(0x1b), [lane]),
  replace_lane: (v: Code, lane: number, x: Code): Code => cat(v, x, simd(0x1c), [lane]),
  lt_s: sbin(0x39), lt_u: sbin(0x3a),
  shl: sbin(0xab), shr_s: sbin(0xac), add: sbin(0xae), sub: sbin(0xb1), mul: sbin(0xb5),
  trunc_sat_f32x4_s: sun(0xf8),
};

export const f32x4 = {
  splat: sun(0x13),
  extract_lane: (v: Code, lane: number): Code => cat(v, simd(0x1f), [lane]),
  replace_lane: (v: Code, lane: number, x: Code): Code => cat(v, x, simd(0x20), [lane]),
  eq: sbin(0x41), ne: sbin(0x42), lt: sbin(0x43), gt: sbin(0x44), le: sbin(0x45), ge: sbin(0x46),
  ceil: sun(0x67), floor: sun(0x68), nearest: sun(0x6a),
  abs: sun(0xe0), neg: sun(0xe1), sqrt: sun(0xe3),
  add: sbin(0xe4), sub: sbin(0xe5), mul: sbin(0xe6), div: sbin(0xe7), min: sbin(0xe8), max: sbin(0xe9),
  /** pmin/pmax: b < a ? b : a, NaN-propagating as in the scalar select form. */
  pmin: sbin(0xea), pmax: sbin(0xeb),
  convert_i32x4_s: sun(0xfa),
  demote_f64x2_zero: sun(0x5e),
  /** relaxed SIMD: a * b + c, fused or not (only emitted when the engine validates it). */
  relaxed_madd: (a: Code, b: Code, c: Code): Code => cat(a, b, c, simd(0x105)),
};

export const f64x2 = {
  splat: sun(0x14),
  extract_lane: (v: Code, lane: number): Code => cat(v, simd(0x21), [lane]),
  add: sbin(0xf0), sub: sbin(0xf1), mul: sbin(0xf2),
  promote_low_f32x4: sun(0x5f),
};

// ------------------------------------------------------------------------------ module builder
export interface FunctionSpec {
  name: string;
  params: ValType[];
  results: ValType[];
  /** Export under `name`. */
  exported: boolean;
}

/** One function under construction: parameters are locals 0..P-1; `local()` adds more. */
export class FunctionBuilder {
  readonly localTypes: ValType[] = [];
  body: Code = [];
  constructor(readonly index: number, readonly spec: FunctionSpec) {}
  /** Parameter i as a local index. */
  param(i: number): number {
    if (i >= this.spec.params.length) throw new Error(`${this.spec.name}: no parameter ${i}`);
    return i;
  }
  local(type: ValType): number {
    this.localTypes.push(type);
    return this.spec.params.length + this.localTypes.length - 1;
  }
  /** n fresh locals of one type (a tuple, so destructuring needs no undefined checks). */
  locals<N extends number>(type: ValType, n: N): Tuple<number, N> {
    return Array.from({ length: n }, () => this.local(type)) as Tuple<number, N>;
  }
  /** Fresh i32 locals holding fields 0..n-1 of the i32 argument struct at local `args`. */
  argLocals<N extends number>(args: number, n: N): Tuple<number, N> {
    return Array.from({ length: n }, (_, i) => {
      const l = this.local(ValType.i32);
      this.emit(set(l, i32.load(get(args), 4 * i)));
      return l;
    }) as Tuple<number, N>;
  }
  emit(...code: Code[]): this {
    for (const c of code) for (const b of c) this.body.push(b);
    return this;
  }
}

export interface MemoryImport {
  module: string;
  name: string;
  initialPages: number;
  maximumPages: number;
  shared: boolean;
}

function section(id: number, payload: number[]): number[] {
  return [id, ...uleb(payload.length), ...payload];
}
const vec = (items: number[][]): number[] => cat(uleb(items.length), ...items);
const name = (s: string): number[] => {
  const b = Array.from(new TextEncoder().encode(s));
  return [...uleb(b.length), ...b];
};

export class ModuleBuilder {
  private readonly functions: FunctionBuilder[] = [];
  constructor(private readonly memory: MemoryImport) {}

  /** Declare a function (so others can call it before its body exists) and return its builder. */
  func(name: string, params: ValType[], results: ValType[] = [], exported = true): FunctionBuilder {
    if (this.functions.some((f) => f.spec.name === name)) throw new Error(`wasm module: duplicate function ${name}`);
    const f = new FunctionBuilder(this.functions.length, { name, params, results, exported });
    this.functions.push(f);
    return f;
  }

  exportedNames(): string[] {
    return this.functions.filter((f) => f.spec.exported).map((f) => f.spec.name);
  }

  bytes(): Uint8Array<ArrayBuffer> {
    const typeKeys: string[] = [];
    const types: number[][] = [];
    const typeOf = this.functions.map((f) => {
      const key = `${f.spec.params.join(',')}:${f.spec.results.join(',')}`;
      let t = typeKeys.indexOf(key);
      if (t < 0) {
        t = typeKeys.length;
        typeKeys.push(key);
        types.push([0x60, ...vec(f.spec.params.map((p) => [p])), ...vec(f.spec.results.map((r) => [r]))]);
      }
      return t;
    });
    const m = this.memory;
    const limits = m.shared ? [0x03, ...uleb(m.initialPages), ...uleb(m.maximumPages)] : [0x01, ...uleb(m.initialPages), ...uleb(m.maximumPages)];
    const imports = vec([[...name(m.module), ...name(m.name), 0x02, ...limits]]);
    const funcs = vec(typeOf.map((t) => uleb(t)));
    const exports = vec(this.functions.filter((f) => f.spec.exported).map((f) => [...name(f.spec.name), 0x00, ...uleb(f.index)]));
    const bodies = vec(this.functions.map((f) => {
      // Run-length groups of equal local types.
      const groups: number[][] = [];
      let i = 0;
      while (i < f.localTypes.length) {
        let j = i;
        while (j < f.localTypes.length && f.localTypes[j] === f.localTypes[i]) j++;
        groups.push([...uleb(j - i), f.localTypes[i]!]);
        i = j;
      }
      const body = [...vec(groups), ...f.body, 0x0b];
      return [...uleb(body.length), ...body];
    }));
    return new Uint8Array([
      0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
      ...section(1, vec(types)), ...section(2, imports), ...section(3, funcs), ...section(7, exports), ...section(10, bodies),
    ]);
  }
}
