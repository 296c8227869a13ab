// 16-bit weight storage (issue 16, DESIGN.md "Tensor core": f32 compute, f16/bf16 storage).
//
// The ops that read model weights (matmul's b, conv2d's weight, the group/layer norm affine vectors)
// accept them stored as f16 or bf16: their kernels widen each element to f32 when they load it (WGSL
// `unpack2x16float` works without the `shader-f16` feature), and their float64 CPU references decode
// them exactly (toFloat32). Everything else an op reads or writes stays f32. So a model whose weights
// are stored in 16 bits computes exactly what the f32 model computes with the weights rounded to f16:
// the only error f16 storage adds is the rounding of each weight, relative error <= 2^-11 (round to
// nearest even; f16ErrorModel below turns that into golden-case tolerances).
//
// Which dtype a model's weights are stored in is the backend's `weightDtype` (Backend, backend.ts):
// 'f32' (default) widens 16-bit checkpoints once at load, as before; 'f16' keeps the weights of the ops
// above in 16 bits (an f16/bf16 checkpoint stays as it is, an f32 one is rounded to f16 once at load).
// @cnx/unet's loadParameter applies it; biases of matmul/conv2d and every other parameter stay f32
// (they are a fraction of a percent of a UNet's parameters).

import type { DType, RawArray } from './dtype.js';
import { toFloat32 } from './dtype.js';
import type { HostTensor, TensorMeta } from './op_definition.js';
import type { Tensor } from './tensor.js';
import { formatShape } from './shape.js';

/** Storage dtype of model weights on a backend: f32, or f16 (16-bit checkpoints may also stay bf16). */
export type WeightDtype = 'f32' | 'f16';

/** The dtypes an op accepts for a weight input: f32, or 16-bit storage widened on load. */
export function isWeightDtype(dtype: DType): dtype is 'f32' | 'f16' | 'bf16' {
  return dtype === 'f32' || dtype === 'f16' || dtype === 'bf16';
}

/** True for the 16-bit float storage dtypes. */
export function isHalfDtype(dtype: DType): dtype is 'f16' | 'bf16' {
  return dtype === 'f16' || dtype === 'bf16';
}

/** Throws unless a (present) weight input is f32, f16 or bf16; errors name the op and the input. */
export function expectWeightDtype(op: string, x: TensorMeta | undefined, name: string): void {
  if (x && !isWeightDtype(x.dtype)) {
    throw new Error(`${op}: expected ${name} of dtype f32, f16 or bf16 (16-bit storage is widened on load), found ${x.dtype} ${formatShape(x.shape)}`);
  }
}

/** The f32 values of a host tensor of any float dtype (the array itself when already f32). */
export function hostF32(x: HostTensor): Float32Array;
export function hostF32(x: HostTensor | undefined): Float32Array | undefined;
export function hostF32(x: HostTensor | undefined): Float32Array | undefined {
  if (!x) return undefined;
  return x.dtype === 'f32' ? (x.data as Float32Array) : toFloat32(x.data as RawArray, x.dtype);
}

/**
 * A weight as f32 on its own backend: the tensor itself when f32, else its exact widening (a new tensor
 * the caller disposes). For kernels that read only f32 weights, such as the backward ops a gradient
 * passes through on its way past a frozen 16-bit layer.
 */
export function deviceF32(t: Tensor): Tensor;
export function deviceF32(t: Tensor | undefined): Tensor | undefined;
export function deviceF32(t: Tensor | undefined): Tensor | undefined {
  return t && t.dtype !== 'f32' ? t.backend.cast(t, 'f32') : t;
}

/** Unit roundoff of IEEE binary16 (round to nearest): the largest relative error of rounding a normal value. */
export const F16_UNIT_ROUNDOFF = 2 ** -11;
/** Unit roundoff of IEEE binary32. */
export const F32_UNIT_ROUNDOFF = 2 ** -24;

/** A golden-case tolerance (max_abs, rel_l2) with the case's float64 comparison figures, when it has them. */
export interface CaseTolerance {
  max_abs: number;
  rel_l2: number;
  fp32_vs_fp64_max_abs?: number;
  fp32_vs_fp64_rel_l2?: number;
}

/**
 * The tolerance of a golden-case output when the model's weights are stored in f16, from the case's
 * f32 tolerance and the largest magnitude of the reference values. Error model (documented in
 * bench/README.md, "f16"):
 *
 *  - Propagation. f16 storage computes the f32 model on weights w(1 + d), |d| <= u16 = 2^-11. The case
 *    records how far its float32 reference is from the same computation in float64 (`fp32_vs_fp64_*`):
 *    the network's response to relative perturbations of size u32 = 2^-24 in every operation, the
 *    weight-reading ones included. To first order the error is linear in the size of the perturbations,
 *    so perturbations of size u16 in the weight-reading operations alone move the output by about
 *    (u16 / u32) = 2^13 times that figure.
 *  - Direct rounding. An output that is itself a stored 16-bit quantity (a parameter read back, as the
 *    LoRA case checks its fused weights) carries its own rounding: rounded at load and once more when an
 *    f32 merge result is stored back (Module.setParameter), |err| <= 2 u16 |w| (+ 2 * 2^-25 for f16
 *    subnormals). So the allowance is never below 2 u16 max|ref| (max_abs) and 2 u16 (rel_l2); for the
 *    activations of the golden cases the propagation term is the larger one by several times.
 *
 * tol = tol_f32 + max(propagation, direct rounding), per output, for max_abs and rel_l2; tol_f32 covers
 * our f32 compute against PyTorch's. A case without fp32_vs_fp64 figures gets only the direct-rounding term.
 */
export function f16WeightTolerance(t: CaseTolerance, refMaxAbs: number): { max_abs: number; rel_l2: number } {
  const factor = F16_UNIT_ROUNDOFF / F32_UNIT_ROUNDOFF;
  const u = F16_UNIT_ROUNDOFF;
  return {
    max_abs: t.max_abs + Math.max(factor * (t.fp32_vs_fp64_max_abs ?? 0), 2 * u * refMaxAbs + 2 * 2 ** -25),
    rel_l2: t.rel_l2 + Math.max(factor * (t.fp32_vs_fp64_rel_l2 ?? 0), 2 * u),
  };
}
