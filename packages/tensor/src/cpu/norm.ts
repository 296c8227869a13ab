// Group and layer normalisation forwards as pure functions that also return the saved statistics the
// backward needs (DESIGN.md "group/layer norm (returning their statistics when backward needs them)").
// The core op definitions (core_ops/norm.ts) run these as their references, so the op's meaning lives in one place.
//
//  - groupNormForward: x [N, C, ...spatial], G groups; segment (n, g) is x[n, g*Cg:(g+1)*Cg, ...] of
//    L = Cg*S values (Cg = C/G, S = spatial size). y = (x - mean) * rstd * weight[c] + bias[c], then SiLU
//    when `silu`. mean, rstd: [N, G] (torch.nn.functional.group_norm; torch's native_group_norm saves the
//    same two tensors).
//  - layerNormForward: x [..., D]; one segment per row; mean, rstd: [rows] (rows = numel / D), as torch's
//    native_layer_norm saves them.
// Both use the biased variance (divide by L) and rstd = 1 / sqrt(var + eps). Accumulation in float64
// (two passes: mean, then the centred sum of squares); y, mean and rstd are rounded once to f32 on store.

import type { GroupNormParams } from '../core_ops/norm.js';

export interface NormForwardResult {
  y: Float32Array;
  /** Per segment: [N, G] for group norm, [rows] for layer norm. */
  mean: Float32Array;
  rstd: Float32Array;
}

/** groups, eps and the optional SiLU after the affine transform (diffusers ResnetBlock2D: norm1 -> nonlinearity). */
export type GroupNormForwardParams = Pick<GroupNormParams, 'groups' | 'eps' | 'silu'>;

/** Mean and 1/sqrt(biased var + eps) of x[start, start + len), in float64. */
function segmentStats(x: Float32Array, start: number, len: number, eps: number): [number, number] {
  let mu = 0;
  for (let i = start; i < start + len; i++) mu += x[i]!;
  mu /= len;
  let ss = 0;
  for (let i = start; i < start + len; i++) ss += (x[i]! - mu) ** 2;
  return [mu, 1 / Math.sqrt(ss / len + eps)];
}

function checkAffine(op: string, name: string, t: Float32Array | undefined, n: number): void {
  if (t && t.length !== n) throw new Error(`${op}: expected ${name} of ${n} elements, found ${t.length}`);
}

/** x: [N, C, ...spatial] (shape), weight/bias: [C] or undefined. */
export function groupNormForward(
  x: Float32Array, shape: readonly number[], weight: Float32Array | undefined, bias: Float32Array | undefined, p: GroupNormForwardParams,
): NormForwardResult {
  const N = shape[0], C = shape[1];
  if (N === undefined || C === undefined || !(p.groups > 0) || C % p.groups !== 0) {
    throw new Error(`groupNorm: expected x [N, C, ...] with C divisible by groups=${p.groups}, found [${shape.join(', ')}]`);
  }
  const S = shape.slice(2).reduce((a, d) => a * d, 1);
  if (x.length !== N * C * S) throw new Error(`groupNorm: x has ${x.length} elements, shape [${shape.join(', ')}] needs ${N * C * S}`);
  checkAffine('groupNorm', 'weight', weight, C);
  checkAffine('groupNorm', 'bias', bias, C);
  const G = p.groups, Cg = C / G, L = Cg * S;
  const y = new Float32Array(x.length);
  const mean = new Float32Array(N * G), rstd = new Float32Array(N * G);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < G; g++) {
      const start = (n * C + g * Cg) * S;
      const [mu, rs] = segmentStats(x, start, L, p.eps);
      mean[n * G + g] = mu;
      rstd[n * G + g] = rs;
      for (let c = 0; c < Cg; c++) {
        const ch = g * Cg + c;
        const wc = weight ? weight[ch]! : 1, bc = bias ? bias[ch]! : 0;
        for (let i = start + c * S; i < start + (c + 1) * S; i++) {
          const z = (x[i]! - mu) * rs * wc + bc;
          y[i] = p.silu ? z / (1 + Math.exp(-z)) : z;
        }
      }
    }
  }
  return { y, mean, rstd };
}

/** x: [..., D] (shape), weight/bias: [D] or undefined. */
export function layerNormForward(
  x: Float32Array, shape: readonly number[], weight: Float32Array | undefined, bias: Float32Array | undefined, eps: number,
): NormForwardResult {
  const D = shape[shape.length - 1];
  if (D === undefined || D === 0) throw new Error(`layerNorm: expected x [..., D] with D > 0, found [${shape.join(', ')}]`);
  checkAffine('layerNorm', 'weight', weight, D);
  checkAffine('layerNorm', 'bias', bias, D);
  const rows = x.length / D;
  if (!Number.isInteger(rows)) throw new Error(`layerNorm: x has ${x.length} elements, not a multiple of D=${D}`);
  const y = new Float32Array(x.length);
  const mean = new Float32Array(rows), rstd = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const [mu, rs] = segmentStats(x, r * D, D, eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let j = 0; j < D; j++) y[r * D + j] = (x[r * D + j]! - mu) * rs * (weight ? weight[j]! : 1) + (bias ? bias[j]! : 0);
  }
  return { y, mean, rstd };
}
