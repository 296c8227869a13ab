// Float64 CPU reference of ControlNeXt's cross normalisation + injection, forward and the fused backward
// (gradients of the sample, the control and the scale in one function). Defines what the WGSL family
// packages/kernels/src/cross_norm_backward.ts computes.
//
// Forward (ControlNeXt models/unet.py after the injection block; spec sections 2.7 and 9; the same math
// as CpuBackend.crossNorm): x [N, C, h, w], control [Nc, C, h', w'] with Nc = N or 1, scale s: a number
// or per-sample [N]. Per sample n (nc = n, or 0 when Nc = 1), with L = C*h*w:
//   c        = adaptive_avg_pool2d(control[nc], (h, w))                         [C, h, w]
//   z        = c ('pool_then_norm': SD1.5, SD1.5-Training) or control[nc] ('norm_then_pool': SDXL, SVD)
//   mu_x, sigma_x = mean, UNBIASED std (torch.std) of x[n] over L values; mu_c, sigma_c of z over Lz values
//   k        = sigma_x / (sigma_c + eps)              (eps on sigma, not inside a square root)
//   c_hat    = (c - mu_c) * k + mu_x
//   y[n]     = x[n] + s[n] * c_hat                    (or s[n] * c_hat with residual: false)
// Backward, g = dy[n] (the statistics of BOTH x and the control depend on their inputs, so dy/dx is not
// the identity; golden grad_cross_norm notes):
//   S = s * sum_i g_i,  A = s * sum_i g_i (c_i - mu_c)          (sums of dc_hat and dc_hat * (c - mu_c))
//   dscale[n] = sum_i g_i c_hat_i                                (per sample; summed to one value when
//                                                                 the scale is a number)
//   dx_i = [g_i] + S / L + A / (sigma_c + eps) * (x_i - mu_x) / ((L - 1) sigma_x)
//          (d mu / d v_i = 1/L; d sigma / d v_i = (v_i - mu) / ((L - 1) sigma), unbiased)
//   dc_i (direct, at the pooled resolution) = s * k * g_i
//   dz_i = -k S / Lz - A sigma_x / (sigma_c + eps)^2 * (z_i - mu_c) / ((Lz - 1) sigma_c)
//   dcontrol[nc] += pool^T(dc + dz)  ('pool_then_norm')  or  pool^T(dc) + dz  ('norm_then_pool')
//   pool^T spreads each pooled cell's gradient evenly over its bin (bins overlap when sizes do not
//   divide: an input in two bins gets both shares); with Nc = 1 the samples' gradients add up.
// A constant x or control (sigma = 0) gives non-finite gradients, as torch.std's backward does.
// Float64 throughout (pooling included); the f32 entry points round once on store.

import { poolBins, type HostArray } from '@cnx/tensor';
import type { CrossNormOptions } from './cross_norm.js';

export interface CrossNormReferenceParams {
  /** Added to sigma of the control (not inside a square root). */
  eps: number;
  order: CrossNormOptions['order'];
  /** A number, or one value per sample ([N] data). */
  scale: number | ArrayLike<number>;
  /** y = x + s * c_hat (default) or s * c_hat. */
  residual?: boolean;
}

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

interface CrossNormDims { N: number; C: number; h: number; w: number; Nc: number; hc: number; wc: number }

function dims(x: HostArray, control: HostArray, p: CrossNormReferenceParams): CrossNormDims {
  const [N, C, h, w] = x.shape as [number, number, number, number];
  const [Nc, Cc, hc, wc] = control.shape as [number, number, number, number];
  if (x.shape.length !== 4 || control.shape.length !== 4 || Cc !== C || (Nc !== N && Nc !== 1) || hc === 0 || wc === 0 || h === 0 || w === 0) {
    throw new Error(`crossNorm: expected x [N, C, h, w] and control [N or 1, C, h', w'], found x ${fmt(x.shape)}, control ${fmt(control.shape)}`);
  }
  if (x.data.length !== N * C * h * w || control.data.length !== Nc * C * hc * wc) {
    throw new Error(`crossNorm: data lengths ${x.data.length} and ${control.data.length} do not match x ${fmt(x.shape)} and control ${fmt(control.shape)}`);
  }
  if (typeof p.scale !== 'number' && p.scale.length !== N) {
    throw new Error(`crossNorm: expected a number or a per-sample scale [${N}], found ${p.scale.length} values`);
  }
  if (C * h * w < 2) throw new Error(`crossNorm: the unbiased std needs at least 2 values per sample, found x ${fmt(x.shape)}`);
  return { N, C, h, w, Nc, hc, wc };
}

/** adaptive_avg_pool2d of control[nc] to [C, h, w], float64. */
function pool(ctl: ArrayLike<number>, d: CrossNormDims, nc: number): Float64Array {
  const { C, h, w, hc, wc } = d;
  const rows = poolBins(hc, h), cols = poolBins(wc, w);
  const out = new Float64Array(C * h * w);
  for (let ch = 0; ch < C; ch++) for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) {
    const [y0, y1] = rows[i]!, [x0, x1] = cols[j]!;
    let s = 0;
    for (let y = y0; y < y1; y++) for (let xx = x0; xx < x1; xx++) s += ctl[((nc * C + ch) * hc + y) * wc + xx]!;
    out[(ch * h + i) * w + j] = s / ((y1 - y0) * (x1 - x0));
  }
  return out;
}

/** Adds pool^T(g) (g [C, h, w]) into dctl[nc] ([C, h', w']). */
function poolTranspose(g: ArrayLike<number>, d: CrossNormDims, nc: number, dctl: Float64Array): void {
  const { C, h, w, hc, wc } = d;
  const rows = poolBins(hc, h), cols = poolBins(wc, w);
  for (let ch = 0; ch < C; ch++) for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) {
    const [y0, y1] = rows[i]!, [x0, x1] = cols[j]!;
    const share = g[(ch * h + i) * w + j]! / ((y1 - y0) * (x1 - x0));
    for (let y = y0; y < y1; y++) {
      for (let xx = x0; xx < x1; xx++) {
        const o = ((nc * C + ch) * hc + y) * wc + xx;
        dctl[o] = dctl[o]! + share;
      }
    }
  }
}

/** Mean and unbiased std of v[start, start + len). */
function stats(v: ArrayLike<number>, start: number, len: number): [number, number] {
  let mu = 0;
  for (let i = start; i < start + len; i++) mu += v[i]!;
  mu /= len;
  let ss = 0;
  for (let i = start; i < start + len; i++) ss += (v[i]! - mu) ** 2;
  return [mu, Math.sqrt(ss / (len - 1))];
}

const scaleOf = (p: CrossNormReferenceParams, n: number) => (typeof p.scale === 'number' ? p.scale : p.scale[n]!);

/** Everything one sample's forward and backward share. */
interface SampleStats { nc: number; c: Float64Array; z: ArrayLike<number>; zStart: number; Lz: number; mx: number; sx: number; mc: number; sc: number; k: number }

function sampleStats(x: HostArray, control: HostArray, d: CrossNormDims, p: CrossNormReferenceParams, n: number): SampleStats {
  const L = d.C * d.h * d.w;
  const nc = d.Nc === 1 ? 0 : n;
  const c = pool(control.data, d, nc);
  const poolFirst = p.order === 'pool_then_norm';
  const z = poolFirst ? c : control.data;
  const Lz = poolFirst ? L : d.C * d.hc * d.wc;
  const zStart = poolFirst ? 0 : nc * Lz;
  const [mx, sx] = stats(x.data, n * L, L);
  const [mc, sc] = stats(z, zStart, Lz);
  return { nc, c, z, zStart, Lz, mx, sx, mc, sc, k: sx / (sc + p.eps) };
}

/** Forward in float64: y [N, C, h, w]. */
export function crossNormForwardF64(x: HostArray, control: HostArray, p: CrossNormReferenceParams): HostArray<Float64Array> {
  const d = dims(x, control, p);
  const L = d.C * d.h * d.w;
  const y = new Float64Array(d.N * L);
  for (let n = 0; n < d.N; n++) {
    const st = sampleStats(x, control, d, p, n);
    const s = scaleOf(p, n);
    for (let i = 0; i < L; i++) {
      const cHat = (st.c[i]! - st.mc) * st.k + st.mx;
      y[n * L + i] = (p.residual === false ? 0 : x.data[n * L + i]!) + s * cHat;
    }
  }
  return { shape: [...x.shape], data: y };
}

export interface CrossNormGrads<T extends ArrayLike<number>> {
  /** [N, C, h, w] */
  dx: HostArray<T>;
  /** [Nc, C, h', w'] (summed over the batch when Nc = 1) */
  dcontrol: HostArray<T>;
  /** [N] per sample when the scale is per-sample data, [1] (the sum over samples) when it is a number. */
  dscale: HostArray<T>;
}

/** Fused backward in float64 given the upstream gradient dy [N, C, h, w]. */
export function crossNormBackwardF64(x: HostArray, control: HostArray, dy: HostArray, p: CrossNormReferenceParams): CrossNormGrads<Float64Array> {
  const d = dims(x, control, p);
  const L = d.C * d.h * d.w;
  if (dy.data.length !== d.N * L || dy.shape.length !== 4 || dy.shape.some((v, i) => v !== x.shape[i])) {
    throw new Error(`crossNorm backward: expected dy ${fmt(x.shape)}, found ${fmt(dy.shape)} with ${dy.data.length} values`);
  }
  const G = dy.data, X = x.data;
  const dx = new Float64Array(d.N * L);
  const dctl = new Float64Array(control.data.length);
  const dscale = new Float64Array(d.N);
  for (let n = 0; n < d.N; n++) {
    const st = sampleStats(x, control, d, p, n);
    const s = scaleOf(p, n);
    const den = st.sc + p.eps;
    let sumG = 0, sumGc = 0, ds = 0;
    for (let i = 0; i < L; i++) {
      const g = G[n * L + i]!, cc = st.c[i]! - st.mc;
      sumG += g;
      sumGc += g * cc;
      ds += g * (cc * st.k + st.mx);
    }
    dscale[n] = ds;
    const S = s * sumG, A = s * sumGc;
    // through x itself, mu_x and sigma_x
    const bx = A / den / ((L - 1) * st.sx);
    for (let i = 0; i < L; i++) dx[n * L + i] = (p.residual === false ? 0 : G[n * L + i]!) + S / L + bx * (X[n * L + i]! - st.mx);
    // through the pooled control directly, and through mu_c and sigma_c
    const az = -st.k * S / st.Lz, bz = -A * st.sx / (den * den) / ((st.Lz - 1) * st.sc);
    const dc = new Float64Array(L);
    for (let i = 0; i < L; i++) dc[i] = s * st.k * G[n * L + i]!;
    if (p.order === 'pool_then_norm') {
      for (let i = 0; i < L; i++) dc[i] = dc[i]! + az + bz * (st.c[i]! - st.mc);
      poolTranspose(dc, d, st.nc, dctl);
    } else {
      poolTranspose(dc, d, st.nc, dctl);
      for (let i = 0; i < st.Lz; i++) dctl[st.zStart + i] = dctl[st.zStart + i]! + az + bz * (st.z[st.zStart + i]! - st.mc);
    }
  }
  return {
    dx: { shape: [...x.shape], data: dx },
    dcontrol: { shape: [...control.shape], data: dctl },
    dscale: typeof p.scale === 'number' ? { shape: [1], data: Float64Array.of(dscale.reduce((a, b) => a + b, 0)) } : { shape: [d.N], data: dscale },
  };
}

/** Forward, f32 in and out (float64 inside). */
export function crossNormForward(x: HostArray<Float32Array>, control: HostArray<Float32Array>, p: CrossNormReferenceParams): HostArray<Float32Array> {
  const y = crossNormForwardF64(x, control, p);
  return { shape: y.shape, data: Float32Array.from(y.data) };
}

/** Fused backward, f32 in and out (float64 inside); see crossNormBackwardF64. */
export function crossNormBackward(x: HostArray<Float32Array>, control: HostArray<Float32Array>, dy: HostArray<Float32Array>, p: CrossNormReferenceParams): CrossNormGrads<Float32Array> {
  const r = crossNormBackwardF64(x, control, dy, p);
  const f = (t: HostArray<Float64Array>) => ({ shape: t.shape, data: Float32Array.from(t.data) });
  return { dx: f(r.dx), dcontrol: f(r.dcontrol), dscale: f(r.dscale) };
}
