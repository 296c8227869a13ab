// The Backend contract: one op-level interface that the CPU reference backend and the WebGPU backend
// both implement completely (a missing op is a type error). The CPU backend defines what each op means;
// the WebGPU backend must agree with it within the test tolerances.
//
// Conventions every implementation may rely on (the functional layer in ops.ts establishes them):
//  - `unary`, `affine`, `binary`, `reduce`, `contiguous` and `cast` accept any strided layout
//    (stride 0 for broadcast dims); for `binary` both inputs already have the output's shape.
//  - every other op receives contiguous f32 inputs with the shapes documented on the op.
//  - every op returns a new, contiguous tensor that the caller owns (and disposes).

import type { DType, RawArray } from './dtype.js';
import type { Shape } from './shape.js';
import type { Tensor } from './tensor.js';

/** Backend-owned memory behind one or more tensor views; reference-counted by Tensor. */
export interface Storage {
  /** Number of live Tensor views on this storage. When it drops to 0 the backend frees it. */
  refs: number;
  readonly byteLength: number;
}

export type UnaryOp =
  | 'neg' | 'abs' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'recip' | 'square' | 'sin' | 'cos' | 'tanh'
  | 'sigmoid' | 'relu' | 'silu'
  | 'gelu' // exact: x * Phi(x) with erf (torch default)
  | 'gelu_tanh' // tanh approximation
  | 'quick_gelu'; // x * sigmoid(1.702 x) (CLIP)

export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'max' | 'min';
export type ReduceOp = 'sum' | 'mean' | 'max' | 'min';
/** Activations a kernel can apply in its epilogue. */
export type Activation = 'none' | 'silu' | 'gelu' | 'gelu_tanh' | 'quick_gelu' | 'relu';

export interface MatmulOptions {
  /** a is stored as [B, K, M] (read transposed). */
  transA?: boolean;
  /** b is stored as [B, N, K] (read transposed): the layout of a torch Linear weight. */
  transB?: boolean;
  /** [N], added to every row. */
  bias?: Tensor;
  /** out = act(alpha * a@b + bias). */
  alpha?: number;
  activation?: Activation;
  /** [B, M, N], added after the activation (fused residual). */
  residual?: Tensor;
}

export interface Conv2dOptions {
  stride: readonly [number, number];
  /** [top, bottom, left, right] zero padding; asymmetric padding is allowed. */
  padding: readonly [number, number, number, number];
  groups: number;
  /** [N, O, Ho, Wo], added to the output (fused residual). */
  residual?: Tensor;
  activation?: Activation;
}

export interface GroupNormOptions {
  groups: number;
  eps: number;
  /** Apply SiLU after the affine transform (diffusers' norm -> act pattern). */
  silu?: boolean;
}

export interface AttentionOptions {
  /** Multiplier of q.k (usually 1/sqrt(D)). */
  scale: number;
  /** Mask keys j > i (CLIP's causal self-attention). Requires Lq === Lk. */
  causal?: boolean;
}

export interface CrossNormOptions {
  /** Added to sigma of the control (not inside a sqrt): ControlNeXt's code, spec section 2.7. */
  eps: number;
  /**
   * 'pool_then_norm': the control is pooled to the feature size first and its statistics are those
   * of the pooled map (SD1.5, SD1.5-Training). 'norm_then_pool': statistics at the control's own
   * resolution, then pooled (SDXL, SVD). Per-sample affine maps commute with pooling, so both
   * orders are one pool plus one affine map; they differ only in which statistics are used.
   */
  order: 'pool_then_norm' | 'norm_then_pool';
  /** Scale s of the added term: a number, or a contiguous f32 tensor [N] (one per sample, e.g. CFG). */
  scale: number | Tensor;
  /** true (default): return x + s*c_hat; false: return s*c_hat alone (for inspection). */
  residual?: boolean;
}

export interface TimestepEmbeddingOptions {
  flipSinToCos: boolean;
  downscaleFreqShift: number;
  /** Multiplier of the embedding (diffusers `scale`, 1 by default). */
  scale?: number;
  maxPeriod?: number;
}

export interface MemoryStats {
  /** Bytes in live storages. */
  liveBytes: number;
  /** High-water mark of liveBytes since the last resetPeak(). */
  peakBytes: number;
  /** Bytes held by a buffer pool for reuse (WebGPU), 0 where there is none. */
  pooledBytes: number;
}

export interface Backend {
  readonly name: 'cpu' | 'webgpu' | 'wasm';
  /** Human-readable description of what runs the ops (adapter name and backend for WebGPU). */
  readonly description: string;

  // ---- memory ----
  /** A new zero-filled contiguous tensor. */
  zeros(shape: Shape, dtype?: DType): Tensor;
  /** A new contiguous tensor holding `data` (raw elements of `dtype`, f32 by default). */
  fromRaw(data: RawArray, shape: Shape, dtype?: DType): Tensor;
  /** Read any tensor (any layout) back as f32 values in row-major order. */
  read(x: Tensor): Promise<Float32Array>;
  /** Called by Tensor when the last view of a storage is disposed. */
  free(storage: Storage): void;
  memory(): MemoryStats;
  resetPeak(): void;
  /** Wait for all submitted work. */
  sync(): Promise<void>;
  /** Release every resource; the backend is unusable afterwards. */
  destroy(): void;

  // ---- layout and type ----
  contiguous(x: Tensor): Tensor;
  cast(x: Tensor, dtype: DType): Tensor;
  /** Concatenate contiguous tensors of equal rank along `axis`. */
  concat(xs: readonly Tensor[], axis: number): Tensor;

  // ---- elementwise ----
  unary(op: UnaryOp, x: Tensor): Tensor;
  /** x * mul + add. */
  affine(x: Tensor, mul: number, add: number): Tensor;
  binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor;

  // ---- reductions ----
  /** Reduce over `axes` (sorted, unique, non-negative), keeping them as size-1 dims. */
  reduce(op: ReduceOp, x: Tensor, axes: readonly number[]): Tensor;
  /** Softmax over the last dim, numerically stable (max subtracted). */
  softmax(x: Tensor): Tensor;

  // ---- linear algebra ----
  /**
   * a: [Ba, M, K] (or [Ba, K, M] with transA), b: [Bb, K, N] (or [Bb, N, K] with transB), where Ba and Bb
   * are each B or 1 (a batch of 1 is shared). Returns [B, M, N].
   */
  matmul(a: Tensor, b: Tensor, opts?: MatmulOptions): Tensor;
  /** x: [N, C, H, W], w: [O, C/groups, kh, kw], bias: [O]; dilation 1. Returns [N, O, Ho, Wo]. */
  conv2d(x: Tensor, w: Tensor, bias: Tensor | undefined, opts: Conv2dOptions): Tensor;
  /**
   * Multi-head attention, heads interleaved in the channel dim as torch Linear outputs are:
   * q: [B, Lq, H, D], k: [B, Lk, H, D], v: [B, Lk, H, Dv]. Returns [B, Lq, H, Dv]. Tiled with an
   * online softmax on WebGPU, so the [Lq, Lk] score matrix is never materialised.
   */
  attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Tensor;

  // ---- normalisation ----
  /** x: [N, C, ...spatial]; weight, bias: [C]. */
  groupNorm(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, opts: GroupNormOptions): Tensor;
  /** Over the last dim D; weight, bias: [D]. */
  layerNorm(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number): Tensor;
  /**
   * ControlNeXt cross normalisation and injection, fused. x: [N, C, h, w] denoiser feature;
   * control: [Nc, C, h', w'] with Nc = N or 1 (one control map shared by the batch). Per sample n:
   * c = pool(control) to [h, w]; (mu, sigma) of x[n] and of the control (pooled or not, see `order`)
   * over C*H*W with the UNBIASED std; c_hat = (c - mu_c) * sigma_x / (sigma_c + eps) + mu_x;
   * returns x + s[n] * c_hat (or s[n] * c_hat with residual: false).
   */
  crossNorm(x: Tensor, control: Tensor, opts: CrossNormOptions): Tensor;

  // ---- resampling ----
  /** x: [N, C, H, W] -> [N, C, Ho, Wo], torch 'nearest': src = floor(dst * H / Ho). */
  upsampleNearest(x: Tensor, size: readonly [number, number]): Tensor;
  /** x: [N, C, H, W] -> [N, C, Ho, Wo]; bins start = floor(i*H/Ho), end = ceil((i+1)*H/Ho). */
  adaptiveAvgPool2d(x: Tensor, size: readonly [number, number]): Tensor;

  // ---- diffusion-specific ----
  /** t: [N] -> [N, dim], diffusers get_timestep_embedding. */
  timestepEmbedding(t: Tensor, dim: number, opts: TimestepEmbeddingOptions): Tensor;
  /** h: [..., 2F] -> [..., F]: h[..., :F] * gelu(h[..., F:]) with exact erf GELU (diffusers GEGLU). */
  geglu(h: Tensor): Tensor;
}
