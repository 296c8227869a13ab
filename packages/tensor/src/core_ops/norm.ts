// Group normalisation and layer normalisation (torch.nn.functional.group_norm / layer_norm: biased
// variance, eps inside the sqrt). With `stats` they also return what backward needs, as llm.c's forward
// kernels keep it: mean and rstd = 1 / sqrt(var + eps) per normalised segment.
//
//  - group norm: x [N, C, ...spatial], weight / bias [C]; segment (n, g) = channels g*C/G .. (g+1)*C/G of
//    sample n; optional SiLU after the affine map (diffusers' norm -> act). Stats [N, G].
//  - layer norm: x [..., D], weight / bias [D]; segment = one row. Stats [...] (x's shape without D).
// weight and bias may be stored as f16/bf16 (weight_dtype.ts): kernels widen them on load.
// Backward: recorded with `stats` on (the caller sees only y), the tape keeps x, weight, bias, mean and
// rstd (not y), and group_norm_backward / layer_norm_backward (grad_ops/norm_backward.ts) give dx,
// dweight, dbias in one op (with SiLU's derivative when fused). Gradients wrt the statistics outputs
// themselves are not supported.

import { groupNormBackwardOp, layerNormBackwardOp } from '../grad_ops/norm_backward.js';
import { defineOp, expectF32, expectVector, f32, runOp, type BackwardFn } from '../op_definition.js';
import type { Tensor } from '../tensor.js';
import { groupNormForward, layerNormForward } from '../cpu/norm.js';
import { formatShape } from '../shape.js';
import { deviceF32, expectWeightDtype, hostF32 } from '../weight_dtype.js';

export interface GroupNormParams {
  groups: number;
  eps: number;
  silu?: boolean;
  stats?: boolean;
}

export interface LayerNormParams {
  eps: number;
  stats?: boolean;
}

/** The backward of a norm definition: dx, dweight, dbias from the saved statistics in one op. */
function normBackward<P extends { stats?: boolean }>(run: (ins: (Tensor | undefined)[], p: P) => Tensor[]): BackwardFn<P> {
  return ({ inputs: [x, weight, bias], outputs: [, mean, rstd], params }, [g, gm, gr]) => {
    if (gm || gr) throw new Error('norm backward: gradients wrt the mean / rstd outputs are not supported');
    if (!g) return [];
    // 16-bit stored affine vectors (f16 weight storage: a frozen norm the gradient passes through) are
    // widened exactly; the backward kernels read f32.
    const w32 = deviceF32(weight), b32 = deviceF32(bias);
    const r = run([x, g, mean, rstd, w32, b32], params);
    if (w32 !== weight) w32?.dispose();
    if (b32 !== bias) b32?.dispose();
    let i = 1;
    return [r[0], weight ? r[i++] : undefined, bias ? r[i++] : undefined];
  };
}

export const groupNormOp = defineOp<GroupNormParams>({
  name: 'group_norm',
  outputs([x, weight, bias], p) {
    expectF32('groupNorm', [x], ['input']);
    expectWeightDtype('groupNorm', weight, 'weight');
    expectWeightDtype('groupNorm', bias, 'bias');
    const shape = x!.shape;
    const C = shape[1]!;
    if (shape.length < 2 || !Number.isInteger(p.groups) || p.groups < 1 || C % p.groups !== 0) {
      throw new Error(`groupNorm: ${C} channels of ${formatShape(shape)} do not split into ${p.groups} groups`);
    }
    expectVector('groupNorm', 'weight', weight, C);
    expectVector('groupNorm', 'bias', bias, C);
    return p.stats ? f32(shape, [shape[0]!, p.groups], [shape[0]!, p.groups]) : f32(shape);
  },
  cpu([x, weight, bias], p) {
    const r = groupNormForward(x!.data as Float32Array, x!.shape, hostF32(weight), hostF32(bias), p);
    return p.stats ? [r.y, r.mean, r.rstd] : [r.y];
  },
  recordParams: (p) => (p.stats ? p : { ...p, stats: true }),
  saves: () => ({ outputs: [1, 2] }),
  backward: normBackward((ins, p: GroupNormParams) => runOp(groupNormBackwardOp, ins, { groups: p.groups, silu: p.silu })),
});

export const layerNormOp = defineOp<LayerNormParams>({
  name: 'layer_norm',
  outputs([x, weight, bias], p) {
    expectF32('layerNorm', [x], ['input']);
    expectWeightDtype('layerNorm', weight, 'weight');
    expectWeightDtype('layerNorm', bias, 'bias');
    const shape = x!.shape;
    if (shape.length === 0) throw new Error('layerNorm: expected rank >= 1, found a scalar');
    const D = shape[shape.length - 1]!;
    expectVector('layerNorm', 'weight', weight, D);
    expectVector('layerNorm', 'bias', bias, D);
    const rows = shape.slice(0, -1);
    return p.stats ? f32(shape, rows, rows) : f32(shape);
  },
  cpu([x, weight, bias], p) {
    const r = layerNormForward(x!.data as Float32Array, x!.shape, hostF32(weight), hostF32(bias), p.eps);
    return p.stats ? [r.y, r.mean, r.rstd] : [r.y];
  },
  recordParams: (p) => (p.stats ? p : { ...p, stats: true }),
  saves: () => ({ outputs: [1, 2] }),
  backward: normBackward((ins) => runOp(layerNormBackwardOp, ins, {})),
});
