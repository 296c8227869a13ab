// Backward of conv2d (NCHW, zero padding [top, bottom, left, right], stride, groups, dilation 1): the
// gradients wrt the input, the weight and the bias, float64 accumulation, rounded once to f32.
//
// Forward (CpuBackend.conv2d, torch.nn.functional.conv2d):
//   y[n, o, oy, ox] = b[o] + sum_{c, ky, kx} w[o, c, ky, kx] * x[n, g*Cg + c, oy*sh - pt + ky, ox*sw - pl + kx]
// with x [N, C, H, W], w [O, Cg = C/G, KH, KW], y [N, O, Ho, Wo], g = o / Og (Og = O/G), out-of-image taps 0.
// Backward, with dy = dL/dy [N, O, Ho, Wo]:
//   dx[n, g*Cg + c, iy, ix] = sum over (o in group g, ky, kx, oy, ox) with oy*sh - pt + ky = iy and
//                             ox*sw - pl + kx = ix of w[o, c, ky, kx] * dy[n, o, oy, ox]
//     (a transposed convolution; input rows/columns that no output reads, e.g. the last row when
//     (H + pt + pb - KH) % sh != 0, get 0);
//   dw[o, c, ky, kx] = sum_{n, oy, ox} dy[n, o, oy, ox] * x[n, g*Cg + c, oy*sh - pt + ky, ox*sw - pl + kx];
//   db[o] = sum_{n, oy, ox} dy[n, o, oy, ox].
// As GEMMs per group g and sample n, with X_col [Kc = Cg*KH*KW, P = Ho*Wo] the im2col matrix of the
// forward: dX_col = W_g^T [Kc, Og] @ dY_g [Og, P] scattered back onto the image (col2im, f64 sums), and
// dW_g [Og, Kc] += dY_g [Og, P] @ X_col^T [P, Kc]. Both run on gemm.ts (f32 operands, f64 sums), over
// bands of output rows so that the column buffers stay under COLS_CAP elements.

import { conv2dOutputSize } from '../core_ops/conv2d.js';
import { gemm } from './gemm.js';

export interface Conv2dBackwardParams {
  stride: readonly [number, number];
  /** [top, bottom, left, right] zero padding, as in the forward. */
  padding: readonly [number, number, number, number];
  groups: number;
}

const COLS_CAP = 1 << 23;

interface Geometry {
  N: number; C: number; H: number; W: number; O: number; Cg: number; KH: number; KW: number;
  Ho: number; Wo: number; G: number; Og: number; Kc: number; P: number;
  sh: number; sw: number; pt: number; pl: number;
}

/** Output size of the forward; throws when the kernel does not fit the padded input. */

function geometry(op: string, xShape: readonly number[], wShape: readonly number[], dyShape: readonly number[], p: Conv2dBackwardParams): Geometry {
  const [N, C, H, W] = xShape as [number, number, number, number];
  const [O, Cg, KH, KW] = wShape as [number, number, number, number];
  const G = p.groups;
  if (xShape.length !== 4 || wShape.length !== 4 || !(G > 0) || C !== Cg * G || O % G !== 0) {
    throw new Error(`${op}: expected x [N, C, H, W] and w [O, C/groups, kh, kw] with groups=${G}, found x [${xShape.join(', ')}], w [${wShape.join(', ')}]`);
  }
  const [Ho, Wo] = conv2dOutputSize(H, W, KH, KW, p);
  const want = [N, O, Ho, Wo];
  if (dyShape.length !== 4 || dyShape.some((d, i) => d !== want[i])) {
    throw new Error(`${op}: expected dy [${want.join(', ')}] (the forward's output shape), found [${dyShape.join(', ')}]`);
  }
  return {
    N, C, H, W, O, Cg, KH, KW, Ho, Wo, G, Og: O / G, Kc: Cg * KH * KW, P: Ho * Wo,
    sh: p.stride[0], sw: p.stride[1], pt: p.padding[0], pl: p.padding[2],
  };
}

function sizeCheck(op: string, name: string, a: Float32Array, shape: readonly number[]): void {
  const n = shape.reduce((s, d) => s * d, 1);
  if (a.length !== n) throw new Error(`${op}: ${name} has ${a.length} elements, shape [${shape.join(', ')}] needs ${n}`);
}

/** Output rows per band so that Kc * rows * Wo stays under COLS_CAP. */
function bandRows(g: Geometry): number {
  return Math.max(1, Math.min(g.Ho, Math.floor(COLS_CAP / (g.Kc * g.Wo))));
}

/**
 * dx [N, C, H, W] from dy [N, O, Ho, Wo] and w [O, Cg, KH, KW]; xShape is the forward input's shape
 * (it cannot be derived from dy when the forward dropped rows or columns).
 */
export function conv2dBackwardInput(
  dy: Float32Array, dyShape: readonly number[], w: Float32Array, wShape: readonly number[], xShape: readonly number[],
  p: Conv2dBackwardParams,
): Float32Array {
  const op = 'conv2dBackwardInput';
  const g = geometry(op, xShape, wShape, dyShape, p);
  sizeCheck(op, 'dy', dy, dyShape);
  sizeCheck(op, 'w', w, wShape);
  const { N, C, H, W, O, Cg, KH, KW, Wo, Ho, G, Og, Kc, P, sh, sw, pt, pl } = g;
  const dx = new Float32Array(N * C * H * W);
  const acc = new Float64Array(C * H * W);
  const R = bandRows(g);
  for (let n = 0; n < N; n++) {
    acc.fill(0);
    for (let oy0 = 0; oy0 < Ho; oy0 += R) {
      const nr = Math.min(R, Ho - oy0), band = nr * Wo;
      for (let gi = 0; gi < G; gi++) {
        // cols[kk, j] = sum_o w[gi*Og + o, kk] * dy[n, gi*Og + o, oy0*Wo + j]
        const cols = gemm(w, gi * Og * Kc, [1, Kc], dy, (n * O + gi * Og) * P + oy0 * Wo, [P, 1], Kc, band, Og);
        for (let c = 0; c < Cg; c++) {
          const xc = (gi * Cg + c) * H * W;
          for (let ky = 0; ky < KH; ky++) {
            for (let kx = 0; kx < KW; kx++) {
              const row = ((c * KH + ky) * KW + kx) * band;
              for (let r = 0; r < nr; r++) {
                const iy = (oy0 + r) * sh - pt + ky;
                if (iy < 0 || iy >= H) continue;
                for (let ox = 0; ox < Wo; ox++) {
                  const ix = ox * sw - pl + kx;
                  if (ix >= 0 && ix < W) acc[xc + iy * W + ix]! += cols[row + r * Wo + ox]!;
                }
              }
            }
          }
        }
      }
    }
    dx.set(acc, n * C * H * W);
  }
  return dx;
}

/** dw [O, Cg, KH, KW] from x [N, C, H, W] and dy [N, O, Ho, Wo]; wShape is the weight's shape. */
export function conv2dBackwardWeight(
  x: Float32Array, xShape: readonly number[], dy: Float32Array, dyShape: readonly number[], wShape: readonly number[],
  p: Conv2dBackwardParams,
): Float32Array {
  const op = 'conv2dBackwardWeight';
  const g = geometry(op, xShape, wShape, dyShape, p);
  sizeCheck(op, 'x', x, xShape);
  sizeCheck(op, 'dy', dy, dyShape);
  const { N, C, H, W, O, Cg, KH, KW, Wo, Ho, G, Og, Kc, P, sh, sw, pt, pl } = g;
  const acc = new Float64Array(O * Kc);
  const R = bandRows(g);
  // Shared memory lets gemm's second thread read the columns without a copy (as CpuBackend.conv2d does).
  const colsLen = Kc * R * Wo;
  const cols = typeof SharedArrayBuffer === 'function' ? new Float32Array(new SharedArrayBuffer(colsLen * 4)) : new Float32Array(colsLen);
  for (let n = 0; n < N; n++) {
    for (let oy0 = 0; oy0 < Ho; oy0 += R) {
      const nr = Math.min(R, Ho - oy0), band = nr * Wo;
      for (let gi = 0; gi < G; gi++) {
        // im2col of this band: cols[kk, j], kk = (c, ky, kx), j = r * Wo + ox
        for (let c = 0; c < Cg; c++) {
          const xc = (n * C + gi * Cg + c) * H * W;
          for (let ky = 0; ky < KH; ky++) {
            for (let kx = 0; kx < KW; kx++) {
              const row = ((c * KH + ky) * KW + kx) * band;
              for (let r = 0; r < nr; r++) {
                const iy = (oy0 + r) * sh - pt + ky;
                for (let ox = 0; ox < Wo; ox++) {
                  const ix = ox * sw - pl + kx;
                  cols[row + r * Wo + ox] = iy >= 0 && iy < H && ix >= 0 && ix < W ? x[xc + iy * W + ix]! : 0;
                }
              }
            }
          }
        }
        // dW_g[o, kk] += sum_j dy[n, gi*Og + o, oy0*Wo + j] * cols[kk, j]
        const part = gemm(dy, (n * O + gi * Og) * P + oy0 * Wo, [P, 1], cols, 0, [1, band], Og, Kc, band);
        const base = gi * Og * Kc;
        for (let i = 0; i < Og * Kc; i++) acc[base + i]! += part[i]!;
      }
    }
  }
  return Float32Array.from(acc);
}

/** db [O] = sum of dy [N, O, Ho, Wo] over N, Ho, Wo. */
export function conv2dBackwardBias(dy: Float32Array, dyShape: readonly number[]): Float32Array {
  const [N, O] = dyShape as [number, number];
  if (dyShape.length !== 4) throw new Error(`conv2dBackwardBias: expected dy [N, O, Ho, Wo], found [${dyShape.join(', ')}]`);
  sizeCheck('conv2dBackwardBias', 'dy', dy, dyShape);
  const P = dyShape[2]! * dyShape[3]!;
  const db = new Float32Array(O);
  for (let o = 0; o < O; o++) {
    let s = 0;
    for (let n = 0; n < N; n++) for (let i = (n * O + o) * P; i < (n * O + o + 1) * P; i++) s += dy[i]!;
    db[o] = s;
  }
  return db;
}
