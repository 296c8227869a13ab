// Group normalisation and layer normalisation (torch.nn.functional.group_norm / layer_norm: biased
// variance, eps inside the sqrt). With `stats` they also return what backward needs, as llm.c's forward
// kernels keep it: mean and rstd = 1 / sqrt(var + eps) per normalised segment.
//
//  - group norm: x [N, C, ...spatial], weight / bias [C]; segment (n, g) = channels g*C/G .. (g+1)*C/G of
//    sample n; optional SiLU after the affine map (diffusers' norm -> act). Stats [N, G].
//  - layer norm: x [..., D], weight / bias [D]; segment = one row. Stats [...] (x's shape without D).

import { defineOp, expectF32, expectVector, f32 } from '../op_definition.js';
import { groupNormForward, layerNormForward } from '../cpu/norm.js';
import { formatShape } from '../shape.js';

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

export const groupNormOp = defineOp<GroupNormParams>({
  name: 'group_norm',
  outputs([x, weight, bias], p) {
    expectF32('groupNorm', [x, weight, bias], ['input', 'weight', 'bias']);
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
    const r = groupNormForward(x!.data as Float32Array, x!.shape, weight?.data as Float32Array | undefined, bias?.data as Float32Array | undefined, p);
    return p.stats ? [r.y, r.mean, r.rstd] : [r.y];
  },
});

export const layerNormOp = defineOp<LayerNormParams>({
  name: 'layer_norm',
  outputs([x, weight, bias], p) {
    expectF32('layerNorm', [x, weight, bias], ['input', 'weight', 'bias']);
    const shape = x!.shape;
    if (shape.length === 0) throw new Error('layerNorm: expected rank >= 1, found a scalar');
    const D = shape[shape.length - 1]!;
    expectVector('layerNorm', 'weight', weight, D);
    expectVector('layerNorm', 'bias', bias, D);
    const rows = shape.slice(0, -1);
    return p.stats ? f32(shape, rows, rows) : f32(shape);
  },
  cpu([x, weight, bias], p) {
    const r = layerNormForward(x!.data as Float32Array, x!.shape, weight?.data as Float32Array | undefined, bias?.data as Float32Array | undefined, p.eps);
    return p.stats ? [r.y, r.mean, r.rstd] : [r.y];
  },
});
