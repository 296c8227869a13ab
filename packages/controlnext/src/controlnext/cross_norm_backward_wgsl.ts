// Fused backward of ControlNeXt cross normalisation + injection (forward: cross_norm.ts): the gradients
// of the feature x, the control and the scale from the upstream gradient dy, in four dispatches.
// Semantics and derivation: crossNormBackward in packages/tensor/src/cpu/cross_norm_backward.ts.
//
// x, dy: [N, C, h, w]; control: [Nc, C, h', w'] with Nc = N or 1; scale: a number or s [N]. Per sample n
// (nc = n, or 0 when Nc = 1), L = C*h*w, c = adaptive_avg_pool2d(control[nc]) to [C, h, w], z = the values
// the control statistics are taken over (c for 'pool_then_norm', control[nc] for 'norm_then_pool', Lz of
// them), mu/sigma with the UNBIASED std, den = sigma_c + eps, k = sigma_x / den, g = dy[n]:
//   S = s sum g,  A = s sum g (c - mu_c),  dscale[n] = sum g c_hat = k sum g (c - mu_c) + mu_x sum g
//   dx     = [g] + S / L + A / den * (x - mu_x) / ((L - 1) sigma_x)
//   dpool  = s k g  (+ az + bz (c - mu_c) for 'pool_then_norm')              [N, C, h, w] scratch
//   dcontrol[nc] = sum over n of pool^T(dpool[n])  (+ az + bz (control - mu_c) for 'norm_then_pool')
//   with az = -k S / Lz, bz = -A sigma_x / den^2 / ((Lz - 1) sigma_c).
// Dispatches:
//  1. 'stats': one workgroup per (chunk p < P, set); sets are the N samples (x statistics with the
//     shifted two-pass scheme of cross_norm.ts / norm.ts, plus the partial sums of g and g (c - K_c)
//     with pilot K_c = the sample's first pooled value) then the Nc control samples (z statistics).
//  2. 'finalize': one workgroup; per sample it merges the P partials (Chan's pairwise formula) and writes
//     two coefficient vec4s [N, 2] and dscale ([N] for a per-sample scale, [1] = the sum for a number).
//  3. 'dx': one thread per element of x: dx, and dpool (the gradient reaching the pooled control).
//  4. 'dcontrol': one thread per control element: it gathers the pooled cells whose bins contain it
//     (bins overlap when sizes do not divide) from dpool, over the batch when Nc = 1, so no atomics.
// Traffic: the control is read about 4 times at full resolution (pooled on the fly in 'stats' and 'dx';
// the forward's scratch-pooled trick needs the stats of one workgroup in another), x and dy twice.
// A constant x or control (sigma = 0) gives non-finite gradients, as torch.std's backward does.
// Limits: f32, contiguous; N*C*h*w and Nc*C*h'*w' < 2^32; N + Nc <= maxComputeWorkgroupsPerDimension.

import { gridFor, packUniforms, wgslMath, type GpuContext } from '@cnx/kernels';
import { formatShape, type Tensor } from '@cnx/tensor';
import type { CrossNormOptions } from './cross_norm.js';
import { ADAPTIVE_POOL_BINS, POOLED_CONTROL } from './cross_norm_pool_wgsl.js';

/** Most partials per statistics set (the finalize workgroup merges them with one thread each). */
const MAX_PARTIALS = 64;
/** Fewest elements a stats workgroup is given before more chunks are used. */
const MIN_CHUNK = 4096;
const WG = 256;

export type CrossNormBackwardStage = 'stats' | 'finalize' | 'dx' | 'dcontrol';

export interface CrossNormBackwardParams {
  stage: CrossNormBackwardStage;
  order: CrossNormOptions['order'];
  /** Per-sample scale tensor [N] (else the uniform `scale`). */
  scaleTensor: boolean;
  residual: boolean;
}

const UNIFORMS = /* wgsl */ `
struct U {
  n: u32, nc: u32, c: u32, h: u32, w: u32, hc: u32, wc: u32, parts: u32,
  lenX: u32, lenZ: u32, lenC: u32, chunkX: u32, chunkZ: u32, eps: f32, scale: f32, gridX: u32,
}`;

export function wgsl(p: CrossNormBackwardParams): string {
  const poolFirst = p.order === 'pool_then_norm';
  switch (p.stage) {
    case 'stats': {
      const zValue = poolFirst ? 'pooled(ci, e)' : 'Ctl[ci * u.lenC + e]';
      return /* wgsl */ `// cross-norm backward: partial statistics of x, the control and dy${poolFirst ? ' (pool, then normalise)' : ''}
${UNIFORMS}
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> Ctl: array<f32>;
@group(0) @binding(2) var<storage, read> Dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> StatParts: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> GParts: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> u: U;
${POOLED_CONTROL}
const WG = ${WG}u;
${wgslMath.WORKGROUP_SUM}

// value e of statistics set si: x[si] for si < N, else the control sample's z
fn value(si: u32, e: u32) -> f32 {
  if (si < u.n) { return X[si * u.lenX + e]; }
  let ci = si - u.n;
  return ${zValue};
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let part = wid.x;
  let si = wid.y;
  let isX = si < u.n;
  let len = select(u.lenZ, u.lenX, isX);
  let chunk = select(u.chunkZ, u.chunkX, isX);
  let start = min(part * chunk, len);
  let end = min(start + chunk, len);
  let pilot = value(si, 0u);
  // the sample's control (for the sums of dy against the pooled control)
  let ncIdx = select(0u, select(si, 0u, u.nc == 1u), isX);
  let pilotC = pooled(ncIdx, 0u);
  var acc = 0.0;
  var accG = 0.0;
  var accGc = 0.0;
  for (var e = start + tid; e < end; e += WG) {
    acc += value(si, e) - pilot;
    if (isX) {
      let g = Dy[si * u.lenX + e];
      accG += g;
      accGc = fma(g, pooled(ncIdx, e) - pilotC, accGc);
    }
  }
  let count = f32(end - start);
  let dmean = workgroupSum(acc, tid) / max(count, 1.0);
  let sumG = workgroupSum(accG, tid);
  let sumGc = workgroupSum(accGc, tid);
  acc = 0.0;
  for (var e = start + tid; e < end; e += WG) {
    let d = (value(si, e) - pilot) - dmean;
    acc = fma(d, d, acc);
  }
  let m2 = workgroupSum(acc, tid);
  if (tid == 0u) {
    StatParts[si * u.parts + part] = vec4<f32>(count, dmean, m2, pilot);
    if (isX) { GParts[si * u.parts + part] = vec4<f32>(sumG, sumGc, pilotC, 0.0); }
  }
}
`;
    }
    case 'finalize': {
      const scale = p.scaleTensor ? 'S[n]' : 'u.scale';
      return /* wgsl */ `// cross-norm backward: per-sample coefficients and dscale
${UNIFORMS}
@group(0) @binding(0) var<storage, read> StatParts: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> GParts: array<vec4<f32>>;
${p.scaleTensor ? '@group(0) @binding(2) var<storage, read> S: array<f32>;\n' : ''}@group(0) @binding(${p.scaleTensor ? 3 : 2}) var<storage, read_write> Coef: array<vec4<f32>>;
@group(0) @binding(${p.scaleTensor ? 4 : 3}) var<storage, read_write> DScale: array<f32>;
@group(0) @binding(${p.scaleTensor ? 5 : 4}) var<uniform> u: U;

var<workgroup> redX: array<vec3<f32>, ${MAX_PARTIALS}>;
var<workgroup> redC: array<vec3<f32>, ${MAX_PARTIALS}>;
var<workgroup> redG: array<vec2<f32>, ${MAX_PARTIALS}>;

// Chan et al. pairwise merge of (count, mean, M2).
fn merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
  let n = a.x + b.x;
  if (n == 0.0) { return a; }
  let delta = b.y - a.y;
  return vec3<f32>(n, a.y + delta * (b.x / n), a.z + b.z + delta * delta * (a.x * b.x / n));
}

@compute @workgroup_size(${MAX_PARTIALS})
fn main(@builtin(local_invocation_index) tid: u32) {
  var total = 0.0;
  for (var n = 0u; n < u.n; n++) {
    let setC = u.n + select(n, 0u, u.nc == 1u);
    var px = vec3<f32>(0.0);
    var pc = vec3<f32>(0.0);
    var pg = vec2<f32>(0.0);
    if (tid < u.parts) {
      px = StatParts[n * u.parts + tid].xyz;
      pc = StatParts[setC * u.parts + tid].xyz;
      pg = GParts[n * u.parts + tid].xy;
    }
    redX[tid] = px;
    redC[tid] = pc;
    redG[tid] = pg;
    workgroupBarrier();
    for (var stride = ${MAX_PARTIALS / 2}u; stride > 0u; stride = stride / 2u) {
      if (tid < stride) {
        redX[tid] = merge(redX[tid], redX[tid + stride]);
        redC[tid] = merge(redC[tid], redC[tid + stride]);
        redG[tid] = redG[tid] + redG[tid + stride];
      }
      workgroupBarrier();
    }
    if (tid == 0u) {
      let sx3 = redX[0];
      let sc3 = redC[0];
      let muX = StatParts[n * u.parts].w + sx3.y;
      let muC = StatParts[setC * u.parts].w + sc3.y;
      let sigmaX = sqrt(sx3.z / (sx3.x - 1.0)); // unbiased (torch.std)
      let sigmaC = sqrt(sc3.z / (sc3.x - 1.0));
      let den = sigmaC + u.eps;
      let k = sigmaX / den;
      let sumG = redG[0].x;
      let sumGc = redG[0].y - (muC - GParts[n * u.parts].z) * sumG; // sum g (c - mu_c)
      let s = ${scale};
      let bigS = s * sumG;
      let bigA = s * sumGc;
      let ds = k * sumGc + muX * sumG; // sum g c_hat
      ${p.scaleTensor ? 'DScale[n] = ds;' : 'total += ds;'}
      let lenX = f32(u.lenX);
      let lenZ = f32(u.lenZ);
      Coef[2u * n] = vec4<f32>(bigS / lenX, bigA / den / ((lenX - 1.0) * sigmaX), muX, s * k);
      Coef[2u * n + 1u] = vec4<f32>(-k * bigS / lenZ, -bigA * sigmaX / (den * den) / ((lenZ - 1.0) * sigmaC), muC, 0.0);
    }
    workgroupBarrier();
  }
  ${p.scaleTensor ? '' : 'if (tid == 0u) { DScale[0] = total; }'}
}
`;
    }
    case 'dx': {
      return /* wgsl */ `// cross-norm backward: dx and the gradient reaching the pooled control${p.residual ? '' : ' (no residual)'}
${UNIFORMS}
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> Dy: array<f32>;
@group(0) @binding(2) var<storage, read> Coef: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> DX: array<f32>;
@group(0) @binding(4) var<storage, read_write> DPool: array<f32>;
${poolFirst ? '@group(0) @binding(5) var<storage, read> Ctl: array<f32>;\n' : ''}@group(0) @binding(${poolFirst ? 6 : 5}) var<uniform> u: U;
${poolFirst ? POOLED_CONTROL : ''}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let idx = (wid.y * u.gridX + wid.x) * ${WG}u + tid;
  if (idx >= u.n * u.lenX) { return; }
  let n = idx / u.lenX;
  let cx = Coef[2u * n];
  let g = Dy[idx];
  DX[idx] = ${p.residual ? 'g + ' : ''}cx.x + cx.y * (X[idx] - cx.z);
  ${poolFirst
    ? `let cc = Coef[2u * n + 1u];
  let c = pooled(select(n, 0u, u.nc == 1u), idx % u.lenX);
  DPool[idx] = cx.w * g + cc.x + cc.y * (c - cc.z);`
    : 'DPool[idx] = cx.w * g;'}
}
`;
    }
    case 'dcontrol': {
      return /* wgsl */ `// cross-norm backward: dcontrol = pool^T(dpool) summed over the samples that share the control${poolFirst ? '' : ' + the statistics term'}
${UNIFORMS}
@group(0) @binding(0) var<storage, read> DPool: array<f32>;
@group(0) @binding(1) var<storage, read> Coef: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> DC: array<f32>;
${poolFirst ? '' : '@group(0) @binding(3) var<storage, read> Ctl: array<f32>;\n'}@group(0) @binding(${poolFirst ? 3 : 4}) var<uniform> u: U;

${ADAPTIVE_POOL_BINS}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let idx = (wid.y * u.gridX + wid.x) * ${WG}u + tid;
  if (idx >= u.nc * u.lenC) { return; }
  let ncIdx = idx / u.lenC;
  let e = idx % u.lenC;
  let x = e % u.wc;
  let y = (e / u.wc) % u.hc;
  let ch = e / (u.wc * u.hc);
  // pooled cells whose bins contain (y, x): rows i in [floor(y h / hc), ceil((y + 1) h / hc)), checked
  let i0 = (y * u.h) / u.hc;
  let i1 = min(((y + 1u) * u.h + u.hc - 1u) / u.hc, u.h);
  let j0 = (x * u.w) / u.wc;
  let j1 = min(((x + 1u) * u.w + u.wc - 1u) / u.wc, u.w);
  let nFirst = select(ncIdx, 0u, u.nc == 1u);
  let nEnd = select(ncIdx + 1u, u.n, u.nc == 1u);
  var acc = 0.0;
  for (var n = nFirst; n < nEnd; n++) {
    let base = (n * u.c + ch) * u.h;
    for (var i = i0; i < i1; i++) {
      let y0 = binStart(i, u.hc, u.h); let y1 = binEnd(i, u.hc, u.h);
      if (y < y0 || y >= y1) { continue; }
      for (var j = j0; j < j1; j++) {
        let x0 = binStart(j, u.wc, u.w); let x1 = binEnd(j, u.wc, u.w);
        if (x < x0 || x >= x1) { continue; }
        acc += DPool[(base + i) * u.w + j] / f32((y1 - y0) * (x1 - x0));
      }
    }
${poolFirst ? '' : `    let cc = Coef[2u * n + 1u];
    acc += cc.x + cc.y * (Ctl[idx] - cc.z);`}
  }
  ${poolFirst ? '_ = Coef[0]; // keeps binding 1 in the auto layout (the statistics term is inside dpool)\n  ' : ''}DC[idx] = acc;
}
`;
    }
  }
}

export interface CrossNormBackwardPlan {
  stats: CrossNormBackwardParams;
  finalize: CrossNormBackwardParams;
  dx: CrossNormBackwardParams;
  dcontrol: CrossNormBackwardParams;
  parts: number;
  statsWorkgroups: [number, number];
  dxWorkgroups: [number, number];
  dcontrolWorkgroups: [number, number];
  /** Uniforms of stats and finalize, of dx, and of dcontrol (they differ in gridX only). */
  uniforms: { stats: ArrayBuffer; dx: ArrayBuffer; dcontrol: ArrayBuffer };
}

export function planCrossNormBackward(
  xShape: readonly number[], controlShape: readonly number[], opts: CrossNormOptions, maxPerDim = 65535,
): CrossNormBackwardPlan {
  const [N, C, h, w] = xShape as [number, number, number, number];
  const [Nc, Cc, hc, wc] = controlShape as [number, number, number, number];
  if (xShape.length !== 4 || controlShape.length !== 4 || Cc !== C || (Nc !== N && Nc !== 1) || hc === 0 || wc === 0 || h === 0 || w === 0) {
    throw new Error(`crossNorm backward: expected x [N, C, h, w] and control [N or 1, C, h', w'], found x [${xShape.join(', ')}], control [${controlShape.join(', ')}]`);
  }
  const lenX = C * h * w, lenC = C * hc * wc;
  const lenZ = opts.order === 'pool_then_norm' ? lenX : lenC;
  if (Math.min(lenX, lenZ) < 2) throw new Error(`crossNorm backward: the unbiased std needs at least 2 values per sample, found x [${xShape.join(', ')}]`);
  if (N + Nc > maxPerDim) throw new Error(`crossNorm backward: ${N + Nc} statistics sets exceed ${maxPerDim} workgroups per dimension`);
  const parts = Math.min(MAX_PARTIALS, Math.max(1, Math.ceil(Math.max(lenX, lenZ) / MIN_CHUNK)));
  const dxWorkgroups = gridFor(Math.ceil((N * lenX) / WG), maxPerDim);
  const dcontrolWorkgroups = gridFor(Math.ceil((Nc * lenC) / WG), maxPerDim);
  const scale = typeof opts.scale === 'number' ? opts.scale : 0;
  const uniforms = (gridX: number) => packUniforms([
    ['u32', N], ['u32', Nc], ['u32', C], ['u32', h], ['u32', w], ['u32', hc], ['u32', wc], ['u32', parts],
    ['u32', lenX], ['u32', lenZ], ['u32', lenC], ['u32', Math.ceil(lenX / parts)], ['u32', Math.ceil(lenZ / parts)],
    ['f32', opts.eps], ['f32', scale], ['u32', gridX],
  ]);
  const common = { order: opts.order, scaleTensor: typeof opts.scale !== 'number', residual: opts.residual ?? true };
  return {
    stats: { stage: 'stats', ...common },
    finalize: { stage: 'finalize', ...common },
    dx: { stage: 'dx', ...common },
    dcontrol: { stage: 'dcontrol', ...common },
    parts,
    statsWorkgroups: [parts, N + Nc],
    dxWorkgroups,
    dcontrolWorkgroups,
    uniforms: { stats: uniforms(0), dx: uniforms(dxWorkgroups[0]), dcontrol: uniforms(dcontrolWorkgroups[0]) },
  };
}

/**
 * Gradients of crossNorm(x, control, opts) given dy [N, C, h, w]: dx [N, C, h, w], dcontrol
 * [Nc, C, h', w'] (summed over the batch when Nc = 1) and dscale: [N] when opts.scale is a per-sample
 * tensor, [1] (the sum over samples) when it is a number.
 */
export function crossNormBackward(ctx: GpuContext, x: Tensor, control: Tensor, dy: Tensor, opts: CrossNormOptions): { dx: Tensor; dcontrol: Tensor; dscale: Tensor } {
  const plan = planCrossNormBackward(x.shape, control.shape, opts, ctx.limits.maxComputeWorkgroupsPerDimension);
  const N = x.shape[0]!, Nc = control.shape[0]!;
  if (dy.rank !== 4 || dy.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(`crossNorm backward: expected dy ${formatShape(x.shape)}, found ${formatShape(dy.shape)}`);
  }
  if (typeof opts.scale !== 'number' && opts.scale.size !== N) {
    throw new Error(`crossNorm backward: expected a per-sample scale [${N}], found ${formatShape(opts.scale.shape)}`);
  }
  for (const [name, t] of [['x', x], ['control', control], ['dy', dy], ['scale', typeof opts.scale === 'number' ? x : opts.scale]] as const) {
    if (t.dtype !== 'f32') throw new Error(`crossNorm backward: expected f32 ${name}, found ${t.dtype}`);
  }
  const statParts = ctx.empty([(N + Nc) * plan.parts * 4]);
  const gParts = ctx.empty([N * plan.parts * 4]);
  const coef = ctx.empty([N * 2 * 4]);
  const dscale = ctx.empty([typeof opts.scale === 'number' ? 1 : N]);
  const dx = ctx.empty(x.shape), dcontrol = ctx.empty(control.shape);
  const dpool = ctx.empty(x.shape);
  ctx.dispatch({
    label: 'cross_norm_bwd_stats', code: wgsl(plan.stats), bindings: [x, control, dy, statParts, gParts],
    uniforms: plan.uniforms.stats, workgroups: plan.statsWorkgroups,
  });
  const finBindings: Tensor[] = [statParts, gParts];
  if (typeof opts.scale !== 'number') finBindings.push(opts.scale);
  finBindings.push(coef, dscale);
  ctx.dispatch({ label: 'cross_norm_bwd_finalize', code: wgsl(plan.finalize), bindings: finBindings, uniforms: plan.uniforms.stats, workgroups: [1] });
  const poolFirst = opts.order === 'pool_then_norm';
  ctx.dispatch({
    label: 'cross_norm_bwd_dx', code: wgsl(plan.dx), bindings: poolFirst ? [x, dy, coef, dx, dpool, control] : [x, dy, coef, dx, dpool],
    uniforms: plan.uniforms.dx, workgroups: plan.dxWorkgroups,
  });
  ctx.dispatch({
    label: 'cross_norm_bwd_dcontrol', code: wgsl(plan.dcontrol), bindings: poolFirst ? [dpool, coef, dcontrol] : [dpool, coef, dcontrol, control],
    uniforms: plan.uniforms.dcontrol, workgroups: plan.dcontrolWorkgroups,
  });
  // Later work that recycles the scratch buffers is ordered after the dispatches that use them.
  [statParts, gParts, coef, dpool].forEach((t) => t.dispose());
  return { dx, dcontrol, dscale };
}
