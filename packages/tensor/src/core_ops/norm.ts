// Group normalisation and layer normalisation (torch.nn.functional.group_norm / layer_norm: biased
// variance, eps inside the sqrt). With `stats` they also return what backward needs, as llm.c's forward
// kernels keep it: mean and rstd = 1 / sqrt(var + eps) per normalised segment.
//
//  - group norm: x [N, C, ...spatial], weight / bias [C]; segment (n, g) = channels g*C/G .. (g+1)*C/G of
//    sample n; optional SiLU after the affine map (diffusers' norm -> act). Stats [N, G].
//  - layer norm: x [..., D], weight / bias [D]; segment = one row. Stats [...] (x's shape without D).

import { defineOp, expectF32, expectVector, f32 } from '../op_definition.js';
import { formatShape, numel } from '../shape.js';

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

/** Mean and rstd of data[start, start + len) in float64 (two passes). */
function segmentStats(v: Float32Array, start: number, len: number, eps: number): [number, number] {
  let mu = 0;
  for (let i = start; i < start + len; i++) mu += v[i]!;
  mu /= len;
  let ss = 0;
  for (let i = start; i < start + len; i++) ss += (v[i]! - mu) ** 2;
  return [mu, 1 / Math.sqrt(ss / len + eps)];
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
    const v = x!.data as Float32Array;
    const N = x!.shape[0]!, C = x!.shape[1]!;
    const S = v.length / (N * C), G = p.groups, Cg = C / G;
    const wv = weight?.data as Float32Array | undefined, bv = bias?.data as Float32Array | undefined;
    const out = new Float32Array(v.length);
    const mean = new Float32Array(N * G), rstd = new Float32Array(N * G);
    for (let n = 0; n < N; n++) {
      for (let g = 0; g < G; g++) {
        const start = (n * C + g * Cg) * S;
        const [mu, r] = segmentStats(v, start, Cg * S, p.eps);
        mean[n * G + g] = mu;
        rstd[n * G + g] = r;
        for (let c = 0; c < Cg; c++) {
          const ch = g * Cg + c;
          const wc = wv ? wv[ch]! : 1, bc = bv ? bv[ch]! : 0;
          for (let i = start + c * S; i < start + (c + 1) * S; i++) {
            const y = (v[i]! - mu) * r * wc + bc;
            out[i] = p.silu ? y / (1 + Math.exp(-y)) : y;
          }
        }
      }
    }
    return p.stats ? [out, mean, rstd] : [out];
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
    const v = x!.data as Float32Array;
    const D = x!.shape[x!.shape.length - 1]!;
    const rows = numel(x!.shape.slice(0, -1));
    const wv = weight?.data as Float32Array | undefined, bv = bias?.data as Float32Array | undefined;
    const out = new Float32Array(v.length);
    const mean = new Float32Array(rows), rstd = new Float32Array(rows);
    for (let r = 0; r < rows; r++) {
      const [mu, rs] = segmentStats(v, r * D, D, p.eps);
      mean[r] = mu;
      rstd[r] = rs;
      for (let j = 0; j < D; j++) out[r * D + j] = (v[r * D + j]! - mu) * rs * (wv ? wv[j]! : 1) + (bv ? bv[j]! : 0);
    }
    return p.stats ? [out, mean, rstd] : [out];
  },
});
