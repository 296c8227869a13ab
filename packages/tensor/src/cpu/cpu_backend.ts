// The CPU reference backend. It defines what every op means: plain loops, float64 accumulation
// (JS numbers), results rounded once to f32 on store. Written for clarity first; the hot ops (matmul,
// conv2d) delegate to blocked f32-input / f64-accumulate loops in gemm.ts so that the SD1.5 UNet runs
// at small resolutions in seconds.

import type {
  AttentionOptions, Backend, BinaryOp, Conv2dOptions, CrossNormOptions, GroupNormOptions, MatmulOptions,
  MemoryStats, ReduceOp, Storage, TimestepEmbeddingOptions, UnaryOp, Activation,
} from '../backend.js';
import { DTYPE_BYTES, fromFloat32, rawArrayFor, toFloat32, type DType, type RawArray } from '../dtype.js';
import { numel, type Shape } from '../shape.js';
import { Tensor } from '../tensor.js';
import { gemm } from './gemm.js';
import { erf } from './erf.js';
import { groupNormForward, layerNormForward } from './norm.js';

export interface CpuStorage extends Storage {
  data: RawArray;
}

/** Offsets into storage of each element of a strided view, in row-major order. */
export function stridedOffsets(shape: Shape, strides: readonly number[], offset: number): Int32Array {
  const n = numel(shape);
  const out = new Int32Array(n);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let off = offset;
  for (let i = 0; i < n; i++) {
    out[i] = off;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      off += strides[d]!;
      if (idx[d]! < shape[d]!) break;
      off -= strides[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

export function applyUnary(op: UnaryOp | Activation, x: number): number {
  switch (op) {
    case 'none': return x;
    case 'neg': return -x;
    case 'abs': return Math.abs(x);
    case 'exp': return Math.exp(x);
    case 'log': return Math.log(x);
    case 'sqrt': return Math.sqrt(x);
    case 'rsqrt': return 1 / Math.sqrt(x);
    case 'recip': return 1 / x;
    case 'square': return x * x;
    case 'sin': return Math.sin(x);
    case 'cos': return Math.cos(x);
    case 'tanh': return Math.tanh(x);
    case 'sigmoid': return 1 / (1 + Math.exp(-x));
    case 'relu': return x > 0 ? x : 0;
    case 'silu': return x / (1 + Math.exp(-x));
    case 'gelu': return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'gelu_tanh': return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    case 'quick_gelu': return x / (1 + Math.exp(-1.702 * x));
  }
}

function applyBinary(op: BinaryOp, a: number, b: number): number {
  switch (op) {
    case 'add': return a + b;
    case 'sub': return a - b;
    case 'mul': return a * b;
    case 'div': return a / b;
    case 'max': return a > b || Number.isNaN(a) ? a : b;
    case 'min': return a < b || Number.isNaN(a) ? a : b;
  }
}

/** Per-bin [start, end) of adaptive average pooling (torch's rule). */
export function poolBins(inSize: number, outSize: number): [number, number][] {
  return Array.from({ length: outSize }, (_, i) => [Math.floor((i * inSize) / outSize), Math.ceil(((i + 1) * inSize) / outSize)]);
}

export class CpuBackend implements Backend {
  readonly name = 'cpu' as const;
  readonly description = 'CPU reference (float64 accumulation)';
  private live = 0;
  private peak = 0;

  // ------------------------------------------------------------------ memory
  private make(data: RawArray, shape: Shape, dtype: DType): Tensor {
    const storage: CpuStorage = { refs: 0, byteLength: data.length * DTYPE_BYTES[dtype], data };
    this.live += storage.byteLength;
    this.peak = Math.max(this.peak, this.live);
    return new Tensor(this, storage, dtype, shape);
  }
  private f32(shape: Shape, data: Float32Array<ArrayBufferLike> = new Float32Array(numel(shape))): Tensor {
    return this.make(data, shape, 'f32');
  }
  zeros(shape: Shape, dtype: DType = 'f32'): Tensor {
    return this.make(rawArrayFor(dtype, numel(shape)), shape, dtype);
  }
  fromRaw(data: RawArray, shape: Shape, dtype: DType = 'f32'): Tensor {
    if (data.length !== numel(shape)) throw new Error(`fromRaw: ${data.length} elements do not fill shape [${shape.join(', ')}]`);
    return this.make(data.slice(), shape, dtype);
  }
  /** Raw storage of a tensor (the CPU backend's own accessor; views share it). */
  raw(x: Tensor): RawArray {
    return (x.storage as CpuStorage).data;
  }
  /** f32 values of a tensor in row-major order, synchronously. */
  values(x: Tensor): Float32Array {
    const raw = this.raw(x);
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
    this.live -= storage.byteLength;
    (storage as CpuStorage).data = new Float32Array(0);
  }
  memory(): MemoryStats {
    return { liveBytes: this.live, peakBytes: this.peak, pooledBytes: 0 };
  }
  resetPeak(): void {
    this.peak = this.live;
  }
  async sync(): Promise<void> {}
  destroy(): void {}

  // ------------------------------------------------------------------ layout and type
  contiguous(x: Tensor): Tensor {
    const raw = this.raw(x);
    const offs = stridedOffsets(x.shape, x.strides, x.offset);
    const out = rawArrayFor(x.dtype, offs.length);
    for (let i = 0; i < offs.length; i++) out[i] = raw[offs[i]!]!;
    return this.make(out, x.shape, x.dtype);
  }
  cast(x: Tensor, dtype: DType): Tensor {
    const v = this.values(x);
    return this.make(dtype === 'f32' ? v : fromFloat32(v, dtype), x.shape, dtype);
  }
  concat(xs: readonly Tensor[], axis: number): Tensor {
    const first = xs[0]!;
    const shape = [...first.shape];
    shape[axis] = xs.reduce((s, x) => s + x.shape[axis]!, 0);
    const outer = numel(shape.slice(0, axis));
    const inner = numel(shape.slice(axis + 1));
    const out = rawArrayFor(first.dtype, numel(shape));
    let col = 0;
    const rowLen = shape[axis]! * inner;
    for (const x of xs) {
      const src = this.raw(x);
      const len = x.shape[axis]! * inner;
      for (let o = 0; o < outer; o++) out.set(src.subarray(o * len, (o + 1) * len), o * rowLen + col);
      col += len;
    }
    return this.make(out, shape, first.dtype);
  }

  // ------------------------------------------------------------------ elementwise
  unary(op: UnaryOp, x: Tensor): Tensor {
    const v = this.values(x);
    for (let i = 0; i < v.length; i++) v[i] = applyUnary(op, v[i]!);
    return this.f32(x.shape, v);
  }
  affine(x: Tensor, mul: number, add: number): Tensor {
    const v = this.values(x);
    for (let i = 0; i < v.length; i++) v[i] = v[i]! * mul + add;
    return this.f32(x.shape, v);
  }
  binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
    const va = this.values(a), vb = this.values(b);
    for (let i = 0; i < va.length; i++) va[i] = applyBinary(op, va[i]!, vb[i]!);
    return this.f32(a.shape, va);
  }

  // ------------------------------------------------------------------ reductions
  reduce(op: ReduceOp, x: Tensor, axes: readonly number[]): Tensor {
    // Move reduced axes last, then reduce each contiguous run of `len` elements.
    const kept = x.shape.map((_, i) => i).filter((i) => !axes.includes(i));
    const perm = x.permute([...kept, ...axes]);
    const v = this.values(perm);
    perm.dispose();
    const len = numel(axes.map((a) => x.shape[a]!));
    const outShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const out = new Float32Array(numel(outShape));
    for (let o = 0; o < out.length; o++) {
      let acc = op === 'max' ? -Infinity : op === 'min' ? Infinity : 0;
      for (let i = o * len; i < (o + 1) * len; i++) {
        const e = v[i]!;
        if (op === 'max') acc = e > acc || Number.isNaN(e) ? e : acc;
        else if (op === 'min') acc = e < acc || Number.isNaN(e) ? e : acc;
        else acc += e;
      }
      out[o] = op === 'mean' ? acc / len : acc;
    }
    return this.f32(outShape, out);
  }
  softmax(x: Tensor): Tensor {
    const v = this.values(x);
    const D = x.shape[x.rank - 1]!;
    for (let r = 0; r < v.length / D; r++) {
      let m = -Infinity;
      for (let j = 0; j < D; j++) m = Math.max(m, v[r * D + j]!);
      const e = new Float64Array(D);
      let s = 0;
      for (let j = 0; j < D; j++) s += e[j] = Math.exp(v[r * D + j]! - m);
      for (let j = 0; j < D; j++) v[r * D + j] = e[j]! / s;
    }
    return this.f32(x.shape, v);
  }

  // ------------------------------------------------------------------ linear algebra
  matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
    const [Ba, r0, c0] = a.shape as [number, number, number];
    const [Bb, r1, c1] = b.shape as [number, number, number];
    const M = opts.transA ? c0 : r0, K = opts.transA ? r0 : c0;
    const N = opts.transB ? r1 : c1;
    const B = Math.max(Ba, Bb);
    const A = this.raw(a) as Float32Array, Bm = this.raw(b) as Float32Array;
    const out = new Float32Array(B * M * N);
    const bias = opts.bias ? (this.raw(opts.bias) as Float32Array) : undefined;
    const res = opts.residual ? (this.raw(opts.residual) as Float32Array) : undefined;
    const alpha = opts.alpha ?? 1, act = opts.activation ?? 'none';
    for (let bi = 0; bi < B; bi++) {
      const aOff = Ba === 1 ? 0 : bi * M * K, bOff = Bb === 1 ? 0 : bi * K * N;
      const acc = gemm(A, aOff, opts.transA ? [1, M] : [K, 1], Bm, bOff, opts.transB ? [1, K] : [N, 1], M, N, K);
      const o = bi * M * N;
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let y = alpha * acc[m * N + n]! + (bias ? bias[n]! : 0);
          y = applyUnary(act, y);
          out[o + m * N + n] = res ? y + res[o + m * N + n]! : y;
        }
      }
    }
    return this.f32([B, M, N], out);
  }

  conv2d(x: Tensor, w: Tensor, bias: Tensor | undefined, opts: Conv2dOptions): Tensor {
    const [N, C, H, W] = x.shape as [number, number, number, number];
    const [O, Cg, KH, KW] = w.shape as [number, number, number, number];
    const [sh, sw] = opts.stride;
    const [pt, pb, pl, pr] = opts.padding;
    const G = opts.groups, Og = O / G;
    const Ho = Math.floor((H + pt + pb - KH) / sh) + 1, Wo = Math.floor((W + pl + pr - KW) / sw) + 1;
    if (Ho <= 0 || Wo <= 0) throw new Error(`conv2d: kernel ${KH}x${KW} larger than padded input ${H}x${W}`);
    const X = this.raw(x) as Float32Array, Wt = this.raw(w) as Float32Array;
    const bv = bias ? (this.raw(bias) as Float32Array) : undefined;
    const res = opts.residual ? (this.raw(opts.residual) as Float32Array) : undefined;
    const act = opts.activation ?? 'none';
    const out = new Float32Array(N * O * Ho * Wo);
    const P = Ho * Wo, Kc = Cg * KH * KW;
    // im2col over a chunk per group: cols [Kc, S * R * Wo] for S samples and R output rows each
    // (column = (s * R + r) * Wo + ox), then out[Og, cols] = W[Og, Kc] @ cols with f64 accumulation.
    // Batching samples widens the product for the small latent maps (8x8 at 64 px) that dominate the
    // UNet; a single large map (the control modules at pixel resolution) is split into bands of rows.
    // Either way cols stays under COLS_CAP elements. cols lives in a SharedArrayBuffer so the gemm's
    // second thread can read it without a copy.
    const COLS_CAP = 1 << 25;
    const S = Math.max(1, Math.min(N, Math.floor(COLS_CAP / (Kc * P))));
    const R = S > 1 ? Ho : Math.max(1, Math.min(Ho, Math.floor(COLS_CAP / (Kc * Wo))));
    const colsLen = Kc * S * R * Wo;
    const cols = typeof SharedArrayBuffer === 'function' ? new Float32Array(new SharedArrayBuffer(colsLen * 4)) : new Float32Array(colsLen);
    for (let n0 = 0; n0 < N; n0 += S) {
      const ns = Math.min(S, N - n0);
      for (let oy0 = 0; oy0 < Ho; oy0 += R) {
        const nr = Math.min(R, Ho - oy0), band = nr * Wo, SP = ns * band;
        for (let g = 0; g < G; g++) {
          for (let s = 0; s < ns; s++) {
            const n = n0 + s;
            for (let c = 0; c < Cg; c++) {
              const xc = (n * C + g * Cg + c) * H * W;
              for (let ky = 0; ky < KH; ky++) {
                for (let kx = 0; kx < KW; kx++) {
                  const row = ((c * KH + ky) * KW + kx) * SP + s * band;
                  for (let r = 0; r < nr; r++) {
                    const iy = (oy0 + r) * sh - pt + ky;
                    const rowY = row + r * Wo;
                    if (iy < 0 || iy >= H) { cols.fill(0, rowY, rowY + Wo); continue; }
                    const xr = xc + iy * W;
                    for (let ox = 0; ox < Wo; ox++) {
                      const ix = ox * sw - pl + kx;
                      cols[rowY + ox] = ix >= 0 && ix < W ? X[xr + ix]! : 0;
                    }
                  }
                }
              }
            }
          }
          const acc = gemm(Wt, g * Og * Kc, [Kc, 1], cols, 0, [SP, 1], Og, SP, Kc);
          for (let o = 0; o < Og; o++) {
            const oc = g * Og + o;
            const b = bv ? bv[oc]! : 0;
            for (let s = 0; s < ns; s++) {
              const base = ((n0 + s) * O + oc) * P + oy0 * Wo, a0 = o * SP + s * band;
              if (act === 'none' && !res) {
                for (let p = 0; p < band; p++) out[base + p] = acc[a0 + p]! + b;
              } else {
                for (let p = 0; p < band; p++) {
                  const y = applyUnary(act, acc[a0 + p]! + b);
                  out[base + p] = res ? y + res[base + p]! : y;
                }
              }
            }
          }
        }
      }
    }
    return this.f32([N, O, Ho, Wo], out);
  }

  attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Tensor {
    const [B, Lq, H, D] = q.shape as [number, number, number, number];
    const Lk = k.shape[1]!, Dv = v.shape[3]!;
    const Q = this.raw(q) as Float32Array, Kt = this.raw(k) as Float32Array, V = this.raw(v) as Float32Array;
    const out = new Float32Array(B * Lq * H * Dv);
    const s = new Float64Array(Lk);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        for (let i = 0; i < Lq; i++) {
          const qo = ((b * Lq + i) * H + h) * D;
          let m = -Infinity;
          const jEnd = opts.causal ? i + 1 : Lk;
          for (let j = 0; j < jEnd; j++) {
            const ko = ((b * Lk + j) * H + h) * D;
            let dot = 0;
            for (let d = 0; d < D; d++) dot += Q[qo + d]! * Kt[ko + d]!;
            s[j] = dot * opts.scale;
            if (s[j]! > m) m = s[j]!;
          }
          let z = 0;
          for (let j = 0; j < jEnd; j++) z += s[j] = Math.exp(s[j]! - m);
          const oo = ((b * Lq + i) * H + h) * Dv;
          for (let d = 0; d < Dv; d++) {
            let acc = 0;
            for (let j = 0; j < jEnd; j++) acc += s[j]! * V[((b * Lk + j) * H + h) * Dv + d]!;
            out[oo + d] = acc / z;
          }
        }
      }
    }
    return this.f32([B, Lq, H, Dv], out);
  }

  // ------------------------------------------------------------------ normalisation
  groupNorm(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, opts: GroupNormOptions): Tensor {
    const { y } = groupNormForward(this.values(x), x.shape, weight && this.values(weight), bias && this.values(bias), opts);
    return this.f32(x.shape, y);
  }

  layerNorm(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number): Tensor {
    const { y } = layerNormForward(this.values(x), x.shape, weight && this.values(weight), bias && this.values(bias), eps);
    return this.f32(x.shape, y);
  }

  crossNorm(x: Tensor, control: Tensor, opts: CrossNormOptions): Tensor {
    const [N, C, h, w] = x.shape as [number, number, number, number];
    const Nc = control.shape[0]!;
    const X = this.raw(x) as Float32Array;
    const pooled = this.adaptiveAvgPool2d(control, [h, w]);
    const P = this.raw(pooled) as Float32Array;
    const statsSrc = opts.order === 'pool_then_norm' ? P : (this.raw(control) as Float32Array);
    const per = C * h * w, perStats = statsSrc.length / Nc;
    const scales = typeof opts.scale === 'number' ? undefined : (this.raw(opts.scale) as Float32Array);
    const out = new Float32Array(N * per);
    const stats = (arr: Float32Array, start: number, len: number): [number, number] => {
      let mu = 0;
      for (let i = start; i < start + len; i++) mu += arr[i]!;
      mu /= len;
      let ss = 0;
      for (let i = start; i < start + len; i++) ss += (arr[i]! - mu) ** 2;
      return [mu, Math.sqrt(ss / (len - 1))]; // unbiased, as torch.std
    };
    for (let n = 0; n < N; n++) {
      const nc = Nc === 1 ? 0 : n;
      const [mx, sx] = stats(X, n * per, per);
      const [mc, sc] = stats(statsSrc, nc * perStats, perStats);
      const s = scales ? scales[n]! : (opts.scale as number);
      const k = sx / (sc + opts.eps);
      for (let i = 0; i < per; i++) {
        const normed = (P[nc * per + i]! - mc) * k + mx;
        out[n * per + i] = (opts.residual === false ? 0 : X[n * per + i]!) + normed * s;
      }
    }
    pooled.dispose();
    return this.f32(x.shape, out);
  }

  // ------------------------------------------------------------------ resampling
  upsampleNearest(x: Tensor, size: readonly [number, number]): Tensor {
    const [N, C, H, W] = x.shape as [number, number, number, number];
    const [Ho, Wo] = size;
    const X = this.raw(x) as Float32Array;
    const out = new Float32Array(N * C * Ho * Wo);
    // torch 'nearest' computes the source index with a float32 scale = in/out.
    const fy = Math.fround(H / Ho), fx = Math.fround(W / Wo);
    for (let nc = 0; nc < N * C; nc++) {
      for (let oy = 0; oy < Ho; oy++) {
        const iy = Math.min(Math.floor(Math.fround(oy * fy)), H - 1);
        for (let ox = 0; ox < Wo; ox++) {
          const ix = Math.min(Math.floor(Math.fround(ox * fx)), W - 1);
          out[(nc * Ho + oy) * Wo + ox] = X[(nc * H + iy) * W + ix]!;
        }
      }
    }
    return this.f32([N, C, Ho, Wo], out);
  }

  adaptiveAvgPool2d(x: Tensor, size: readonly [number, number]): Tensor {
    const [N, C, H, W] = x.shape as [number, number, number, number];
    const [Ho, Wo] = size;
    const X = this.raw(x) as Float32Array;
    const out = new Float32Array(N * C * Ho * Wo);
    const rows = poolBins(H, Ho), cols = poolBins(W, Wo);
    for (let nc = 0; nc < N * C; nc++) {
      for (let oy = 0; oy < Ho; oy++) {
        const [y0, y1] = rows[oy]!;
        for (let ox = 0; ox < Wo; ox++) {
          const [x0, x1] = cols[ox]!;
          let s = 0;
          for (let y = y0; y < y1; y++) for (let xx = x0; xx < x1; xx++) s += X[(nc * H + y) * W + xx]!;
          out[(nc * Ho + oy) * Wo + ox] = s / ((y1 - y0) * (x1 - x0));
        }
      }
    }
    return this.f32([N, C, Ho, Wo], out);
  }

  // ------------------------------------------------------------------ diffusion-specific
  timestepEmbedding(t: Tensor, dim: number, opts: TimestepEmbeddingOptions): Tensor {
    // diffusers get_timestep_embedding: exponent = -ln(max_period) * k / (half - shift), computed in f32.
    const T = this.raw(t) as Float32Array;
    const half = Math.floor(dim / 2);
    const maxPeriod = opts.maxPeriod ?? 10000;
    const freqs = new Float32Array(half);
    for (let k = 0; k < half; k++) freqs[k] = Math.exp(Math.fround(Math.fround(-Math.log(maxPeriod) * k) / (half - opts.downscaleFreqShift)));
    const out = new Float32Array(T.length * dim);
    const sc = opts.scale ?? 1;
    for (let n = 0; n < T.length; n++) {
      for (let k = 0; k < half; k++) {
        const arg = Math.fround(Math.fround(T[n]! * freqs[k]!) * sc);
        const [first, second] = opts.flipSinToCos ? [Math.cos(arg), Math.sin(arg)] : [Math.sin(arg), Math.cos(arg)];
        out[n * dim + k] = first;
        out[n * dim + half + k] = second;
      }
      // odd dim: the last column stays zero (diffusers pads with zeros)
    }
    return this.f32([T.length, dim], out);
  }

  geglu(h: Tensor): Tensor {
    const D2 = h.shape[h.rank - 1]!, F = D2 / 2;
    const H = this.raw(h) as Float32Array;
    const rows = H.length / D2;
    const out = new Float32Array(rows * F);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < F; j++) out[r * F + j] = H[r * D2 + j]! * applyUnary('gelu', H[r * D2 + F + j]!);
    }
    return this.f32([...h.shape.slice(0, -1), F], out);
  }
}
