// Group normalisation and layer normalisation: normalise contiguous segments of a tensor.
//
//  - groupNorm: x [N, C, ...spatial] (any number of spatial dims, including none), G groups. Segment
//    (n, g) is the contiguous run x[n, g*Cg:(g+1)*Cg, ...] of len = Cg*S elements (Cg = C/G, S = spatial
//    size). y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c], optionally followed by SiLU
//    (diffusers ResnetBlock2D: norm1 -> nonlinearity). torch.nn.functional.group_norm semantics.
//  - layerNorm: x [..., D]; segment = one row of D; weight, bias [D]. torch.nn.functional.layer_norm.
// Both use the biased variance (divide by len), as torch does; semantics: CpuBackend.groupNorm/layerNorm.
//
// Statistics are f32 with a shifted two-pass reduction: every element is first shifted by a pilot value
// K = the segment's first element, then pass 1 sums d = x - K (-> dmean), pass 2 sums (d - dmean)^2
// (-> var), and the output is ((x - K) - dmean) * rstd * w + b. The shift keeps the partial sums at the
// scale of the spread rather than the offset, so features like 1e3 + N(0, 1) keep full precision (a
// plain f32 sum of 40 960 values of 1e3 loses ~1e-4 in the mean).
//
// Variants (NormParams.stage):
//  - 'single': one workgroup per segment (grid split over x/y past 65535 segments) does both passes and
//    the write; the segment is read three times from cache (an SD1.5 UNet group at 64x64 latents is
//    10 channels * 4096 = 160 KiB). Workgroup size 256 for group norm; for layer norm a power of two
//    near D/8 in [32, 256] (rows of 32-1280+ elements).
//  - 'stats' + 'apply' (split), for group-norm segments of >= SPLIT_MIN_LEN elements, or of >= 2 *
//    MIN_CHUNK when there are fewer than SPLIT_BELOW_SEGMENTS segments: where one workgroup per segment
//    would leave the GPU idle (ControlNeXt-SD1.5's GroupNorm(1, 128) at 512x512 is
//    2 segments of 33.5 M values; the VAE's GroupNorm(32, 128) at 512x512 is 64 segments of 1 M).
//    'stats' gives each segment up to MAX_PARTS workgroups; each reduces a chunk with the same shifted
//    two-pass scheme (the pilot is the segment's first element for every chunk) and writes a partial
//    (count, mean of d, M2, K). 'apply' tiles each segment (PER_THREAD outputs per thread); every
//    workgroup first merges its segment's partials with Chan's pairwise formula in workgroup memory, then
//    normalises its tile.
// Saved statistics (NormParams.stats, groupNormWithStats / layerNormWithStats): the 'single' and
// 'apply' variants also write each segment's mean (= pilot + dmean) and rstd = 1/sqrt(var + eps) to
// Mean / Rstd ([N, G] for group norm, [rows] for layer norm: what the backward in norm_backward.ts
// reads), one store per segment by thread 0 (of tile 0 in 'apply'). Without stats the WGSL is unchanged.
// Weight and bias may be stored as f16/bf16 (16-bit weight storage, @cnx/tensor weight_dtype.ts): bound as
// array<u32> and widened on load (NormParams.weightDtype / biasDtype); x, y and the statistics are f32.
// Limits: f32 activations (ops.ts guarantees contiguous inputs).

import type { GroupNormOptions, Tensor } from '@cnx/tensor';
import { widen16Wgsl } from './matmul.js';
import { gridFor, packUniforms, type GpuContext } from './webgpu/context.js';
import { WORKGROUP_SUM } from './wgsl_math.js';
import { CHAN_MERGE, chunkMomentsWgsl, mergePartialsWgsl } from './wgsl_moments.js';

/** Group-norm segments at least this long use the split (stats + apply) variant. */
export const SPLIT_MIN_LEN = 65536;
/**
 * Below this many segments, one workgroup per segment cannot fill a GPU (an H100 has 132 SMs, each
 * running several workgroups), so segments of at least 2 * MIN_CHUNK elements also take the split
 * variant. SD1.5's UNet GroupNorm(32) at batch 2 has 64 segments: 40 960 values each at 64x64 latents
 * took 0.61 ms (34 GB/s) with 'single' on the H100, while the split variant ran GroupNorm(8, 128) at
 * 512x512 at 565 GB/s (bench/results/kernels-webgpu.json).
 */
export const SPLIT_BELOW_SEGMENTS = 512;
/** Most partials per segment in the split variant (one per apply thread when merging). */
const MAX_PARTS = 256;
/** Fewest elements per stats workgroup before a segment gets more chunks. */
const MIN_CHUNK = 4096;
/** Outputs per thread of the split variant's apply stage. */
const PER_THREAD = 8;

export interface NormParams {
  stage: 'single' | 'stats' | 'apply';
  kind: 'group' | 'layer';
  /** Threads per workgroup (a power of two). */
  wg: number;
  hasWeight: boolean;
  hasBias: boolean;
  silu: boolean;
  /** Also write each segment's mean and rstd ('single' and 'apply' stages). */
  stats?: boolean;
  /** 16-bit storage of the weight / bias (widened on load); absent: f32. */
  weightDtype?: 'f16' | 'bf16';
  biasDtype?: 'f16' | 'bf16';
}

const UNIFORMS = /* wgsl */ `
struct U { segments: u32, len: u32, s: u32, cg: u32, groups: u32, eps: f32, parts: u32, chunk: u32,
           tiles: u32, pad0: u32, pad1: u32, pad2: u32 }`;

export function wgsl(p: NormParams): string {
  if (p.wg & (p.wg - 1)) throw new Error(`norm: workgroup size ${p.wg} is not a power of two`);
  if (p.stage === 'stats') {
    return /* wgsl */ `${UNIFORMS}
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> Parts: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> u: U;
const WG = ${p.wg}u;
${WORKGROUP_SUM}

@compute @workgroup_size(${p.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let part = wid.x;
  let seg = wid.y;
  let base = seg * u.len;
  let start = min(part * u.chunk, u.len);
  let end = min(start + u.chunk, u.len);
  let pilot = X[base];${chunkMomentsWgsl({ first: 'X[base + e]' })}
  if (tid == 0u) { Parts[seg * u.parts + part] = vec4<f32>(count, dmean, m2, pilot); }
}
`;
  }
  const split = p.stage === 'apply';
  let b = split ? 2 : 1;
  const wBinding = p.hasWeight ? b++ : -1;
  const bBinding = p.hasBias ? b++ : -1;
  const yBinding = b++;
  const meanBinding = p.stats ? b++ : -1;
  const rstdBinding = p.stats ? b++ : -1;
  const uBinding = b;
  // Index of the affine parameter for element i of segment seg.
  const param = p.kind === 'group' ? '(seg % u.groups) * u.cg + i / u.s' : 'i';
  let y = '((X[base + i] - pilot) - dmean) * rstd';
  if (p.hasWeight) y = `${y} * ${p.weightDtype ? `loadWt(${param})` : `Wt[${param}]`}`;
  if (p.hasBias) y = `${y} + ${p.biasDtype ? `loadBias(${param})` : `Bias[${param}]`}`;
  const write = `let y = ${y};
    Y[base + i] = ${p.silu ? 'y / (1.0 + exp(-y))' : 'y'};`;
  const bindings = `@group(0) @binding(0) var<storage, read> X: array<f32>;
${split ? '@group(0) @binding(1) var<storage, read> Parts: array<vec4<f32>>;' : ''}
${p.hasWeight ? `@group(0) @binding(${wBinding}) var<storage, read> Wt: array<${p.weightDtype ? 'u32' : 'f32'}>;` : ''}
${p.hasBias ? `@group(0) @binding(${bBinding}) var<storage, read> Bias: array<${p.biasDtype ? 'u32' : 'f32'}>;` : ''}
${p.hasWeight && p.weightDtype ? widen16Wgsl(p.weightDtype, 'loadWt', 'Wt') : ''}${p.hasBias && p.biasDtype ? widen16Wgsl(p.biasDtype, 'loadBias', 'Bias') : ''}
@group(0) @binding(${yBinding}) var<storage, read_write> Y: array<f32>;${p.stats ? `
@group(0) @binding(${meanBinding}) var<storage, read_write> Mean: array<f32>;
@group(0) @binding(${rstdBinding}) var<storage, read_write> Rstd: array<f32>;` : ''}
@group(0) @binding(${uBinding}) var<uniform> u: U;
const WG = ${p.wg}u;`;
  if (!split) {
    return /* wgsl */ `${UNIFORMS}
${bindings}
${WORKGROUP_SUM}

@compute @workgroup_size(${p.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let seg = wid.x + wid.y * nwg.x;
  if (seg >= u.segments) { return; }
  let base = seg * u.len;
  let n = f32(u.len);
  let pilot = X[base];
  var acc = 0.0;
  for (var i = tid; i < u.len; i += WG) { acc += X[base + i] - pilot; }
  let dmean = workgroupSum(acc, tid) / n;
  acc = 0.0;
  for (var i = tid; i < u.len; i += WG) {
    let d = (X[base + i] - pilot) - dmean;
    acc = fma(d, d, acc);
  }
  let rstd = 1.0 / sqrt(workgroupSum(acc, tid) / n + u.eps);${p.stats ? `
  if (tid == 0u) { Mean[seg] = pilot + dmean; Rstd[seg] = rstd; }` : ''}
  for (var i = tid; i < u.len; i += WG) {
    ${write}
  }
}
`;
  }
  if (p.wg < MAX_PARTS) throw new Error(`norm: the apply stage needs a workgroup of >= ${MAX_PARTS} threads, found ${p.wg}`);
  return /* wgsl */ `${UNIFORMS}
${bindings}
const PER_THREAD = ${PER_THREAD}u;
var<workgroup> red: array<vec3<f32>, WG>;
${CHAN_MERGE}

@compute @workgroup_size(${p.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let flat = wid.x + wid.y * nwg.x;
  if (flat >= u.tiles * u.segments) { return; }
  let seg = flat / u.tiles;
  let tile = flat % u.tiles;
  let base = seg * u.len;${mergePartialsWgsl([{ red: 'red', partial: 'Parts[seg * u.parts + tid]', out: 'total' }], 'u.parts', p.wg)}
  let dmean = total.y;
  let rstd = 1.0 / sqrt(total.z / total.x + u.eps);
  let pilot = Parts[seg * u.parts].w;${p.stats ? `
  if (tile == 0u && tid == 0u) { Mean[seg] = pilot + dmean; Rstd[seg] = rstd; }` : ''}
  let first = tile * WG * PER_THREAD + tid;
  for (var r = 0u; r < PER_THREAD; r++) {
    let i = first + r * WG;
    if (i >= u.len) { break; }
    ${write}
  }
}
`;
}

export interface NormDispatch {
  params: NormParams;
  workgroups: [number, number];
}

export interface NormPlan {
  /** One dispatch ('single'), or 'stats' then 'apply' (split). */
  dispatches: NormDispatch[];
  /** Partials of the split variant: segments * parts vec4 (0 for 'single'). */
  parts: number;
  uniforms: ArrayBuffer;
}

function layerNormWorkgroup(d: number): number {
  let wg = 32;
  while (wg < 256 && wg * 8 < d) wg *= 2;
  return wg;
}

export function planNorm(
  kind: 'group' | 'layer', segments: number, len: number, s: number, cg: number, groups: number, eps: number,
  flags: Pick<NormParams, 'hasWeight' | 'hasBias' | 'silu' | 'stats' | 'weightDtype' | 'biasDtype'>, maxPerDim = 65535,
): NormPlan {
  const split = kind === 'group' && segments <= maxPerDim &&
    (len >= SPLIT_MIN_LEN || (segments < SPLIT_BELOW_SEGMENTS && len >= 2 * MIN_CHUNK));
  const parts = split ? Math.min(MAX_PARTS, Math.ceil(len / MIN_CHUNK)) : 0;
  const chunk = split ? Math.ceil(len / parts) : 0;
  const wg = kind === 'group' ? 256 : layerNormWorkgroup(len);
  const tiles = split ? Math.ceil(len / (wg * PER_THREAD)) : 0;
  const uniforms = packUniforms([
    ['u32', segments], ['u32', len], ['u32', s], ['u32', cg], ['u32', groups], ['f32', eps], ['u32', parts], ['u32', chunk],
    ['u32', tiles], ['u32', 0], ['u32', 0], ['u32', 0],
  ]);
  const dispatches: NormDispatch[] = split
    ? [
      // the stats stage never writes the saved statistics: one pipeline with or without them
      { params: { stage: 'stats', kind, wg, ...flags, stats: undefined }, workgroups: [parts, segments] },
      { params: { stage: 'apply', kind, wg, ...flags }, workgroups: gridFor(tiles * segments, maxPerDim) },
    ]
    : [{ params: { stage: 'single', kind, wg, ...flags }, workgroups: gridFor(segments, maxPerDim) }];
  return { dispatches, parts: segments * parts, uniforms };
}

/** y, plus the statistics when the plan writes them (statsShape: [N, G] or [rows]). */
function run(
  ctx: GpuContext, label: string, x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, plan: NormPlan, statsShape?: number[],
): NormWithStats {
  const y = ctx.empty(x.shape);
  const mean = statsShape && ctx.empty(statsShape), rstd = statsShape && ctx.empty(statsShape);
  if (y.size === 0) return { y, mean: mean!, rstd: rstd! };
  const parts = plan.parts > 0 ? ctx.empty([plan.parts * 4]) : undefined;
  for (const d of plan.dispatches) {
    const bindings: Tensor[] = [x];
    if (d.params.stage === 'stats') bindings.push(parts!);
    else {
      if (d.params.stage === 'apply') bindings.push(parts!);
      if (weight) bindings.push(weight);
      if (bias) bindings.push(bias);
      bindings.push(y);
      if (d.params.stats) bindings.push(mean!, rstd!);
    }
    ctx.dispatch({ label: `${label}_${d.params.stage}`, code: wgsl(d.params), bindings, uniforms: plan.uniforms, workgroups: d.workgroups });
  }
  // Later work that recycles this buffer is ordered after the dispatches that use it.
  parts?.dispose();
  return { y, mean: mean!, rstd: rstd! };
}

/** A normalisation's output with its saved statistics (the inputs of norm_backward.ts). */
export interface NormWithStats {
  y: Tensor;
  /** [N, G] (group norm) or [rows] (layer norm); f32. */
  mean: Tensor;
  rstd: Tensor;
}

/** The 16-bit storage flags of the affine parameters (absent for f32: the f32 WGSL is unchanged). */
function affineDtypes(weight: Tensor | undefined, bias: Tensor | undefined): Pick<NormParams, 'weightDtype' | 'biasDtype'> {
  const half = (t: Tensor | undefined, name: string): 'f16' | 'bf16' | undefined => {
    if (!t || t.dtype === 'f32') return undefined;
    if (t.dtype === 'f16' || t.dtype === 'bf16') return t.dtype;
    throw new Error(`norm: expected ${name} of dtype f32, f16 or bf16, found ${t.dtype} [${t.shape.join(', ')}]`);
  };
  const w = half(weight, 'weight'), b = half(bias, 'bias');
  return { ...(w ? { weightDtype: w } : {}), ...(b ? { biasDtype: b } : {}) };
}

/** x: [N, C, ...spatial]; weight, bias: [C]. */
export function groupNorm(ctx: GpuContext, x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, opts: GroupNormOptions): Tensor {
  return groupNormRun(ctx, x, weight, bias, opts, false).y;
}

/** groupNorm plus the per-(n, group) mean and rstd [N, G] the backward needs. */
export function groupNormWithStats(
  ctx: GpuContext, x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, opts: GroupNormOptions,
): NormWithStats {
  return groupNormRun(ctx, x, weight, bias, opts, true);
}

function groupNormRun(
  ctx: GpuContext, x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, opts: GroupNormOptions, stats: boolean,
): NormWithStats {
  const N = x.shape[0], C = x.shape[1];
  if (N === undefined || C === undefined || C % opts.groups !== 0) {
    throw new Error(`groupNorm: expected x [N, C, ...] with C divisible by groups=${opts.groups}, found [${x.shape.join(', ')}]`);
  }
  for (const [name, t] of [['weight', weight], ['bias', bias]] as const) {
    if (t && t.size !== C) throw new Error(`groupNorm: expected ${name} [${C}], found [${t.shape.join(', ')}]`);
  }
  const S = x.shape.slice(2).reduce((a, d) => a * d, 1);
  const cg = C / opts.groups;
  const plan = planNorm('group', N * opts.groups, cg * S, S, cg, opts.groups, opts.eps,
    { hasWeight: weight !== undefined, hasBias: bias !== undefined, silu: opts.silu ?? false, ...(stats ? { stats } : {}), ...affineDtypes(weight, bias) },
    ctx.limits.maxComputeWorkgroupsPerDimension);
  return run(ctx, 'group_norm', x, weight, bias, plan, stats ? [N, opts.groups] : undefined);
}

/** Over the last dim D of x; weight, bias: [D]. */
export function layerNorm(ctx: GpuContext, x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number): Tensor {
  return layerNormRun(ctx, x, weight, bias, eps, false).y;
}

/** layerNorm plus the per-row mean and rstd [rows] (rows = numel / D) the backward needs. */
export function layerNormWithStats(ctx: GpuContext, x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number): NormWithStats {
  return layerNormRun(ctx, x, weight, bias, eps, true);
}

function layerNormRun(ctx: GpuContext, x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number, stats: boolean): NormWithStats {
  const D = x.shape[x.rank - 1];
  if (D === undefined || D === 0) throw new Error(`layerNorm: expected x [..., D] with D > 0, found [${x.shape.join(', ')}]`);
  for (const [name, t] of [['weight', weight], ['bias', bias]] as const) {
    if (t && t.size !== D) throw new Error(`layerNorm: expected ${name} [${D}], found [${t.shape.join(', ')}]`);
  }
  const plan = planNorm('layer', x.size / D, D, 1, 1, 1, eps,
    { hasWeight: weight !== undefined, hasBias: bias !== undefined, silu: false, ...(stats ? { stats } : {}), ...affineDtypes(weight, bias) },
    ctx.limits.maxComputeWorkgroupsPerDimension);
  return run(ctx, 'layer_norm', x, weight, bias, plan, stats ? [x.size / D] : undefined);
}
