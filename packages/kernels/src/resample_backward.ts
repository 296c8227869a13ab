// Backward of the spatial resampling ops of resample.ts, in gather form: one thread per INPUT element
// sums the output gradients of the cells that read it, so there are no atomics and no scatter.
// dy [N, C, Ho, Wo] -> dx [N, C, H, W]. CPU reference: @cnx/tensor cpu/resample_backward.ts.
//
//  - 'adaptive_avg': output (oy, ox) averaged rows [floor(oy*H/Ho), ceil((oy+1)*H/Ho)) and columns
//    likewise, so input row iy lies in bins oy = floor(iy*Ho/H) .. min(Ho-1, floor(((iy+1)*Ho - 1)/H))
//    (overlapping when H % Ho != 0); dx = sum over those bins of dy / (bin height * bin width).
//  - 'nearest': output o read input src(o) = min(floor(f32(o) * f32(in/out)), in - 1), the forward's
//    float32 rule (WGSL's f32 product is correctly rounded, as torch's). src is non-decreasing, so the
//    outputs reading input i form one run: the thread starts from the estimate floor(i*out/in), steps
//    back while src(o - 1) >= i and forward while src(o) < i, then sums while src(o) == i. Inputs that no
//    output reads (fewer outputs than inputs) get 0.
// Sums are f32 over at most (ceil(Ho/H) + 1) * (ceil(Wo/W) + 1) terms.
// Limits: f32 contiguous tensors; N*C*H*W < 2^32; the flat grid splits over x/y past 65535 workgroups.

import type { Tensor } from '@cnx/tensor';
import { gridFor, packUniforms, type GpuContext } from './webgpu/context.js';

const WG = 256;

export interface ResampleBackwardParams {
  kind: 'nearest' | 'adaptive_avg';
}

export function wgsl(p: ResampleBackwardParams): string {
  const body = p.kind === 'adaptive_avg'
    ? `  let y0 = (iy * u.ho) / u.h;
  let y1 = min(u.ho - 1u, ((iy + 1u) * u.ho - 1u) / u.h);
  let x0 = (ix * u.wo) / u.w;
  let x1 = min(u.wo - 1u, ((ix + 1u) * u.wo - 1u) / u.w);
  var s = 0.0;
  for (var oy = y0; oy <= y1; oy++) {
    let rows = f32(((oy + 1u) * u.h + u.ho - 1u) / u.ho - (oy * u.h) / u.ho);
    for (var ox = x0; ox <= x1; ox++) {
      let cols = f32(((ox + 1u) * u.w + u.wo - 1u) / u.wo - (ox * u.w) / u.wo);
      s += DY[(nc * u.ho + oy) * u.wo + ox] / (rows * cols);
    }
  }
  DX[idx] = s;`
    : `  let ry = run(iy, u.h, u.ho, u.scaleY);
  let rx = run(ix, u.w, u.wo, u.scaleX);
  var s = 0.0;
  for (var oy = ry.x; oy < ry.y; oy++) {
    for (var ox = rx.x; ox < rx.y; ox++) { s += DY[(nc * u.ho + oy) * u.wo + ox]; }
  }
  DX[idx] = s;`;
  const helpers = p.kind === 'nearest'
    ? /* wgsl */ `
// torch 'nearest' source of output o
fn src(o: u32, n: u32, scale: f32) -> u32 { return min(u32(floor(f32(o) * scale)), n - 1u); }
// [start, end) of the outputs whose source is input i
fn run(i: u32, n: u32, out: u32, scale: f32) -> vec2<u32> {
  var o = min((i * out) / n, out);
  loop {
    if (o == 0u || src(o - 1u, n, scale) < i) { break; }
    o--;
  }
  loop {
    if (o >= out || src(o, n, scale) >= i) { break; }
    o++;
  }
  var e = o;
  loop {
    if (e >= out || src(e, n, scale) != i) { break; }
    e++;
  }
  return vec2<u32>(o, e);
}`
    : '';
  return /* wgsl */ `// ${p.kind} backward (gather: one thread per input element)
struct U { total: u32, h: u32, w: u32, ho: u32, wo: u32, scaleY: f32, scaleX: f32, pad0: u32 }
@group(0) @binding(0) var<storage, read> DY: array<f32>;
@group(0) @binding(1) var<storage, read_write> DX: array<f32>;
@group(0) @binding(2) var<uniform> u: U;
${helpers}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let idx = (wid.x + wid.y * nwg.x) * ${WG}u + tid;
  if (idx >= u.total) { return; }
  let ix = idx % u.w;
  let iy = (idx / u.w) % u.h;
  let nc = idx / (u.w * u.h);
${body}
}
`;
}

function run(ctx: GpuContext, kind: ResampleBackwardParams['kind'], dy: Tensor, xShape: readonly number[]): Tensor {
  const op = kind === 'nearest' ? 'upsampleNearestBackward' : 'adaptiveAvgPool2dBackward';
  const [N, C, H, W] = xShape as [number, number, number, number];
  if (xShape.length !== 4 || dy.rank !== 4 || dy.shape[0] !== N || dy.shape[1] !== C || !(H > 0 && W > 0) || dy.dtype !== 'f32') {
    throw new Error(`${op}: expected x [N, C, H, W] and f32 dy [N, C, Ho, Wo] with the same N, C, found x [${xShape.join(', ')}], ` +
      `dy ${dy.dtype} [${dy.shape.join(', ')}]`);
  }
  const [Ho, Wo] = [dy.shape[2]!, dy.shape[3]!];
  const dx = ctx.empty(xShape);
  if (dx.size === 0) return dx;
  if (Ho === 0 || Wo === 0) throw new Error(`${op}: dy [${dy.shape.join(', ')}] has an empty spatial dim`);
  const uniforms = packUniforms([
    ['u32', dx.size], ['u32', H], ['u32', W], ['u32', Ho], ['u32', Wo],
    // the forward's scale = float32(in / out) (resample.ts)
    ['f32', Math.fround(H / Ho)], ['f32', Math.fround(W / Wo)], ['u32', 0],
  ]);
  ctx.dispatch({
    label: `${kind}_backward`, code: wgsl({ kind }), bindings: [dy, dx], uniforms,
    workgroups: gridFor(Math.ceil(dx.size / WG), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
  return dx;
}

/** dx [N, C, H, W] of adaptive_avg_pool2d(x, [Ho, Wo]) from dy [N, C, Ho, Wo]. */
export function adaptiveAvgPool2dBackward(ctx: GpuContext, dy: Tensor, xShape: readonly number[]): Tensor {
  return run(ctx, 'adaptive_avg', dy, xShape);
}

/** dx [N, C, H, W] of upsample_nearest(x, [Ho, Wo]) from dy [N, C, Ho, Wo]. */
export function upsampleNearestBackward(ctx: GpuContext, dy: Tensor, xShape: readonly number[]): Tensor {
  return run(ctx, 'nearest', dy, xShape);
}
