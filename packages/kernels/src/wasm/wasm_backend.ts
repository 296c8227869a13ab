// The fast CPU backend ('wasm'): f32 WebAssembly SIMD kernels on worker threads over shared memory
// (one thread where SharedArrayBuffer is missing), beside the float64 CPU reference ('cpu'), which
// stays what defines every op. Implements the current Backend interface of @cnx/tensor; the ops it
// does not cover (reductions, cross normalisation, pooling, the timestep embedding) run the reference
// implementation on copies and put the result back into wasm memory.
//
// Memory model: tensor storages live IN the module's WebAssembly.Memory (a best-fit heap, heap.ts), so
// kernels read weights and activations in place; packing copies only the operand that must be packed.
// wasm32 caps a memory at 4 GiB: the SD1.5 UNet's f32 weights (3.4 GB) fit; storages created by
// fromRaw/zeros (weights, inputs) past STORAGE_CAP of the memory are kept in JavaScript ArrayBuffers
// instead ("spilled") and copied into scratch for each op that reads them, so configurations larger
// than the memory (UNet + ControlNet) still run, paying a copy per use of the spilled weights.

import {
  CpuBackend, DTYPE_BYTES, fromFloat32, numel, rawArrayFor, stridedOffsets, toFloat32, Tensor, applyUnary,
  type Activation, type AttentionOptions, type Backend, type BinaryOp, type Conv2dOptions, type CrossNormOptions,
  type DType, type GroupNormOptions, type MatmulOptions, type MemoryStats, type RawArray, type ReduceOp, type Shape,
  type Storage, type TimestepEmbeddingOptions, type UnaryOp,
} from '@cnx/tensor';
import { WasmRuntime, type WasmRuntimeOptions } from './runtime.js';
import * as k from './wasm_ops.js';

export interface WasmStorage extends Storage {
  /** Byte address in the wasm memory, or -1 when spilled. */
  ptr: number;
  /** The data when spilled to JavaScript memory. */
  js?: RawArray;
}

/** Fraction of the memory that fromRaw/zeros storages may fill before spilling (the rest: activations, scratch). */
const STORAGE_CAP = 0.8;

export class WasmBackend implements Backend {
  readonly name = 'wasm' as const;
  readonly description: string;
  private live = 0;
  private peak = 0;
  private readonly temps: [number, number][] = [];
  private readonly ref = new CpuBackend();

  private constructor(readonly rt: WasmRuntime) {
    this.description = `CPU fast path: ${rt.description}`;
  }

  static async create(opts: WasmRuntimeOptions = {}): Promise<WasmBackend> {
    return new WasmBackend(await WasmRuntime.create(opts));
  }

  // ------------------------------------------------------------------ memory
  private storage(bytes: number, mayspill: boolean): WasmStorage {
    const heap = this.rt.heap;
    const fits = !mayspill || heap.liveBytes + bytes <= heap.capacityBytes * STORAGE_CAP;
    const ptr = fits ? heap.tryAlloc(bytes) : -1;
    if (ptr < 0 && !mayspill) heap.alloc(bytes, `a tensor of ${bytes} bytes`); // throws with the heap report
    this.live += bytes;
    this.peak = Math.max(this.peak, this.live);
    return { refs: 0, byteLength: bytes, ptr };
  }

  private make(shape: Shape, dtype: DType, mayspill = false): Tensor {
    const bytes = numel(shape) * DTYPE_BYTES[dtype];
    const s = this.storage(bytes, mayspill);
    if (s.ptr < 0) s.js = rawArrayFor(dtype, numel(shape));
    return new Tensor(this, s, dtype, shape);
  }

  /** A new contiguous f32 tensor in wasm memory; `ptr(t)` is its address. */
  private out(shape: Shape): Tensor {
    return this.make(shape, 'f32');
  }

  private ptrOf(t: Tensor): number {
    const s = t.storage as WasmStorage;
    if (s.ptr < 0) throw new Error('wasm backend: internal error: output tensor not in wasm memory');
    return s.ptr;
  }

  /** Raw elements view of a storage (a view into wasm memory, or the spilled array). */
  private rawView(t: Tensor): RawArray {
    const s = t.storage as WasmStorage;
    if (s.ptr < 0) return s.js!;
    const n = s.byteLength / DTYPE_BYTES[t.dtype];
    const buf = this.rt.memory.buffer;
    switch (t.dtype) {
      case 'f32': return new Float32Array(buf, s.ptr, n);
      case 'i32': return new Int32Array(buf, s.ptr, n);
      default: return new Uint16Array(buf, s.ptr, n);
    }
  }

  zeros(shape: Shape, dtype: DType = 'f32'): Tensor {
    const t = this.make(shape, dtype, true);
    const s = t.storage as WasmStorage;
    if (s.ptr >= 0) this.rt.u8(s.ptr, s.byteLength).fill(0);
    return t;
  }

  fromRaw(data: RawArray, shape: Shape, dtype: DType = 'f32'): Tensor {
    if (data.length !== numel(shape)) throw new Error(`fromRaw: ${data.length} elements do not fill shape [${shape.join(', ')}]`);
    const t = this.make(shape, dtype, true);
    this.rawView(t).set(data as never);
    return t;
  }

  /** f32 values in row-major order (a copy). */
  values(x: Tensor): Float32Array {
    const raw = this.rawView(x);
    if (x.isContiguous) return toFloat32(raw.subarray(0, x.size) as RawArray, x.dtype).slice();
    const offs = stridedOffsets(x.shape, x.strides, x.offset);
    const out = rawArrayFor(x.dtype, offs.length);
    for (let i = 0; i < offs.length; i++) out[i] = raw[offs[i]!]!;
    return toFloat32(out, x.dtype);
  }

  async read(x: Tensor): Promise<Float32Array> {
    return this.values(x);
  }

  free(storage: Storage): void {
    const s = storage as WasmStorage;
    this.live -= s.byteLength;
    if (s.ptr >= 0) this.rt.heap.release(s.ptr, s.byteLength);
    s.ptr = -1;
    s.js = new Float32Array(0);
  }

  memory(): MemoryStats {
    return { liveBytes: this.live, peakBytes: this.peak, pooledBytes: 0 };
  }
  resetPeak(): void { this.peak = this.live; }
  async sync(): Promise<void> {}
  destroy(): void { this.rt.destroy(); }

  // ------------------------------------------------------------------ op inputs
  private temp(bytes: number): number {
    const p = this.rt.heap.alloc(bytes, 'an op input copy');
    this.temps.push([p, bytes]);
    return p;
  }
  private releaseTemps(): void {
    for (const [p, b] of this.temps) this.rt.heap.release(p, b);
    this.temps.length = 0;
  }

  /** Address of x's values as contiguous f32 in wasm memory (a temporary copy when needed). */
  private input(x: Tensor): number {
    const s = x.storage as WasmStorage;
    if (x.dtype === 'f32' && s.ptr >= 0) {
      if (x.isContiguous) return s.ptr;
      const g = gather4(x);
      if (g) {
        const p = this.temp(x.size * 4);
        k.copyStrided(this.rt, s.ptr + x.offset * 4, p, g.shape, g.strides);
        return p;
      }
    }
    const v = this.values(x);
    const p = this.temp(v.length * 4);
    this.rt.f32(p, v.length).set(v);
    return p;
  }

  private opt(x: Tensor | undefined): number {
    return x ? this.input(x) : 0;
  }

  /** Run body, releasing input copies afterwards. */
  private run<T>(body: () => T): T {
    try {
      return body();
    } finally {
      this.releaseTemps();
    }
  }

  /** The reference implementation on copies, result copied back into wasm memory. */
  private reference(inputs: (Tensor | undefined)[], fn: (ref: CpuBackend, xs: (Tensor | undefined)[]) => Tensor): Tensor {
    const xs = inputs.map((x) => (x ? this.ref.fromRaw(this.values(x), x.shape) : undefined));
    const y = fn(this.ref, xs);
    try {
      const out = this.make(y.shape, y.dtype);
      this.rawView(out).set(this.ref.raw(y) as never);
      return out;
    } finally {
      y.dispose();
      for (const x of xs) x?.dispose();
    }
  }

  // ------------------------------------------------------------------ layout and type
  contiguous(x: Tensor): Tensor {
    if (x.dtype === 'f32') {
      return this.run(() => {
        const out = this.out(x.shape);
        const s = x.storage as WasmStorage;
        const g = s.ptr >= 0 ? gather4(x) : undefined;
        if (g) k.copyStrided(this.rt, s.ptr + x.offset * 4, this.ptrOf(out), g.shape, g.strides);
        else this.rt.f32(this.ptrOf(out), x.size).set(this.values(x));
        return out;
      });
    }
    const raw = this.rawView(x);
    const offs = stridedOffsets(x.shape, x.strides, x.offset);
    const out = this.make(x.shape, x.dtype);
    const o = this.rawView(out);
    for (let i = 0; i < offs.length; i++) o[i] = raw[offs[i]!]!;
    return out;
  }

  cast(x: Tensor, dtype: DType): Tensor {
    const v = this.values(x);
    const out = this.make(x.shape, dtype);
    this.rawView(out).set((dtype === 'f32' ? v : fromFloat32(v, dtype)) as never);
    return out;
  }

  concat(xs: readonly Tensor[], axis: number): Tensor {
    const first = xs[0]!;
    const shape = [...first.shape];
    shape[axis] = xs.reduce((s, x) => s + x.shape[axis]!, 0);
    const outer = numel(shape.slice(0, axis));
    const inner = numel(shape.slice(axis + 1));
    const out = this.make(shape, first.dtype);
    const o = this.rawView(out);
    const rowLen = shape[axis]! * inner;
    let col = 0;
    for (const x of xs) {
      const src = this.rawView(x);
      const len = x.shape[axis]! * inner;
      for (let r = 0; r < outer; r++) o.set(src.subarray(r * len, (r + 1) * len) as never, r * rowLen + col);
      col += len;
    }
    return out;
  }

  // ------------------------------------------------------------------ elementwise
  unary(op: UnaryOp, x: Tensor): Tensor {
    return this.run(() => {
      const xp = this.input(x);
      const out = this.out(x.shape);
      if (k.hasVectorUnary(op)) k.unary(this.rt, op, xp, this.ptrOf(out), x.size);
      else {
        const src = this.rt.f32(xp, x.size), dst = this.rt.f32(this.ptrOf(out), x.size);
        for (let i = 0; i < dst.length; i++) dst[i] = applyUnary(op, src[i]!);
      }
      return out;
    });
  }

  affine(x: Tensor, mul: number, add: number): Tensor {
    return this.run(() => {
      const xp = this.input(x);
      const out = this.out(x.shape);
      k.affine(this.rt, xp, this.ptrOf(out), x.size, mul, add);
      return out;
    });
  }

  binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
    return this.run(() => {
      const ap = this.input(a), bp = this.input(b);
      const out = this.out(a.shape);
      k.binary(this.rt, op, ap, bp, this.ptrOf(out), a.size);
      return out;
    });
  }

  // ------------------------------------------------------------------ reductions
  reduce(op: ReduceOp, x: Tensor, axes: readonly number[]): Tensor {
    return this.reference([x], (r, [xr]) => r.reduce(op, xr!, axes));
  }

  softmax(x: Tensor): Tensor {
    return this.run(() => {
      const xp = this.input(x);
      const out = this.out(x.shape);
      const D = x.shape[x.rank - 1]!;
      k.softmax(this.rt, xp, this.ptrOf(out), x.size / D, D);
      return out;
    });
  }

  // ------------------------------------------------------------------ linear algebra
  matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
    const [Ba, r0, c0] = a.shape as [number, number, number];
    const [Bb, r1, c1] = b.shape as [number, number, number];
    const M = opts.transA ? c0 : r0, K = opts.transA ? r0 : c0;
    const N = opts.transB ? r1 : c1;
    const B = Math.max(Ba, Bb);
    return this.run(() => {
      const ap = this.input(a), bp = this.input(b);
      const bias = this.opt(opts.bias), res = this.opt(opts.residual);
      const out = this.out([B, M, N]);
      k.matmul(this.rt, ap, bp, this.ptrOf(out), {
        Ba, Bb, M, N, K, transA: !!opts.transA, transB: !!opts.transB, alpha: opts.alpha ?? 1,
        act: opts.activation ?? 'none', bias, res,
      });
      return out;
    });
  }

  conv2d(x: Tensor, w: Tensor, bias: Tensor | undefined, opts: Conv2dOptions): Tensor {
    const [N, C, H, W] = x.shape as [number, number, number, number];
    const [O, , KH, KW] = w.shape as [number, number, number, number];
    const plan: k.Conv2dPlan = {
      N, C, H, W, O, KH, KW, stride: opts.stride, padding: opts.padding, groups: opts.groups,
      act: (opts.activation ?? 'none') as Activation, bias: 0, res: 0,
    };
    const [Ho, Wo] = k.conv2dOutSize(plan);
    if (Ho <= 0 || Wo <= 0) throw new Error(`conv2d: kernel ${KH}x${KW} larger than padded input ${H}x${W}`);
    return this.run(() => {
      const xp = this.input(x), wp = this.input(w);
      plan.bias = this.opt(bias);
      plan.res = this.opt(opts.residual);
      const out = this.out([N, O, Ho, Wo]);
      k.conv2d(this.rt, xp, wp, this.ptrOf(out), plan);
      return out;
    });
  }

  attention(q: Tensor, kt: Tensor, v: Tensor, opts: AttentionOptions): Tensor {
    return this.attentionWithStats(q, kt, v, opts, false).out;
  }

  /** Attention and, when asked, the logsumexp [B, Lq, H] of the scaled scores (natural log). */
  attentionWithStats(q: Tensor, kt: Tensor, v: Tensor, opts: AttentionOptions, withLse: boolean): { out: Tensor; lse?: Tensor } {
    const [B, Lq, H, D] = q.shape as [number, number, number, number];
    const Lk = kt.shape[1]!, Dv = v.shape[3]!;
    return this.run(() => {
      const qp = this.input(q), kp = this.input(kt), vp = this.input(v);
      const out = this.out([B, Lq, H, Dv]);
      const stats = withLse ? this.temp(B * Lq * H * 8) : 0;
      k.attention(this.rt, qp, kp, vp, this.ptrOf(out), { B, Lq, Lk, H, D, Dv, scale: opts.scale, causal: !!opts.causal }, stats);
      if (!withLse) return { out };
      const lse = this.out([B, Lq, H]);
      const st = this.rt.f32(stats, B * Lq * H * 2), l = this.rt.f32(this.ptrOf(lse), B * Lq * H);
      for (let i = 0; i < l.length; i++) l[i] = st[2 * i]! + Math.log(st[2 * i + 1]!);
      return { out, lse };
    });
  }

  // ------------------------------------------------------------------ normalisation
  groupNorm(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, opts: GroupNormOptions): Tensor {
    return this.groupNormWithStats(x, weight, bias, opts, false).out;
  }

  /** Group norm and, when asked, its mean and rstd [N, G]. */
  groupNormWithStats(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, opts: GroupNormOptions, withStats: boolean):
    { out: Tensor; mean?: Tensor; rstd?: Tensor } {
    const N = x.shape[0]!, C = x.shape[1]!;
    return this.run(() => {
      const xp = this.input(x);
      const out = this.out(x.shape);
      const mean = withStats ? this.out([N, opts.groups]) : undefined;
      const rstd = withStats ? this.out([N, opts.groups]) : undefined;
      k.groupNorm(this.rt, xp, this.ptrOf(out), {
        N, C, S: x.size / (N * C), G: opts.groups, eps: opts.eps, silu: !!opts.silu, weight: this.opt(weight), bias: this.opt(bias),
      }, mean ? this.ptrOf(mean) : 0, rstd ? this.ptrOf(rstd) : 0);
      return { out, mean, rstd };
    });
  }

  layerNorm(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number): Tensor {
    return this.layerNormWithStats(x, weight, bias, eps, false).out;
  }

  /** Layer norm and, when asked, its per-row mean and rstd [rows]. */
  layerNormWithStats(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number, withStats: boolean):
    { out: Tensor; mean?: Tensor; rstd?: Tensor } {
    const D = x.shape[x.rank - 1]!, rows = x.size / D;
    return this.run(() => {
      const xp = this.input(x);
      const out = this.out(x.shape);
      const mean = withStats ? this.out([rows]) : undefined;
      const rstd = withStats ? this.out([rows]) : undefined;
      k.layerNorm(this.rt, xp, this.ptrOf(out), rows, D, this.opt(weight), this.opt(bias), eps,
        mean ? this.ptrOf(mean) : 0, rstd ? this.ptrOf(rstd) : 0);
      return { out, mean, rstd };
    });
  }

  crossNorm(x: Tensor, control: Tensor, opts: CrossNormOptions): Tensor {
    const scale = typeof opts.scale === 'number' ? opts.scale : undefined;
    const inputs = [x, control, typeof opts.scale === 'number' ? undefined : opts.scale];
    return this.reference(inputs, (r, [xr, cr, sr]) => r.crossNorm(xr!, cr!, { ...opts, scale: scale ?? sr! }));
  }

  // ------------------------------------------------------------------ resampling
  upsampleNearest(x: Tensor, size: readonly [number, number]): Tensor {
    // torch 'nearest': src = floor(dst * float32(in/out)), as the reference; a gather, in JavaScript.
    const [N, C, H, W] = x.shape as [number, number, number, number];
    const [Ho, Wo] = size;
    return this.run(() => {
      const X = this.rt.f32(this.input(x), x.size);
      const out = this.out([N, C, Ho, Wo]);
      const Y = this.rt.f32(this.ptrOf(out), N * C * Ho * Wo);
      const fy = Math.fround(H / Ho), fx = Math.fround(W / Wo);
      const ix = Int32Array.from({ length: Wo }, (_, o) => Math.min(Math.floor(Math.fround(o * fx)), W - 1));
      for (let nc = 0; nc < N * C; nc++) {
        for (let oy = 0; oy < Ho; oy++) {
          const row = (nc * H + Math.min(Math.floor(Math.fround(oy * fy)), H - 1)) * W, o = (nc * Ho + oy) * Wo;
          for (let ox = 0; ox < Wo; ox++) Y[o + ox] = X[row + ix[ox]!]!;
        }
      }
      return out;
    });
  }

  adaptiveAvgPool2d(x: Tensor, size: readonly [number, number]): Tensor {
    return this.reference([x], (r, [xr]) => r.adaptiveAvgPool2d(xr!, size));
  }

  // ------------------------------------------------------------------ diffusion-specific
  timestepEmbedding(t: Tensor, dim: number, opts: TimestepEmbeddingOptions): Tensor {
    return this.reference([t], (r, [tr]) => r.timestepEmbedding(tr!, dim, opts));
  }

  geglu(h: Tensor): Tensor {
    const D2 = h.shape[h.rank - 1]!, F = D2 / 2;
    return this.run(() => {
      const hp = this.input(h);
      const out = this.out([...h.shape.slice(0, -1), F]);
      k.geglu(this.rt, hp, this.ptrOf(out), h.size / D2, F);
      return out;
    });
  }
}

/**
 * The layout of a strided view as a rank-4 gather (shape, element strides), merging dims that are
 * contiguous with each other; undefined when more than 4 dims remain.
 */
function gather4(x: Tensor): { shape: number[]; strides: number[] } | undefined {
  const shape: number[] = [], strides: number[] = [];
  for (let i = 0; i < x.rank; i++) {
    const d = x.shape[i]!, s = x.strides[i]!;
    if (d === 1) continue;
    const last = shape.length - 1;
    if (last >= 0 && strides[last] === s * d) { shape[last] = shape[last]! * d; strides[last] = s; continue; }
    shape.push(d); strides.push(s);
  }
  if (shape.length > 4) return undefined;
  while (shape.length < 4) { shape.unshift(1); strides.unshift(0); }
  return { shape, strides };
}
