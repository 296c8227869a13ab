// Group normalisation and layer normalisation: normalise contiguous segments of a tensor.
//
//  - groupNorm: x [N, C, ...spatial] (any number of spatial dims, including none), G groups. Segment
//    (n, g) is the contiguous run x[n, g*Cg:(g+1)*Cg, ...] of len = Cg*S elements (Cg = C/G, S = spatial
//    size). y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c], optionally followed by SiLU
//    (diffusers ResnetBlock2D: norm1 -> nonlinearity). torch.nn.functional.group_norm semantics.
//  - layerNorm: x [..., D]; segment = one row of D; weight, bias [D]. torch.nn.functional.layer_norm.
// Both use the biased variance (divide by len), as torch does; semantics: CpuBackend.groupNorm/layerNorm.
//
// One workgroup per segment (grid split over x/y past 65535 segments). Statistics are f32 with a
// shifted two-pass reduction: every element is first shifted by a pilot value K = the segment's first
// element, then pass 1 sums d = x - K (-> dmean), pass 2 sums (d - dmean)^2 (-> var), pass 3 writes
// ((x - K) - dmean) * rstd * w + b. The shift keeps the partial sums at the scale of the spread rather
// than the offset, so features like 1e3 + N(0, 1) keep full precision (a plain f32 sum of 40 960 values
// of 1e3 loses ~1e-4 in the mean); the segment is read three times, which stays in cache (a SD1.5 group
// at 64x64 latents is 10 channels * 4096 = 160 KiB).
// Workgroup size: 256 for group norm (segments of 10^3-10^5 elements); for layer norm a power of two
// near D/8 in [32, 256] (rows of 32-1280+ elements).
// Limits: f32 tensors (ops.ts guarantees contiguous f32 inputs).

import type { GroupNormOptions, Tensor } from '@cnx/tensor';
import { gridFor, packUniforms, type GpuContext } from './webgpu/context.js';

export interface NormParams {
  kind: 'group' | 'layer';
  /** Threads per workgroup (a power of two). */
  wg: number;
  hasWeight: boolean;
  hasBias: boolean;
  silu: boolean;
}

export function wgsl(p: NormParams): string {
  if (p.wg & (p.wg - 1)) throw new Error(`norm: workgroup size ${p.wg} is not a power of two`);
  let b = 1;
  const wBinding = p.hasWeight ? b++ : -1;
  const bBinding = p.hasBias ? b++ : -1;
  const yBinding = b++;
  const uBinding = b;
  // Index of the affine parameter for element i of segment seg.
  const param = p.kind === 'group' ? '(seg % u.groups) * u.cg + i / u.s' : 'i';
  let y = '((X[base + i] - pilot) - dmean) * rstd';
  if (p.hasWeight) y = `${y} * Wt[${param}]`;
  if (p.hasBias) y = `${y} + Bias[${param}]`;
  return /* wgsl */ `
struct U { segments: u32, len: u32, s: u32, cg: u32, groups: u32, eps: f32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> X: array<f32>;
${p.hasWeight ? `@group(0) @binding(${wBinding}) var<storage, read> Wt: array<f32>;` : ''}
${p.hasBias ? `@group(0) @binding(${bBinding}) var<storage, read> Bias: array<f32>;` : ''}
@group(0) @binding(${yBinding}) var<storage, read_write> Y: array<f32>;
@group(0) @binding(${uBinding}) var<uniform> u: U;

const WG = ${p.wg}u;
var<workgroup> red: array<f32, WG>;

// Tree sum over the workgroup; every thread gets the total.
fn workgroupSum(v: f32, tid: u32) -> f32 {
  red[tid] = v;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (tid < stride) { red[tid] = red[tid] + red[tid + stride]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}

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
  let rstd = 1.0 / sqrt(workgroupSum(acc, tid) / n + u.eps);
  for (var i = tid; i < u.len; i += WG) {
    let y = ${y};
    Y[base + i] = ${p.silu ? 'y / (1.0 + exp(-y))' : 'y'};
  }
}
`;
}

export interface NormPlan {
  params: NormParams;
  uniforms: ArrayBuffer;
  workgroups: [number, number];
}

function layerNormWorkgroup(d: number): number {
  let wg = 32;
  while (wg < 256 && wg * 8 < d) wg *= 2;
  return wg;
}

export function planNorm(
  kind: 'group' | 'layer', segments: number, len: number, s: number, cg: number, groups: number, eps: number,
  flags: { hasWeight: boolean; hasBias: boolean; silu: boolean }, maxPerDim = 65535,
): NormPlan {
  const wg = kind === 'group' ? 256 : layerNormWorkgroup(len);
  const uniforms = packUniforms([
    ['u32', segments], ['u32', len], ['u32', s], ['u32', cg], ['u32', groups], ['f32', eps], ['u32', 0], ['u32', 0],
  ]);
  return { params: { kind, wg, ...flags }, uniforms, workgroups: gridFor(segments, maxPerDim) };
}

function run(ctx: GpuContext, label: string, x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, plan: NormPlan): Tensor {
  const y = ctx.empty(x.shape);
  if (y.size === 0) return y;
  const bindings: Tensor[] = [x];
  if (weight) bindings.push(weight);
  if (bias) bindings.push(bias);
  bindings.push(y);
  ctx.dispatch({ label, code: wgsl(plan.params), bindings, uniforms: plan.uniforms, workgroups: plan.workgroups });
  return y;
}

/** x: [N, C, ...spatial]; weight, bias: [C]. */
export function groupNorm(ctx: GpuContext, x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, opts: GroupNormOptions): Tensor {
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
    { hasWeight: weight !== undefined, hasBias: bias !== undefined, silu: opts.silu ?? false },
    ctx.limits.maxComputeWorkgroupsPerDimension);
  return run(ctx, 'group_norm', x, weight, bias, plan);
}

/** Over the last dim D of x; weight, bias: [D]. */
export function layerNorm(ctx: GpuContext, x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number): Tensor {
  const D = x.shape[x.rank - 1];
  if (D === undefined || D === 0) throw new Error(`layerNorm: expected x [..., D] with D > 0, found [${x.shape.join(', ')}]`);
  for (const [name, t] of [['weight', weight], ['bias', bias]] as const) {
    if (t && t.size !== D) throw new Error(`layerNorm: expected ${name} [${D}], found [${t.shape.join(', ')}]`);
  }
  const plan = planNorm('layer', x.size / D, D, 1, 1, 1, eps,
    { hasWeight: weight !== undefined, hasBias: bias !== undefined, silu: false },
    ctx.limits.maxComputeWorkgroupsPerDimension);
  return run(ctx, 'layer_norm', x, weight, bias, plan);
}
