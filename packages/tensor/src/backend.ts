// The Backend contract: memory management plus running an op definition (op_definition.ts). What an op
// means is its definition's float64 CPU reference; a backend only supplies storage and, for the ops it
// accelerates, an implementation (the WebGPU backend's typed table of core kernels, an extension op's
// `kernels` entry). Backends are found by name (@cnx/kernels createBackend), so `name` is an open string.
//
// Conventions every implementation may rely on (runOp establishes them):
//  - ops with inputLayout 'contiguous' receive contiguous inputs with offset 0; 'strided' ops (the
//    elementwise family, reduce) receive the caller's views (stride 0 for broadcast dims);
//  - the definition's outputs() has validated the inputs and fixed the output shapes and dtypes;
//  - every op returns new, contiguous tensors that the caller owns (and disposes).

import type { DType, RawArray } from './dtype.js';
import type { OpDefinition, TensorMeta } from './op_definition.js';
import type { Shape } from './shape.js';
import type { Tensor } from './tensor.js';
import type { WeightDtype } from './weight_dtype.js';

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

export interface MemoryStats {
  /** Bytes in live storages. */
  liveBytes: number;
  /** High-water mark of liveBytes since the last resetPeak(). */
  peakBytes: number;
  /** Bytes held by a buffer pool for reuse (WebGPU), 0 where there is none. */
  pooledBytes: number;
}

export interface Backend {
  /** The name it is found by ('cpu', 'webgpu', ...). */
  readonly name: string;
  /** Human-readable description of what runs the ops (adapter name and backend for WebGPU). */
  readonly description: string;
  /**
   * Storage dtype of model weights loaded onto this backend (weight_dtype.ts): 'f16' keeps the weights
   * of matmul, conv2d and the norms in 16 bits (the ops widen them on load); absent or 'f32': every
   * parameter is f32. Set when the backend is created; a backend whose ops cannot read 16-bit weights
   * leaves it unset.
   */
  readonly weightDtype?: WeightDtype;
  /**
   * Run `fn` with full-precision (f32) compute where the backend otherwise computes in a lower precision
   * (WebGPU compute 'f16'): what diffusers' VAE force_upcast asks for. Absent: the backend always
   * computes in f32 (or float64), so there is nothing to switch.
   */
  inFullPrecision?<T>(fn: () => T): T;

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
  /** A row-major copy of any view, in its dtype. */
  contiguous(x: Tensor): Tensor;
  /** A contiguous copy of any view converted to `dtype` (round to nearest even for f16/bf16). */
  cast(x: Tensor, dtype: DType): Tensor;

  // ---- ops ----
  /**
   * Run `op` (already checked by runOp) on this backend's tensors; `outputs` are the shapes and dtypes its
   * definition gave. Errors when this backend has no implementation of the op.
   */
  run<P>(op: OpDefinition<P>, inputs: readonly (Tensor | undefined)[], params: P, outputs: readonly TensorMeta[]): Tensor[];
}

// Parameter types of the core ops (core_ops/), also taken by the WebGPU kernel families.

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
  /** Also return the per-(sample, group) mean and rstd [N, G] that backward needs. */
  stats?: boolean;
}

export interface LayerNormOptions {
  eps: number;
  /** Also return the per-row mean and rstd [...rows] that backward needs. */
  stats?: boolean;
}

export interface AttentionOptions {
  /** Multiplier of q.k (usually 1/sqrt(D)). */
  scale: number;
  /** Mask keys j > i (CLIP's causal self-attention). Requires Lq === Lk. */
  causal?: boolean;
  /** Also return the logsumexp of each row of scaled scores [B, Lq, H] (flash-attention backward). */
  stats?: boolean;
}
