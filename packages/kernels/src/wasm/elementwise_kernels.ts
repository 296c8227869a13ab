// Elementwise kernels on contiguous f32 data (the backend first gathers strided or broadcast inputs
// with copy_strided): unary_<op>, binary_<op>, affine (x*mul + add), geglu (h[..., :F] * gelu(h[...,
// F:]), diffusers GEGLU), and copy_strided (a rank-4 strided gather, element strides, stride 0 for
// broadcast dims). Tasks are chunks of CHUNK elements (rows for geglu, outer index pairs for the
// gather). Unary ops without a vector form (log, sin, cos) are not emitted; the backend runs those in
// JavaScript.

import type { BinaryOp, UnaryOp } from '@cnx/tensor';
import { argF } from './emit_util.js';
import { VectorMath } from './vector_math.js';
import {
  ValType, f32, f32x4, forRange, get, i32, if_, set, v128, type Code, type ModuleBuilder,
} from './wasm_binary.js';

/** Elements per task of the flat kernels. */
export const ELEMENTWISE_CHUNK = 16384;
export const FLAT_ARGS = { a: 0, b: 1, out: 2, n: 3, mul: 4, add: 5 } as const;
export const GEGLU_ARGS = { h: 0, out: 1, rows: 2, F: 3, block: 4 } as const;
export const COPY_ARGS = { src: 0, dst: 1, d0: 2, d1: 3, d2: 4, d3: 5, s0: 6, s1: 7, s2: 8, s3: 9 } as const;

export const VECTOR_UNARY: readonly UnaryOp[] = [
  'neg', 'abs', 'exp', 'sqrt', 'rsqrt', 'recip', 'square', 'tanh', 'sigmoid', 'relu', 'silu', 'gelu', 'gelu_tanh', 'quick_gelu',
];
export const BINARY: readonly BinaryOp[] = ['add', 'sub', 'mul', 'div', 'max', 'min'];

function binaryOp(op: BinaryOp, a: Code, b: Code): Code {
  switch (op) {
    case 'add': return f32x4.add(a, b);
    case 'sub': return f32x4.sub(a, b);
    case 'mul': return f32x4.mul(a, b);
    case 'div': return f32x4.div(a, b);
    case 'max': return f32x4.max(a, b);
    case 'min': return f32x4.min(a, b);
  }
}

/**
 * A flat kernel over [t*CHUNK, min(n, t*CHUNK+CHUNK)): out[i..] = value(a[i..], b[i..]) on vectors, then
 * a scalar tail on splats (lane 0 stored).
 */
function emitFlat(m: ModuleBuilder, name: string, value: (vm: VectorMath, args: number, a: Code, b: Code) => Code): void {
  const f = m.func(name, [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [a, b, out, n] = f.argLocals(args, 4);
  const [i, end, e4] = f.locals(ValType.i32, 3);
  const vm = new VectorMath(f);
  const addr = (p: number): Code => i32.add(get(p), i32.shl(get(i), i32.const(2)));
  f.emit(
    set(i, i32.mul(get(t), i32.const(ELEMENTWISE_CHUNK))),
    set(end, i32.add(get(i), i32.const(ELEMENTWISE_CHUNK))),
    if_(i32.gt_s(get(end), get(n)), [set(end, get(n))]),
    set(e4, i32.add(get(i), i32.and(i32.sub(get(end), get(i)), i32.const(~3)))),
    forRange(i, get(i), get(e4), 4, [v128.store(addr(out), value(vm, args, v128.load(addr(a)), v128.load(addr(b))))]),
    forRange(i, get(e4), get(end), 1, [f32.store(addr(out), f32x4.extract_lane(
      value(vm, args, f32x4.splat(f32.load(addr(a))), f32x4.splat(f32.load(addr(b)))), 0))]),
  );
}

function emitCopyStrided(m: ModuleBuilder): void {
  const f = m.func('copy_strided', [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [src, dst, , d1, d2, d3, s0, s1, s2, s3] = f.argLocals(args, 10);
  const [i0, i1, i2, i3, sp, dp, e4, s3b] = f.locals(ValType.i32, 8);
  const [v] = f.locals(ValType.v128, 1);
  f.emit(
    set(i0, i32.div_u(get(t), get(d1))),
    set(i1, i32.rem_u(get(t), get(d1))),
    set(dp, i32.add(get(dst), i32.shl(i32.mul(get(t), i32.mul(get(d2), get(d3))), i32.const(2)))),
    set(e4, i32.and(get(d3), i32.const(~3))),
    set(s3b, i32.shl(get(s3), i32.const(2))),
    forRange(i2, i32.const(0), get(d2), 1, [
      ...set(sp, i32.add(get(src), i32.shl(i32.add(i32.add(i32.mul(get(i0), get(s0)), i32.mul(get(i1), get(s1))), i32.mul(get(i2), get(s2))), i32.const(2)))),
      ...if_(i32.eq(get(s3), i32.const(1)), [
        ...forRange(i3, i32.const(0), get(e4), 4, [
          ...v128.store(get(dp), v128.load(get(sp))),
          ...set(sp, i32.add(get(sp), i32.const(16))),
          ...set(dp, i32.add(get(dp), i32.const(16))),
        ]),
        ...forRange(i3, get(e4), get(d3), 1, [
          ...f32.store(get(dp), f32.load(get(sp))),
          ...set(sp, i32.add(get(sp), i32.const(4))),
          ...set(dp, i32.add(get(dp), i32.const(4))),
        ]),
      ], [
        ...if_(i32.eqz(get(s3)), [
          ...set(v, v128.load32_splat(get(sp))),
          ...forRange(i3, i32.const(0), get(e4), 4, [
            ...v128.store(get(dp), get(v)),
            ...set(dp, i32.add(get(dp), i32.const(16))),
          ]),
          ...forRange(i3, get(e4), get(d3), 1, [
            ...f32.store(get(dp), f32x4.extract_lane(get(v), 0)),
            ...set(dp, i32.add(get(dp), i32.const(4))),
          ]),
        ], [
          ...forRange(i3, i32.const(0), get(d3), 1, [
            ...f32.store(get(dp), f32.load(get(sp))),
            ...set(sp, i32.add(get(sp), get(s3b))),
            ...set(dp, i32.add(get(dp), i32.const(4))),
          ]),
        ]),
      ]),
    ]),
  );
}

function emitGeglu(m: ModuleBuilder): void {
  const f = m.func('geglu', [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [h, out, rows, F, block] = f.argLocals(args, 5);
  const [r, rEnd, j, e4, hp, op] = f.locals(ValType.i32, 6);
  const vm = new VectorMath(f);
  const hAt = (k: Code): Code => i32.add(get(hp), i32.shl(k, i32.const(2)));
  const gAt = (k: Code): Code => i32.add(get(hp), i32.shl(i32.add(k, get(F)), i32.const(2)));
  const oAt = (k: Code): Code => i32.add(get(op), i32.shl(k, i32.const(2)));
  f.emit(
    set(r, i32.mul(get(t), get(block))),
    set(rEnd, i32.add(get(r), get(block))),
    if_(i32.gt_s(get(rEnd), get(rows)), [set(rEnd, get(rows))]),
    set(e4, i32.and(get(F), i32.const(~3))),
    forRange(r, get(r), get(rEnd), 1, [
      ...set(hp, i32.add(get(h), i32.shl(i32.mul(get(r), i32.shl(get(F), i32.const(1))), i32.const(2)))),
      ...set(op, i32.add(get(out), i32.shl(i32.mul(get(r), get(F)), i32.const(2)))),
      ...forRange(j, i32.const(0), get(e4), 4, [
        v128.store(oAt(get(j)), f32x4.mul(v128.load(hAt(get(j))), vm.gelu(v128.load(gAt(get(j)))))),
      ]),
      ...forRange(j, get(e4), get(F), 1, [
        f32.store(oAt(get(j)), f32x4.extract_lane(f32x4.mul(f32x4.splat(f32.load(hAt(get(j)))), vm.gelu(f32x4.splat(f32.load(gAt(get(j)))))), 0)),
      ]),
    ]),
  );
}

export function emitElementwiseKernels(m: ModuleBuilder): void {
  // Unary kernels and affine ignore b; the backend passes b = a (reading it is harmless but wasted,
  // so the value functions below never touch it).
  for (const op of VECTOR_UNARY) emitFlat(m, `unary_${op}`, (vm, _args, a) => vm.unary(op, a)!);
  for (const op of BINARY) emitFlat(m, `binary_${op}`, (_vm, _args, a, b) => binaryOp(op, a, b));
  emitFlat(m, 'affine', (_vm, args, a) =>
    f32x4.add(f32x4.mul(a, f32x4.splat(argF(args, FLAT_ARGS.mul))), f32x4.splat(argF(args, FLAT_ARGS.add))));
  emitGeglu(m);
  emitCopyStrided(m);
}
