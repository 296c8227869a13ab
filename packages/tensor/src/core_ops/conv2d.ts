// 2-D convolution (dilation 1) with a fused epilogue: out = act(conv(x, w) + bias) + residual.
//
// Inputs [x, w, bias?, residual?]: x [N, C, H, W], w [O, C/groups, kh, kw], bias [O], residual
// [N, O, Ho, Wo]. Ho = floor((H + top + bottom - kh) / sh) + 1 (likewise Wo). Asymmetric zero padding
// [top, bottom, left, right] covers the VAE's F.pad(0, 1, 0, 1) + stride-2 conv. The weight may be stored
// as f16/bf16 (weight_dtype.ts): kernels widen it on load, the reference decodes it.
// Backward: gz = g * act'(z) (z = conv + bias recomputed from the saved x and w when there is an
// activation), then the gradient ops conv2d_backward_input / _weight / _bias (grad_ops/conv2d_backward.ts);
// the residual's gradient is g.

import type { Activation } from '../backend.js';
import { gemm } from '../cpu/gemm.js';
import { conv2dBackwardBiasOp, conv2dBackwardInputOp, conv2dBackwardWeightOp } from '../grad_ops/conv2d_backward.js';
import { unaryBackwardOp } from '../grad_ops/elementwise_backward.js';
import { defineOp, expectF32, expectRank, expectVector, f32, runOp1, type OpDefinition } from '../op_definition.js';
import { formatShape, shapesEqual } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { deviceF32, expectWeightDtype, hostF32 } from '../weight_dtype.js';
import { applyUnary } from './elementwise.js';

export interface Conv2dParams {
  stride: readonly [number, number];
  /** [top, bottom, left, right]. */
  padding: readonly [number, number, number, number];
  groups: number;
  activation?: Activation;
}

/** Output spatial size of a convolution; throws when the kernel exceeds the padded input. */
export function conv2dOutputSize(H: number, W: number, kh: number, kw: number, p: Pick<Conv2dParams, 'stride' | 'padding'>): [number, number] {
  const [sh, sw] = p.stride;
  const [pt, pb, pl, pr] = p.padding;
  const Ho = Math.floor((H + pt + pb - kh) / sh) + 1, Wo = Math.floor((W + pl + pr - kw) / sw) + 1;
  if (Ho <= 0 || Wo <= 0) throw new Error(`conv2d: kernel ${kh}x${kw} larger than padded input ${H}x${W} (padding [${p.padding.join(', ')}])`);
  return [Ho, Wo];
}

export const conv2dOp: OpDefinition<Conv2dParams> = defineOp<Conv2dParams>({
  name: 'conv2d',
  outputs([x, w, bias, residual], p) {
    expectF32('conv2d', [x, undefined, bias, residual], ['input', 'weight', 'bias', 'residual']);
    expectWeightDtype('conv2d', w, 'weight');
    const [N, C, H, W] = expectRank('conv2d', x, 4, 'input [N, C, H, W]').shape as [number, number, number, number];
    const [O, Cg, kh, kw] = expectRank('conv2d', w, 4, 'weight [O, C/groups, kh, kw]').shape as [number, number, number, number];
    const G = p.groups;
    if (!Number.isInteger(G) || G < 1 || C !== Cg * G || O % G !== 0) {
      throw new Error(`conv2d: input ${formatShape(x!.shape)} does not match weight ${formatShape(w!.shape)} with groups=${G}`);
    }
    if (!p.stride.every((s) => Number.isInteger(s) && s >= 1) || !p.padding.every((q) => Number.isInteger(q) && q >= 0)) {
      throw new Error(`conv2d: expected positive integer strides and non-negative paddings, found stride [${p.stride.join(', ')}], padding [${p.padding.join(', ')}]`);
    }
    expectVector('conv2d', 'bias', bias, O);
    const out = [N, O, ...conv2dOutputSize(H, W, kh, kw, p)];
    if (residual && !shapesEqual(residual.shape, out)) throw new Error(`conv2d: expected residual ${formatShape(out)}, found ${formatShape(residual.shape)}`);
    return f32(out);
  },
  cpu([x, w, bias, residual], p) {
    const [N, C, H, W] = x!.shape as [number, number, number, number];
    const [O, Cg, KH, KW] = w!.shape as [number, number, number, number];
    const [sh, sw] = p.stride;
    const [pt, , pl] = p.padding;
    const G = p.groups, Og = O / G;
    const [Ho, Wo] = conv2dOutputSize(H, W, KH, KW, p);
    const X = x!.data as Float32Array, Wt = hostF32(w!);
    const bv = bias?.data as Float32Array | undefined, res = residual?.data as Float32Array | undefined;
    const act = p.activation ?? 'none';
    const out = new Float32Array(N * O * Ho * Wo);
    const P = Ho * Wo, Kc = Cg * KH * KW;
    // im2col over a chunk per group: cols [Kc, S * R * Wo] for S samples and R output rows each
    // (column = (s * R + r) * Wo + ox), then out[Og, cols] = W[Og, Kc] @ cols with f64 accumulation.
    // Batching samples widens the product for the small latent maps (8x8 at 64 px) that dominate the
    // UNet; a single large map (the control modules at pixel resolution) is split into bands of rows.
    // Either way cols stays under COLS_CAP elements. cols lives in a SharedArrayBuffer so the gemm's
    // second thread can read it without a copy.
    const COLS_CAP = 1 << 25;
    const S = Math.max(1, Math.min(N, Math.floor(COLS_CAP / (Kc * P))));
    const R = S > 1 ? Ho : Math.max(1, Math.min(Ho, Math.floor(COLS_CAP / (Kc * Wo))));
    const colsLen = Kc * S * R * Wo;
    const cols = typeof SharedArrayBuffer === 'function' ? new Float32Array(new SharedArrayBuffer(colsLen * 4)) : new Float32Array(colsLen);
    for (let n0 = 0; n0 < N; n0 += S) {
      const ns = Math.min(S, N - n0);
      for (let oy0 = 0; oy0 < Ho; oy0 += R) {
        const nr = Math.min(R, Ho - oy0), band = nr * Wo, SP = ns * band;
        for (let g = 0; g < G; g++) {
          for (let s = 0; s < ns; s++) {
            const n = n0 + s;
            for (let c = 0; c < Cg; c++) {
              const xc = (n * C + g * Cg + c) * H * W;
              for (let ky = 0; ky < KH; ky++) {
                for (let kx = 0; kx < KW; kx++) {
                  const row = ((c * KH + ky) * KW + kx) * SP + s * band;
                  for (let r = 0; r < nr; r++) {
                    const iy = (oy0 + r) * sh - pt + ky;
                    const rowY = row + r * Wo;
                    if (iy < 0 || iy >= H) { cols.fill(0, rowY, rowY + Wo); continue; }
                    const xr = xc + iy * W;
                    for (let ox = 0; ox < Wo; ox++) {
                      const ix = ox * sw - pl + kx;
                      cols[rowY + ox] = ix >= 0 && ix < W ? X[xr + ix]! : 0;
                    }
                  }
                }
              }
            }
          }
          const acc = gemm(Wt, g * Og * Kc, [Kc, 1], cols, 0, [SP, 1], Og, SP, Kc);
          for (let o = 0; o < Og; o++) {
            const oc = g * Og + o;
            const b = bv ? bv[oc]! : 0;
            for (let s = 0; s < ns; s++) {
              const base = ((n0 + s) * O + oc) * P + oy0 * Wo, a0 = o * SP + s * band;
              if (act === 'none' && !res) {
                for (let q = 0; q < band; q++) out[base + q] = acc[a0 + q]! + b;
              } else {
                for (let q = 0; q < band; q++) {
                  const y = applyUnary(act, acc[a0 + q]! + b);
                  out[base + q] = res ? y + res[base + q]! : y;
                }
              }
            }
          }
        }
      }
    }
    return [out];
  },
  saves(needs, p) {
    const act = (p.activation ?? 'none') !== 'none';
    return { inputs: [...(needs[1] || act ? [0] : []), ...(needs[0] || act ? [1] : []), ...(act ? [2] : [])], outputs: [] };
  },
  backward({ inputs: [x, w, bias], params: p, needsGrad, inputShapes }, [g]) {
    const act = p.activation ?? 'none';
    const geometry = { stride: p.stride, padding: p.padding, groups: p.groups };
    let gz = g!;
    if (act !== 'none') {
      const z = runOp1(conv2dOp, [x, w, bias], geometry);
      gz = runOp1(unaryBackwardOp, [z, g], { op: act });
    }
    let dx: Tensor | undefined;
    if (needsGrad[0]) {
      // A 16-bit stored weight (f16 weight storage: a frozen layer the gradient passes through) is widened
      // exactly; the backward kernels read f32.
      const wf = deviceF32(w!);
      dx = runOp1(conv2dBackwardInputOp, [gz, wf], { ...geometry, inputShape: inputShapes[0]! });
      if (wf !== w) wf.dispose();
    }
    return [
      dx,
      needsGrad[1] ? runOp1(conv2dBackwardWeightOp, [x, gz], { ...geometry, weightShape: inputShapes[1]! }) : undefined,
      needsGrad[2] ? runOp1(conv2dBackwardBiasOp, [gz], {}) : undefined,
      needsGrad[3] ? g : undefined,
    ];
  },
});
