// Spatial resampling of NCHW maps: nearest upsampling and adaptive average pooling.
//
//  - upsampleNearest: x [N, C, H, W] -> y [N, C, Ho, Wo], torch 'nearest' (F.interpolate(mode='nearest')):
//    src = min(floor(dst * scale), in - 1) with scale = float32(in / out) and the product rounded to f32,
//    exactly as torch computes it (so non-integer ratios pick the same source pixels as torch).
//    Serves diffusers Upsample2D (2x, or an explicit upsample_size when skip shapes are odd).
//  - adaptiveAvgPool2d: x [N, C, H, W] -> y [N, C, Ho, Wo]; output (i, j) averages rows
//    [floor(i*H/Ho), ceil((i+1)*H/Ho)) and columns [floor(j*W/Wo), ceil((j+1)*W/Wo)) (torch's bins;
//    divisible and non-divisible sizes, and Ho > H). ControlNeXt pools its control map to the feature size.
// Semantics: CpuBackend.upsampleNearest / adaptiveAvgPool2d (packages/tensor/src/cpu/cpu_backend.ts).
//
// One thread per output element, consecutive threads on consecutive output columns (coalesced stores;
// reads of neighbouring rows share cache lines). The flat index is split over x/y past 65535 workgroups.
// Pooling sums its bin in f32 (bins are small: SD's control pooling averages 8x8 to 64x64 windows).
// Limits: f32 tensors; N*C*Ho*Wo < 2^32.

import type { Tensor } from '@cnx/tensor';
import { gridFor, packUniforms, type GpuContext } from './webgpu/context.js';

export interface ResampleParams {
  kind: 'nearest' | 'adaptive_avg';
  wg: number;
}

export function wgsl(p: ResampleParams): string {
  const body = p.kind === 'nearest'
    ? `  let iy = min(u32(floor(f32(oy) * u.scaleY)), u.h - 1u);
  let ix = min(u32(floor(f32(ox) * u.scaleX)), u.w - 1u);
  Y[idx] = X[(nc * u.h + iy) * u.w + ix];`
    : `  let y0 = (oy * u.h) / u.ho;
  let y1 = ((oy + 1u) * u.h + u.ho - 1u) / u.ho;
  let x0 = (ox * u.w) / u.wo;
  let x1 = ((ox + 1u) * u.w + u.wo - 1u) / u.wo;
  var s = 0.0;
  for (var y = y0; y < y1; y++) {
    let row = (nc * u.h + y) * u.w;
    for (var x = x0; x < x1; x++) { s += X[row + x]; }
  }
  Y[idx] = s / f32((y1 - y0) * (x1 - x0));`;
  return /* wgsl */ `
struct U { total: u32, h: u32, w: u32, ho: u32, wo: u32, scaleY: f32, scaleX: f32, pad0: u32 }
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@group(0) @binding(2) var<uniform> u: U;

@compute @workgroup_size(${p.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let idx = (wid.x + wid.y * nwg.x) * ${p.wg}u + tid;
  if (idx >= u.total) { return; }
  let ox = idx % u.wo;
  let oy = (idx / u.wo) % u.ho;
  let nc = idx / (u.wo * u.ho);
${body}
}
`;
}

export interface ResamplePlan {
  params: ResampleParams;
  outShape: [number, number, number, number];
  uniforms: ArrayBuffer;
  workgroups: [number, number];
}

export function planResample(kind: ResampleParams['kind'], inShape: readonly number[], size: readonly [number, number], maxPerDim = 65535): ResamplePlan {
  const [N, C, H, W] = inShape as [number, number, number, number];
  const [Ho, Wo] = size;
  const op = kind === 'nearest' ? 'upsampleNearest' : 'adaptiveAvgPool2d';
  if (inShape.length !== 4 || !(Ho > 0 && Wo > 0) || !Number.isInteger(Ho) || !Number.isInteger(Wo)) {
    throw new Error(`${op}: expected x [N, C, H, W] and a positive integer size, found x [${inShape.join(', ')}], size [${size.join(', ')}]`);
  }
  if (H === 0 || W === 0) throw new Error(`${op}: input [${inShape.join(', ')}] has an empty spatial dim`);
  const total = N * C * Ho * Wo;
  const wg = 256;
  const uniforms = packUniforms([
    ['u32', total], ['u32', H], ['u32', W], ['u32', Ho], ['u32', Wo],
    // torch: scale = (float)in / out, as in cpu_backend.ts (Math.fround(H / Ho))
    ['f32', Math.fround(H / Ho)], ['f32', Math.fround(W / Wo)], ['u32', 0],
  ]);
  return { params: { kind, wg }, outShape: [N, C, Ho, Wo], uniforms, workgroups: gridFor(Math.ceil(total / wg), maxPerDim) };
}

function run(ctx: GpuContext, x: Tensor, plan: ResamplePlan): Tensor {
  const y = ctx.empty(plan.outShape);
  if (y.size === 0) return y;
  ctx.dispatch({ label: plan.params.kind, code: wgsl(plan.params), bindings: [x, y], uniforms: plan.uniforms, workgroups: plan.workgroups });
  return y;
}

/** x: [N, C, H, W] -> [N, C, size[0], size[1]], torch 'nearest'. */
export function upsampleNearest(ctx: GpuContext, x: Tensor, size: readonly [number, number]): Tensor {
  return run(ctx, x, planResample('nearest', x.shape, size, ctx.limits.maxComputeWorkgroupsPerDimension));
}

/** x: [N, C, H, W] -> [N, C, size[0], size[1]], torch adaptive_avg_pool2d bins. */
export function adaptiveAvgPool2d(ctx: GpuContext, x: Tensor, size: readonly [number, number]): Tensor {
  return run(ctx, x, planResample('adaptive_avg', x.shape, size, ctx.limits.maxComputeWorkgroupsPerDimension));
}
