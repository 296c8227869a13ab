// Backward of group normalisation (+ fused SiLU) and layer normalisation from the saved statistics
// (mean, rstd of norm.ts), float64 accumulation, results rounded once to f32.
//
// Per segment of L values (group norm: (n, g), L = Cg*S; layer norm: a row, L = D), with the saved
// mean and rstd = 1/sqrt(var + eps) (biased var):
//   xhat = (x - mean) * rstd,  z = xhat * w[c] + b[c],  y = silu(z) (fused) or z.
//   dz = dy * silu'(z) (silu'(z) = s (1 + z (1 - s)), s = sigmoid(z); z is recomputed from x, mean, rstd)
//        or dy;
//   dbias[c] = sum dz over everything that uses channel c (all n and positions / all rows),
//   dweight[c] = sum dz * xhat over the same;
//   dxhat = dz * w[c];
//   dx = rstd * (dxhat - mean_seg(dxhat) - xhat * mean_seg(dxhat * xhat)).
// The last line is exact for the biased variance with eps inside the sqrt: d rstd / dx_i =
// -rstd^3 (x_i - mean) / L, so the eps-dependence is carried entirely by rstd and xhat.
// Reference: torch's native_group_norm_backward / native_layer_norm_backward (aten/src/ATen/native/cpu/
// group_norm_kernel.cpp, layer_norm_kernel.cpp) compute the same three terms from the same saved stats.

export interface NormBackwardResult {
  dx: Float32Array;
  /** Present when the forward had a weight (affine). */
  dweight?: Float32Array;
  /** Present when the forward had a bias (affine). */
  dbias?: Float32Array;
}

export interface GroupNormBackwardParams {
  groups: number;
  /** The forward applied SiLU after the affine transform; dy is the gradient at the SiLU output. */
  silu?: boolean;
}

function sizeCheck(op: string, name: string, got: number, want: number, shape?: readonly number[]): void {
  if (got !== want) throw new Error(`${op}: expected ${name} of ${want} elements${shape ? ` [${shape.join(', ')}]` : ''}, found ${got}`);
}

/**
 * Shared core: segments are `segs` runs of L values; element i of a segment uses affine channel
 * chan(i). The per-segment sums and per-channel accumulators are float64.
 */
function normBackward(
  x: Float32Array, dy: Float32Array, mean: Float32Array, rstd: Float32Array,
  weight: Float32Array | undefined, bias: Float32Array | undefined, channels: number,
  segs: number, L: number, chan: (seg: number, i: number) => number, silu: boolean,
): NormBackwardResult {
  const dx = new Float32Array(x.length);
  const dw = new Float64Array(channels), db = new Float64Array(channels);
  const dz = new Float64Array(L), xhat = new Float64Array(L);
  for (let s = 0; s < segs; s++) {
    const base = s * L, mu = mean[s]!, rs = rstd[s]!;
    let sumDxhat = 0, sumDxhatXhat = 0;
    for (let i = 0; i < L; i++) {
      const c = chan(s, i);
      const xh = (x[base + i]! - mu) * rs;
      const wc = weight ? weight[c]! : 1;
      let g = dy[base + i]!;
      if (silu) {
        const z = xh * wc + (bias ? bias[c]! : 0);
        const sg = 1 / (1 + Math.exp(-z));
        g *= sg * (1 + z * (1 - sg));
      }
      xhat[i] = xh;
      dz[i] = g;
      db[c]! += g;
      dw[c]! += g * xh;
      sumDxhat += g * wc;
      sumDxhatXhat += g * wc * xh;
    }
    const m1 = sumDxhat / L, m2 = sumDxhatXhat / L;
    for (let i = 0; i < L; i++) {
      const wc = weight ? weight[chan(s, i)]! : 1;
      dx[base + i] = rs * (dz[i]! * wc - m1 - xhat[i]! * m2);
    }
  }
  return {
    dx,
    dweight: weight ? Float32Array.from(dw) : undefined,
    dbias: bias ? Float32Array.from(db) : undefined,
  };
}

/**
 * Group norm backward. x, dy: [N, C, ...spatial] (shape); mean, rstd: [N, G] from groupNormForward;
 * weight, bias: [C] as in the forward (undefined: non-affine, and no dweight/dbias).
 */
export function groupNormBackward(
  x: Float32Array, shape: readonly number[], dy: Float32Array, mean: Float32Array, rstd: Float32Array,
  weight: Float32Array | undefined, bias: Float32Array | undefined, p: GroupNormBackwardParams,
): NormBackwardResult {
  const op = 'groupNormBackward';
  const N = shape[0], C = shape[1];
  if (N === undefined || C === undefined || !(p.groups > 0) || C % p.groups !== 0) {
    throw new Error(`${op}: expected x [N, C, ...] with C divisible by groups=${p.groups}, found [${shape.join(', ')}]`);
  }
  const S = shape.slice(2).reduce((a, d) => a * d, 1), G = p.groups, Cg = C / G;
  sizeCheck(op, 'x', x.length, N * C * S, shape);
  sizeCheck(op, 'dy', dy.length, x.length, shape);
  sizeCheck(op, 'mean', mean.length, N * G, [N, G]);
  sizeCheck(op, 'rstd', rstd.length, N * G, [N, G]);
  if (weight) sizeCheck(op, 'weight', weight.length, C, [C]);
  if (bias) sizeCheck(op, 'bias', bias.length, C, [C]);
  return normBackward(x, dy, mean, rstd, weight, bias, C, N * G, Cg * S,
    (seg, i) => (seg % G) * Cg + Math.floor(i / S), p.silu ?? false);
}

/**
 * Layer norm backward over the last dim D. x, dy: [..., D] (shape); mean, rstd: [rows] from
 * layerNormForward; weight, bias: [D] or undefined.
 */
export function layerNormBackward(
  x: Float32Array, shape: readonly number[], dy: Float32Array, mean: Float32Array, rstd: Float32Array,
  weight: Float32Array | undefined, bias: Float32Array | undefined,
): NormBackwardResult {
  const op = 'layerNormBackward';
  const D = shape[shape.length - 1];
  if (D === undefined || D === 0) throw new Error(`${op}: expected x [..., D] with D > 0, found [${shape.join(', ')}]`);
  const rows = shape.reduce((a, d) => a * d, 1) / D;
  sizeCheck(op, 'x', x.length, rows * D, shape);
  sizeCheck(op, 'dy', dy.length, x.length, shape);
  sizeCheck(op, 'mean', mean.length, rows, [rows]);
  sizeCheck(op, 'rstd', rstd.length, rows, [rows]);
  if (weight) sizeCheck(op, 'weight', weight.length, D, [D]);
  if (bias) sizeCheck(op, 'bias', bias.length, D, [D]);
  return normBackward(x, dy, mean, rstd, weight, bias, D, rows, D, (_, i) => i, false);
}
