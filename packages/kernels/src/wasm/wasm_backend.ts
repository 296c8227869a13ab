// The fast CPU backend ('wasm'): f32 WebAssembly SIMD kernels on worker threads over shared memory
// (one thread where SharedArrayBuffer is missing), beside the float64 CPU reference ('cpu'), which
// stays what defines every op. run() dispatches the core ops it accelerates through the typed table in
// core_kernels.ts, an extension op through its definition's `kernels.wasm` entry (GEGLU), and every
// other op (reductions, pooling, cross normalisation, the timestep embedding, backward ops) through the
// definition's float64 CPU reference, which reads the inputs in place in wasm memory; its results are
// copied into wasm memory.
//
// Memory model: tensor storages live IN the module's WebAssembly.Memory (a best-fit heap, heap.ts), so
// kernels read weights and activations in place; packing copies only the operand that must be packed.
// wasm32 caps a memory at 4 GiB: the SD1.5 UNet's f32 weights (3.4 GB) fit; storages created by
// fromRaw/zeros (weights, inputs) beyond the memory less STORAGE_RESERVE are kept in JavaScript ArrayBuffers
// instead ("spilled") and copied into scratch for each op that reads them, so configurations larger
// than the memory (UNet + ControlNet) still run, paying a copy per use of the spilled weights.

import {
  DTYPE_BYTES, fromFloat32, numel, rawArrayFor, stridedOffsets, toFloat32, Tensor, applyUnary,
  type Activation, type AttentionParams, type Backend, type BinaryOp, type Conv2dParams, type DType, type GroupNormParams,
  type HostTensor, type MatmulParams, type MemoryStats, type OpDefinition, type OpKernel, type RawArray, type Shape,
  type Storage, type TensorMeta, type UnaryOp,
} from '@cnx/tensor';
import { wasmCoreKernels } from './core_kernels.js';
import { WasmRuntime, type WasmRuntimeOptions } from './runtime.js';
import * as k from './wasm_ops.js';

export interface WasmStorage extends Storage {
  /** Byte address in the wasm memory, or -1 when spilled. */
  ptr: number;
  /** The data when spilled to JavaScript memory. */
  js?: RawArray;
}

/**
 * Bytes of the memory kept free of fromRaw/zeros storages (weights, inputs), for the activations and
 * per-op scratch: a quarter of the memory, at most 512 MiB.
 */
const storageReserve = (capacity: number): number => Math.min(capacity / 4, 512 * 2 ** 20);

export class WasmBackend implements Backend {
  readonly name = 'wasm' as const;
  readonly description: string;
  private live = 0;
  private peak = 0;
  private readonly temps: [number, number][] = [];

  private constructor(readonly rt: WasmRuntime) {
    this.description = `CPU fast path: ${rt.description}`;
  }

  static async create(opts: WasmRuntimeOptions = {}): Promise<WasmBackend> {
    return new WasmBackend(await WasmRuntime.create(opts));
  }

  // ------------------------------------------------------------------ memory
  private storage(bytes: number, mayspill: boolean): WasmStorage {
    const heap = this.rt.heap;
    const fits = !mayspill || heap.liveBytes + bytes <= heap.capacityBytes - storageReserve(heap.capacityBytes);
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
    const p = this.temp(x.size * 4);
    if (x.dtype === 'f32' && s.ptr < 0 && x.isContiguous) {
      // a spilled f32 weight: one copy into scratch, no temporary array
      this.rt.f32(p, x.size).set((s.js as Float32Array).subarray(0, x.size));
      return p;
    }
    this.rt.f32(p, x.size).set(this.values(x));
    return p;
  }

  private opt(x: Tensor | undefined): number {
    return x ? this.input(x) : 0;
  }

  /** Run body, releasing input copies afterwards. */
  private withInputs<T>(body: () => T): T {
    try {
      return body();
    } finally {
      this.releaseTemps();
    }
  }

  // ------------------------------------------------------------------ ops
  run<P>(op: OpDefinition<P>, inputs: readonly (Tensor | undefined)[], params: P, outputs: readonly TensorMeta[]): Tensor[] {
    const own = (wasmCoreKernels as Readonly<Record<string, OpKernel<P, WasmBackend> | undefined>>)[op.name] ?? op.kernels?.wasm;
    if (own) return own(this, inputs, params);
    return this.reference(op, inputs, params, outputs);
  }

  /**
   * An op through its definition's float64 CPU reference: inputs are read in place (views of wasm memory
   * when contiguous), the results copied into new wasm-memory tensors, or into the input's storage for
   * an in-place op's written outputs (the optimizer step).
   */
  reference<P>(op: OpDefinition<P>, inputs: readonly (Tensor | undefined)[], params: P, outputs: readonly TensorMeta[]): Tensor[] {
    const host = inputs.map((x): HostTensor | undefined => x && {
      shape: x.shape, dtype: x.dtype,
      data: x.isContiguous ? (this.rawView(x).subarray(0, x.size) as RawArray) : this.dense(x),
    });
    const data = op.cpu(host, params);
    if (data.length !== outputs.length || data.some((d, i) => d.length !== numel(outputs[i]!.shape))) {
      throw new Error(`${op.name}: the CPU reference returned ${data.length} array(s) of ${data.map((d) => d.length).join(', ')} elements, ` +
        `the definition's outputs are ${outputs.map((o) => `[${o.shape.join(', ')}]`).join(', ')}`);
    }
    const written = op.inPlace?.(inputs.length) ?? [];
    return outputs.map((o, i) => {
      const j = written[i];
      if (j !== undefined) {
        // in place (runOp checked: contiguous, offset 0, same shape and dtype): into the input's storage
        const x = inputs[j]!;
        this.rawView(x).set(data[i]! as never, 0);
        return new Tensor(this, x.storage, o.dtype, o.shape);
      }
      const t = this.make(o.shape, o.dtype);
      this.rawView(t).set(data[i]! as never);
      return t;
    });
  }

  /** The elements of any view in row-major order, in its dtype (a copy). */
  private dense(x: Tensor): RawArray {
    const raw = this.rawView(x);
    const offs = stridedOffsets(x.shape, x.strides, x.offset);
    const out = rawArrayFor(x.dtype, offs.length);
    for (let i = 0; i < offs.length; i++) out[i] = raw[offs[i]!]!;
    return out;
  }

  // ------------------------------------------------------------------ layout and type
  contiguous(x: Tensor): Tensor {
    if (x.dtype === 'f32') {
      return this.withInputs(() => {
        const out = this.out(x.shape);
        const s = x.storage as WasmStorage;
        const g = s.ptr >= 0 ? gather4(x) : undefined;
        if (g) k.copyStrided(this.rt, s.ptr + x.offset * 4, this.ptrOf(out), g.shape, g.strides);
        else this.rt.f32(this.ptrOf(out), x.size).set(this.values(x));
        return out;
      });
    }
    const out = this.make(x.shape, x.dtype); // before any view: views of an unshared memory detach when it grows
    const raw = this.rawView(x);
    const offs = stridedOffsets(x.shape, x.strides, x.offset);
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
    return this.withInputs(() => {
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
    return this.withInputs(() => {
      const xp = this.input(x);
      const out = this.out(x.shape);
      k.affine(this.rt, xp, this.ptrOf(out), x.size, mul, add);
      return out;
    });
  }

  binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
    return this.withInputs(() => {
      const ap = this.input(a), bp = this.input(b);
      const out = this.out(a.shape);
      k.binary(this.rt, op, ap, bp, this.ptrOf(out), a.size);
      return out;
    });
  }

  // ------------------------------------------------------------------ reductions
  softmax(x: Tensor): Tensor {
    return this.withInputs(() => {
      const xp = this.input(x);
      const out = this.out(x.shape);
      const D = x.shape[x.rank - 1]!;
      k.softmax(this.rt, xp, this.ptrOf(out), x.size / D, D);
      return out;
    });
  }

  // ------------------------------------------------------------------ linear algebra
  /** out [B, M, N] = act(alpha * a@b + bias) + residual (core op 'matmul'). */
  matmul(a: Tensor, b: Tensor, bias: Tensor | undefined, residual: Tensor | undefined, p: MatmulParams = {}): Tensor {
    const [Ba, r0, c0] = a.shape as [number, number, number];
    const [Bb, r1, c1] = b.shape as [number, number, number];
    const M = p.transA ? c0 : r0, K = p.transA ? r0 : c0;
    const N = p.transB ? r1 : c1;
    const B = Math.max(Ba, Bb);
    return this.withInputs(() => {
      const ap = this.input(a), bp = this.input(b);
      const biasP = this.opt(bias), res = this.opt(residual);
      const out = this.out([B, M, N]);
      k.matmul(this.rt, ap, bp, this.ptrOf(out), {
        Ba, Bb, M, N, K, transA: !!p.transA, transB: !!p.transB, alpha: p.alpha ?? 1,
        act: p.activation ?? 'none', bias: biasP, res,
      });
      return out;
    });
  }

  /** out [N, O, Ho, Wo] = act(conv(x, w) + bias) + residual (core op 'conv2d'). */
  conv2d(x: Tensor, w: Tensor, bias: Tensor | undefined, residual: Tensor | undefined, p: Conv2dParams): Tensor {
    const [N, C, H, W] = x.shape as [number, number, number, number];
    const [O, , KH, KW] = w.shape as [number, number, number, number];
    const plan: k.Conv2dPlan = {
      N, C, H, W, O, KH, KW, stride: p.stride, padding: p.padding, groups: p.groups,
      act: (p.activation ?? 'none') as Activation, bias: 0, res: 0,
    };
    const [Ho, Wo] = k.conv2dOutSize(plan);
    return this.withInputs(() => {
      const xp = this.input(x), wp = this.input(w);
      plan.bias = this.opt(bias);
      plan.res = this.opt(residual);
      const out = this.out([N, O, Ho, Wo]);
      k.conv2d(this.rt, xp, wp, this.ptrOf(out), plan);
      return out;
    });
  }

  /**
   * Attention (core op 'attention'): [out [B, Lq, H, Dv]], plus the logsumexp [B, Lq, H] of the scaled
   * scores (natural log) with p.stats.
   */
  attention(q: Tensor, kt: Tensor, v: Tensor, p: AttentionParams): Tensor[] {
    const [B, Lq, H, D] = q.shape as [number, number, number, number];
    const Lk = kt.shape[1]!, Dv = v.shape[3]!;
    return this.withInputs(() => {
      const qp = this.input(q), kp = this.input(kt), vp = this.input(v);
      const out = this.out([B, Lq, H, Dv]);
      const stats = p.stats ? this.temp(B * Lq * H * 8) : 0;
      k.attention(this.rt, qp, kp, vp, this.ptrOf(out), { B, Lq, Lk, H, D, Dv, scale: p.scale, causal: !!p.causal }, stats);
      if (!p.stats) return [out];
      const lse = this.out([B, Lq, H]);
      const st = this.rt.f32(stats, B * Lq * H * 2), l = this.rt.f32(this.ptrOf(lse), B * Lq * H);
      for (let i = 0; i < l.length; i++) l[i] = st[2 * i]! + Math.log(st[2 * i + 1]!);
      return [out, lse];
    });
  }

  // ------------------------------------------------------------------ normalisation
  /** Group norm (core op 'group_norm'): [y], or [y, mean [N, G], rstd [N, G]] with p.stats. */
  groupNorm(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, p: GroupNormParams): Tensor[] {
    const N = x.shape[0]!, C = x.shape[1]!;
    return this.withInputs(() => {
      const xp = this.input(x);
      const out = this.out(x.shape);
      const mean = p.stats ? this.out([N, p.groups]) : undefined;
      const rstd = p.stats ? this.out([N, p.groups]) : undefined;
      k.groupNorm(this.rt, xp, this.ptrOf(out), {
        N, C, S: x.size / (N * C), G: p.groups, eps: p.eps, silu: !!p.silu, weight: this.opt(weight), bias: this.opt(bias),
      }, mean ? this.ptrOf(mean) : 0, rstd ? this.ptrOf(rstd) : 0);
      return mean && rstd ? [out, mean, rstd] : [out];
    });
  }

  /** Layer norm over the last dim (core op 'layer_norm'): [y], or [y, mean, rstd] (x's shape less its last dim). */
  layerNorm(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, p: { eps: number; stats?: boolean }): Tensor[] {
    const D = x.shape[x.rank - 1]!, rows = x.size / D, rowShape = x.shape.slice(0, -1);
    return this.withInputs(() => {
      const xp = this.input(x);
      const out = this.out(x.shape);
      const mean = p.stats ? this.out(rowShape) : undefined;
      const rstd = p.stats ? this.out(rowShape) : undefined;
      k.layerNorm(this.rt, xp, this.ptrOf(out), rows, D, this.opt(weight), this.opt(bias), p.eps,
        mean ? this.ptrOf(mean) : 0, rstd ? this.ptrOf(rstd) : 0);
      return mean && rstd ? [out, mean, rstd] : [out];
    });
  }

  // ------------------------------------------------------------------ resampling
  upsampleNearest(x: Tensor, size: readonly [number, number]): Tensor {
    // torch 'nearest': src = floor(dst * float32(in/out)), as the reference; a gather, in JavaScript.
    const [N, C, H, W] = x.shape as [number, number, number, number];
    const [Ho, Wo] = size;
    return this.withInputs(() => {
      // allocate first: views of an unshared memory detach when it grows
      const xp = this.input(x);
      const out = this.out([N, C, Ho, Wo]);
      const X = this.rt.f32(xp, x.size);
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

  // ------------------------------------------------------------------ extension ops
  /** h [..., 2F] -> [..., F]: h[..., :F] * gelu(h[..., F:]) (the kernel of @cnx/unet's GEGLU op). */
  geglu(h: Tensor): Tensor {
    const D2 = h.shape[h.rank - 1]!, F = D2 / 2;
    return this.withInputs(() => {
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
