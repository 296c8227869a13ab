// f16 compute with f32 accumulation (issue 16): what the f16 variants of the hot kernels (matmul.ts,
// conv2d.ts, attention.ts) share.
//
// Semantics, identical in the three families: the operands are ROUNDED TO f16 where the kernel stages
// them (workgroup memory holds vec4<f16> / f16: half the bytes per staged element, so half the shared
// memory traffic and footprint); each product is formed in f32 from the two f16 values, which is exact
// (11 + 11 significand bits < 24), and accumulated in f32. This is the arithmetic of f16 tensor-core
// MMA with f32 accumulators, so the error against the float64 reference on the ORIGINAL operands is
// that of the operand rounding alone, |err| <= 2 u16 sum_k |a_k b_k| (u16 = 2^-11), plus the f32
// accumulation error the f32 kernel already has; and against the reference on f16-ROUNDED operands it
// is the f32 kernel's tolerance. Attention rounds k and v, and q where it is staged (scores, softmax
// and P @ V stay f32); a q tile read straight from global memory stays f32. Only values that pass
// through f16 storage are rounded: a conversion f32 -> f16 -> f32 in registers is not reliably a
// rounding (Mesa's lavapipe compiler folds it to the identity, measured 2026-12 with Mesa 25.0.7), so no
// kernel relies on one. Attention that saves its logsumexp for a backward (training) runs in f32, so the
// saved statistic matches the backward's f32 recomputation of the scores (attention.ts attentionWithLse).
// Range: operands beyond f16's range (|x| > 65504) become infinite; Stable Diffusion's UNet activations
// stay far inside it (fp16 inference is its standard deployment).
//
// Selection: the backend runs these variants when it was created with compute 'f16' and the device has
// `shader-f16` (GpuContext.computeDtype === 'f16'); the WGSL then starts with `enable f16;` and declares
// `alias H = f16;`. Every variant is one template with the staged type as a parameter: with
// `alias H = f32;` (HalfOperands.type 'f32') the same kernel runs on any adapter without rounding, which
// is how the tests check the f16 variants' indexing and staging on adapters without shader-f16 (the
// rounding itself is then checked only where shader-f16 exists; those tests skip loudly elsewhere).
//
// Untuned: the tiles are the f32 kernels' (the halved staging would allow twice the K depth or larger
// tiles at the same workgroup memory); timing needs a GPU with shader-f16.

import { fromFloat32, toFloat32 } from '@cnx/tensor';
import type { GpuContext } from './webgpu/context.js';

/** The staged operand type of an f16-compute variant: 'f16' (shader-f16), or 'f32' (the same kernel unrounded, for tests). */
export interface HalfOperands {
  type: 'f16' | 'f32';
}

/** The f16-compute variant a context asks for: { type: 'f16' } when its computeDtype is 'f16', else undefined (f32 kernels). */
export function halfOperandsFor(ctx: Pick<GpuContext, 'computeDtype' | 'features'>): HalfOperands | undefined {
  if (ctx.computeDtype !== 'f16') return undefined;
  if (!ctx.features.has('shader-f16')) throw new Error("webgpu: computeDtype 'f16' on a device without shader-f16");
  return { type: 'f16' };
}

/** Module preamble of a variant: `enable f16;` (shader-f16 only) and `alias H = <type>;`. Empty for f32 kernels. */
export function halfPreamble(h: HalfOperands | undefined): string {
  if (!h) return '';
  return h.type === 'f16' ? 'enable f16;\nalias H = f16;\n' : 'alias H = f32;\n';
}

/** Bytes of one staged scalar: 2 for f16 operands, 4 otherwise. */
export function stagedBytes(h: HalfOperands | undefined): number {
  return h?.type === 'f16' ? 2 : 4;
}

/** f32 -> f16 -> f32 rounding on the host (round to nearest even), for references of the f16 variants. */
export function roundToF16(values: Float32Array): Float32Array {
  return toFloat32(fromFloat32(values, 'f16'), 'f16');
}
