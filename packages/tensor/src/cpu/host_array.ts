// The argument type of the pure CPU reference functions (attention_backward.ts, cross_norm_backward.ts,
// geglu_backward.ts): a contiguous row-major array and its shape. Structurally the HostTensor of the
// op-definition seam ({ shape, data: Float32Array }) when T is Float32Array; the float64 variants
// (T = Float64Array) feed finite-difference gradient checks.

export interface HostArray<T extends ArrayLike<number> = ArrayLike<number>> {
  readonly shape: readonly number[];
  readonly data: T;
}
