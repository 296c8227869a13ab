// ControlNeXt cross normalisation and injection, fused into two dispatches.
//
// x: [N, C, h, w] denoiser feature; control: [Nc, C, h', w'] with Nc = N or 1 (one control map shared by
// the whole batch: the batch-1 control path under classifier-free guidance); scale: a number or s [N].
// Per sample n (nc = n, or 0 when Nc = 1):
//   c      = adaptive_avg_pool2d(control[nc], (h, w))                      [C, h, w]
//   mu_x, sigma_x = mean and UNBIASED std of x[n] over C*h*w
//   mu_c, sigma_c = the same of c ('pool_then_norm': SD1.5, SD1.5-Training) or of control[nc] at its own
//                   resolution ('norm_then_pool': SDXL, SVD)
//   y[n]   = x[n] + s[n] * ((c - mu_c) * sigma_x / (sigma_c + eps) + mu_x)   (or without x[n]: residual false)
// eps is added to sigma, not inside a square root (ControlNeXt models/unet.py; spec sections 2.7 and 9).
// An extension op of @cnx/controlnext (crossNormOp below): the float64 reference defines it; the WGSL
// kernel is checked against it.
//
// WebGPU, dispatch 1, 'stats': one workgroup per (chunk p < P, statistics set). The sets are the N samples of x
// followed by the Nc samples of the control. Each workgroup reduces its chunk with the shifted two-pass
// scheme of norm.ts (pilot K = the set's first value, then sum of d = v - K, then sum of
// (d - chunk mean)^2) and writes one partial (count, mean of d, M2, K) to a scratch [N + Nc, P] of vec4.
// For 'pool_then_norm' the control workgroups pool their chunk once in pass 1 and store it to a scratch
// pooled map [Nc, C, h, w] (the size of x, not of the control), which pass 2 and dispatch 2 read back.
// Dispatch 2, 'apply': workgroups tile each sample's C*h*w outputs (4 per thread). Each first merges its
// sample's P partials of x and of the control with Chan's pairwise formula (a tree in workgroup memory;
// P <= 64 so this is a few loads per thread), then takes the pooled control (stored, or pooled on the
// fly for 'norm_then_pool'), rescales and adds, in one pass.
// Traffic: x read twice in the stats pass (cache-resident chunks) and once in apply, y written once;
// the full-resolution control is read once for 'pool_then_norm' (SD1.5's [2, 1280, 64, 64] map pooled to
// 8x8: 42 MB once instead of three times), three times for 'norm_then_pool' (statistics at its own
// resolution, then pooling in apply).
// The chunk moments and the Chan merge are the WGSL helpers of @cnx/kernels wgsl_moments.ts, shared with
// the group/layer norm kernels (norm.ts).
// Limits: f32 tensors (ops.crossNorm guarantees contiguous f32 inputs); C*h*w and C*h'*w' < 2^32.
// Backward: controlnext.cross_norm_backward (cross_norm_backward_op.ts), one fused op for the gradients of
// x, the control and a per-sample scale tensor, from the saved inputs.

import { gridFor, packUniforms, wgslMath, wgslMoments, type GpuContext } from '@cnx/kernels';
import { defineOp, expectF32, expectRank, f32, formatShape, poolBins, runOp, runOp1, type OpDefinition, type Tensor } from '@cnx/tensor';
import { crossNormBackwardOp } from './cross_norm_backward_op.js';
import { POOLED_CONTROL } from './cross_norm_pool_wgsl.js';

export interface CrossNormOptions {
  /** Added to sigma of the control (not inside a sqrt): ControlNeXt's code, spec section 2.7. */
  eps: number;
  /**
   * 'pool_then_norm': the control is pooled to the feature size first and its statistics are those
   * of the pooled map (SD1.5, SD1.5-Training). 'norm_then_pool': statistics at the control's own
   * resolution, then pooled (SDXL, SVD). Per-sample affine maps commute with pooling, so both
   * orders are one pool plus one affine map; they differ only in which statistics are used.
   */
  order: 'pool_then_norm' | 'norm_then_pool';
  /** Scale s of the added term: a number, or an f32 tensor [N] (one per sample, e.g. CFG). */
  scale: number | Tensor;
  /** true (default): return x + s*c_hat; false: return s*c_hat alone (for inspection). */
  residual?: boolean;
}

/** The op's params: CrossNormOptions with a tensor scale passed as the third input instead. */
export interface CrossNormParams {
  eps: number;
  order: CrossNormOptions['order'];
  /** The scale when no scale tensor is given. */
  scale: number;
  residual?: boolean;
}

/** Most partials per statistics set (the apply kernel merges them with one thread each). */
const MAX_PARTIALS = 64;
/** Fewest elements a stats workgroup is given before more chunks are used. */
const MIN_CHUNK = 4096;
const WG = 256;
/** Outputs per apply thread. */
const PER_THREAD = 4;

export interface CrossNormWgslParams {
  stage: 'stats' | 'apply';
  order: CrossNormOptions['order'];
  /** Scale from a per-sample tensor [N] (else the uniform `scale`). */
  scaleTensor: boolean;
  residual: boolean;
}

const UNIFORMS = /* wgsl */ `
struct U {
  n: u32, nc: u32, c: u32, h: u32, w: u32, hc: u32, wc: u32, parts: u32,
  lenX: u32, lenC: u32, chunkX: u32, chunkC: u32, tiles: u32, eps: f32, scale: f32, pad0: u32,
}`;

export function wgsl(p: CrossNormWgslParams): string {
  const poolFirst = p.order === 'pool_then_norm';
  if (p.stage === 'stats') {
    // Value e of statistics set si: x[si] for si < N, else the control sample (pooled or raw). With
    // poolFirst, pass 1 pools and stores (firstValue) and pass 2 reads the store back (value).
    const ctlFirst = poolFirst
      ? `let v = pooled(ci, e);
  Pooled[ci * u.lenX + e] = v;
  return v;`
      : 'return Ctl[ci * u.lenC + e];';
    const ctlAgain = poolFirst ? 'return Pooled[ci * u.lenX + e];' : 'return Ctl[ci * u.lenC + e];';
    return /* wgsl */ `${UNIFORMS}
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> Ctl: array<f32>;
@group(0) @binding(2) var<storage, read_write> Parts: array<vec4<f32>>;
${poolFirst ? '@group(0) @binding(3) var<storage, read_write> Pooled: array<f32>;' : ''}
@group(0) @binding(${poolFirst ? 4 : 3}) var<uniform> u: U;
${POOLED_CONTROL}
const WG = ${WG}u;
${wgslMath.WORKGROUP_SUM}

fn firstValue(si: u32, e: u32) -> f32 {
  if (si < u.n) { return X[si * u.lenX + e]; }
  let ci = si - u.n;
  ${ctlFirst}
}

fn value(si: u32, e: u32) -> f32 {
  if (si < u.n) { return X[si * u.lenX + e]; }
  let ci = si - u.n;
  ${ctlAgain}
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let part = wid.x;
  let si = wid.y;
  let isX = si < u.n;
  let len = select(u.lenC, u.lenX, isX);
  let chunk = select(u.chunkC, u.chunkX, isX);
  let start = min(part * chunk, len);
  let end = min(start + chunk, len);
  var pilot: f32;
  if (isX) { pilot = X[si * u.lenX]; } else { pilot = ${poolFirst ? 'pooled(si - u.n, 0u)' : 'Ctl[(si - u.n) * u.lenC]'}; }
  // each thread reads back in pass 2 exactly the elements it stored in pass 1${wgslMoments.chunkMomentsWgsl({ first: 'firstValue(si, e)', again: 'value(si, e)' })}
  if (tid == 0u) { Parts[si * u.parts + part] = vec4<f32>(count, dmean, m2, pilot); }
}
`;
  }
  let b = 3;
  const sBinding = p.scaleTensor ? b++ : -1;
  const yBinding = b++;
  const uBinding = b;
  const scale = p.scaleTensor ? 'S[n]' : 'u.scale';
  return /* wgsl */ `${UNIFORMS}
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> ${poolFirst ? 'Pooled' : 'Ctl'}: array<f32>;
@group(0) @binding(2) var<storage, read> Parts: array<vec4<f32>>;
${p.scaleTensor ? `@group(0) @binding(${sBinding}) var<storage, read> S: array<f32>;` : ''}
@group(0) @binding(${yBinding}) var<storage, read_write> Y: array<f32>;
@group(0) @binding(${uBinding}) var<uniform> u: U;
${poolFirst ? '' : POOLED_CONTROL}
const WG = ${WG}u;
const PER_THREAD = ${PER_THREAD}u;
// Partials (count, mean of d, M2) of x and of the control being merged.
var<workgroup> redX: array<vec3<f32>, ${MAX_PARTIALS}>;
var<workgroup> redC: array<vec3<f32>, ${MAX_PARTIALS}>;
${wgslMoments.CHAN_MERGE}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let flat = wid.x + wid.y * nwg.x;
  if (flat >= u.tiles * u.n) { return; }
  let n = flat / u.tiles;
  let tile = flat % u.tiles;
  let ncIdx = select(n, 0u, u.nc == 1u);
  let setC = u.n + ncIdx;
${wgslMoments.mergePartialsWgsl([
    { red: 'redX', partial: 'Parts[n * u.parts + tid]', out: 'sx' },
    { red: 'redC', partial: 'Parts[setC * u.parts + tid]', out: 'sc' },
  ], 'u.parts', MAX_PARTIALS)}
  let pilotX = Parts[n * u.parts].w;
  let pilotC = Parts[setC * u.parts].w;
  // unbiased std (torch.std), eps on sigma (ControlNeXt)
  let sigmaX = sqrt(sx.z / (sx.x - 1.0));
  let sigmaC = sqrt(sc.z / (sc.x - 1.0));
  let k = sigmaX / (sigmaC + u.eps);
  let s = ${scale};
${p.residual ? '' : '  _ = X[0]; // keeps binding 0 in the auto layout (the residual is not added)'}

  let first = tile * WG * PER_THREAD + tid;
  for (var r = 0u; r < PER_THREAD; r++) {
    let e = first + r * WG;
    if (e >= u.lenX) { break; }
    let c = ${poolFirst ? 'Pooled[ncIdx * u.lenX + e]' : 'pooled(ncIdx, e)'};
    let cHat = ((c - pilotC) - sc.y) * k + sx.y + pilotX;
    let idx = n * u.lenX + e;
    Y[idx] = ${p.residual ? 'X[idx] + ' : ''}s * cHat;
  }
}
`;
}

export interface CrossNormPlan {
  stats: CrossNormWgslParams;
  apply: CrossNormWgslParams;
  parts: number;
  uniforms: ArrayBuffer;
  statsWorkgroups: [number, number];
  applyWorkgroups: [number, number];
}

export function planCrossNorm(
  xShape: readonly number[], controlShape: readonly number[], p: CrossNormParams, scaleTensor: boolean, maxPerDim = 65535,
): CrossNormPlan {
  const [N, C, h, w] = xShape as [number, number, number, number];
  const [Nc, , hc, wc] = controlShape as [number, number, number, number];
  const lenX = C * h * w;
  const lenC = p.order === 'pool_then_norm' ? lenX : C * hc * wc;
  const parts = Math.min(MAX_PARTIALS, Math.max(1, Math.ceil(Math.max(lenX, lenC) / MIN_CHUNK)));
  const chunkX = Math.ceil(lenX / parts), chunkC = Math.ceil(lenC / parts);
  const tiles = Math.ceil(lenX / (WG * PER_THREAD));
  const uniforms = packUniforms([
    ['u32', N], ['u32', Nc], ['u32', C], ['u32', h], ['u32', w], ['u32', hc], ['u32', wc], ['u32', parts],
    ['u32', lenX], ['u32', lenC], ['u32', chunkX], ['u32', chunkC], ['u32', tiles], ['f32', p.eps], ['f32', scaleTensor ? 0 : p.scale], ['u32', 0],
  ]);
  const common = { order: p.order, scaleTensor, residual: p.residual ?? true };
  if (N + Nc > maxPerDim) throw new Error(`crossNorm: ${N + Nc} statistics sets exceed ${maxPerDim} workgroups per dimension`);
  return {
    stats: { stage: 'stats', ...common },
    apply: { stage: 'apply', ...common },
    parts,
    uniforms,
    statsWorkgroups: [parts, N + Nc],
    applyWorkgroups: gridFor(tiles * N, maxPerDim),
  };
}

/** The WebGPU kernel: x [N, C, h, w], control [N or 1, C, h', w'], optional scale [N] (checked by the definition). */
export function crossNormWebgpu(ctx: GpuContext, x: Tensor, control: Tensor, scale: Tensor | undefined, p: CrossNormParams): Tensor {
  const plan = planCrossNorm(x.shape, control.shape, p, scale !== undefined, ctx.limits.maxComputeWorkgroupsPerDimension);
  const N = x.shape[0]!, Nc = control.shape[0]!;
  const y = ctx.empty(x.shape);
  if (y.size === 0) return y;
  const parts = ctx.empty([(N + Nc) * plan.parts * 4]);
  const pooled = p.order === 'pool_then_norm' ? ctx.empty([Nc, ...x.shape.slice(1)]) : undefined;
  ctx.dispatch({
    label: 'cross_norm_stats', code: wgsl(plan.stats), bindings: pooled ? [x, control, parts, pooled] : [x, control, parts],
    uniforms: plan.uniforms, workgroups: plan.statsWorkgroups,
  });
  const bindings: Tensor[] = [x, pooled ?? control, parts];
  if (scale) bindings.push(scale);
  bindings.push(y);
  ctx.dispatch({
    label: 'cross_norm_apply', code: wgsl(plan.apply), bindings,
    uniforms: plan.uniforms, workgroups: plan.applyWorkgroups,
  });
  // Later work that recycles these buffers is ordered after the two dispatches that use them.
  parts.dispose();
  pooled?.dispose();
  return y;
}

// ---------------------------------------------------------------- the op

/** Mean and unbiased std (torch.std) of a[start, start + len) in float64. */
function meanStd(a: Float32Array, start: number, len: number): [number, number] {
  let mu = 0;
  for (let i = start; i < start + len; i++) mu += a[i]!;
  mu /= len;
  let ss = 0;
  for (let i = start; i < start + len; i++) ss += (a[i]! - mu) ** 2;
  return [mu, Math.sqrt(ss / (len - 1))];
}

/** adaptive_avg_pool2d of control [Nc, C, hc, wc] to [Nc, C, h, w], float64 sums. */
function poolControl(c: Float32Array, Nc: number, C: number, hc: number, wc: number, h: number, w: number): Float32Array {
  const out = new Float32Array(Nc * C * h * w);
  const rows = poolBins(hc, h), cols = poolBins(wc, w);
  for (let nc = 0; nc < Nc * C; nc++) {
    for (let i = 0; i < h; i++) {
      const [y0, y1] = rows[i]!;
      for (let j = 0; j < w; j++) {
        const [x0, x1] = cols[j]!;
        let s = 0;
        for (let y = y0; y < y1; y++) for (let xx = x0; xx < x1; xx++) s += c[(nc * hc + y) * wc + xx]!;
        out[(nc * h + i) * w + j] = s / ((y1 - y0) * (x1 - x0));
      }
    }
  }
  return out;
}

/** Inputs [x, control, scale?]: see the header; the output has x's shape. */
export const crossNormOp: OpDefinition<CrossNormParams> = defineOp<CrossNormParams>({
  name: 'controlnext.cross_norm',
  outputs([x, control, scale], p) {
    expectF32('crossNorm', [x, control, scale], ['feature', 'control', 'scale']);
    const xs = expectRank('crossNorm', x, 4, 'feature [N, C, h, w]').shape;
    const cs = expectRank('crossNorm', control, 4, 'control [N, C, h, w]').shape;
    const N = xs[0]!, Nc = cs[0]!;
    if (xs[1] !== cs[1] || (Nc !== N && Nc !== 1) || cs[2] === 0 || cs[3] === 0) {
      throw new Error(`crossNorm: control ${formatShape(cs)} does not match feature ${formatShape(xs)} (channels must agree, batch N or 1)`);
    }
    if (scale && (scale.shape.length !== 1 || scale.shape[0] !== N)) {
      throw new Error(`crossNorm: expected a per-sample scale [${N}], found ${formatShape(scale.shape)}`);
    }
    if (p.order !== 'pool_then_norm' && p.order !== 'norm_then_pool') throw new Error(`crossNorm: unknown order '${String(p.order)}' (pool_then_norm, norm_then_pool)`);
    return f32(xs);
  },
  cpu([x, control, scale], p) {
    const [N, C, h, w] = x!.shape as [number, number, number, number];
    const [Nc, , hc, wc] = control!.shape as [number, number, number, number];
    const X = x!.data as Float32Array, Ctl = control!.data as Float32Array;
    const P = poolControl(Ctl, Nc, C, hc, wc, h, w);
    const statsSrc = p.order === 'pool_then_norm' ? P : Ctl;
    const per = C * h * w, perStats = statsSrc.length / Nc;
    const scales = scale?.data as Float32Array | undefined;
    const out = new Float32Array(N * per);
    for (let n = 0; n < N; n++) {
      const nc = Nc === 1 ? 0 : n;
      const [mx, sx] = meanStd(X, n * per, per);
      const [mc, sc] = meanStd(statsSrc, nc * perStats, perStats);
      const s = scales ? scales[n]! : p.scale;
      const k = sx / (sc + p.eps);
      for (let i = 0; i < per; i++) {
        const normed = (P[nc * per + i]! - mc) * k + mx;
        out[n * per + i] = (p.residual === false ? 0 : X[n * per + i]!) + normed * s;
      }
    }
    return [out];
  },
  kernels: { webgpu: (ctx: GpuContext, [x, control, scale], p) => [crossNormWebgpu(ctx, x!, control!, scale, p)] },
  saves: () => ({ outputs: [] }),
  backward({ inputs: [x, control, scale], params, needsGrad }, [g]) {
    const [dx, dcontrol, dscale] = runOp(crossNormBackwardOp, [x, control, scale, g], params);
    return [needsGrad[0] ? dx : undefined, needsGrad[1] ? dcontrol : undefined, needsGrad[2] ? dscale : undefined];
  },
});

/**
 * ControlNeXt cross normalisation and injection, fused. x: [N, C, h, w] denoiser feature; control:
 * [Nc, C, h', w'] with Nc = N or 1 (one control map shared by the batch). Per sample n:
 * c = pool(control) to [h, w]; (mu, sigma) of x[n] and of the control (pooled or not, see `order`)
 * over C*H*W with the UNBIASED std; c_hat = (c - mu_c) * sigma_x / (sigma_c + eps) + mu_x;
 * returns x + s[n] * c_hat (or s[n] * c_hat with residual: false).
 */
export function crossNorm(x: Tensor, control: Tensor, opts: CrossNormOptions): Tensor {
  const scaleTensor = typeof opts.scale === 'number' ? undefined : opts.scale;
  return runOp1(crossNormOp, [x, control, scaleTensor], {
    eps: opts.eps, order: opts.order, scale: typeof opts.scale === 'number' ? opts.scale : 0, residual: opts.residual,
  });
}
