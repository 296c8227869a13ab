// The mean-squared-error loss, F.mse_loss(pred, target, reduction='mean'), forward and backward.
//
//  - mseLoss(pred, target) -> [1]: mean((pred - target)^2), as sum_squares.ts partials of pred - target
//    and a 'mean' finish (scale 1/numel). CPU reference: @cnx/tensor mseLoss.
//  - mseLossBackward(pred, target, gy) -> dpred, dtarget: dpred = gy * 2 (pred - target) / numel and
//    dtarget = -dpred, one thread per element writing both; gy is the upstream gradient as a [1] tensor
//    (read on the GPU, no round trip; 1 for a loss that is differentiated directly).
// Limits: f32 contiguous tensors of one shape; numel < 2^32.

import type { Tensor } from '@cnx/tensor';
import { gridFor, packUniforms, type GpuContext } from './webgpu/context.js';
import { partialCount, sumSquaresFinish, sumSquaresPartials } from './sum_squares.js';

const WG = 256;

export function wgslBackward(): string {
  return /* wgsl */ `// mse_loss(mean) backward: dpred = gy * 2 (pred - target) / n, dtarget = -dpred
struct U { n: u32, scale: f32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> P: array<f32>;
@group(0) @binding(1) var<storage, read> T: array<f32>;
@group(0) @binding(2) var<storage, read> GY: array<f32>;
@group(0) @binding(3) var<storage, read_write> DP: array<f32>;
@group(0) @binding(4) var<storage, read_write> DT: array<f32>;
@group(0) @binding(5) var<uniform> u: U;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let i = (wid.x + wid.y * nwg.x) * ${WG}u + tid;
  if (i >= u.n) { return; }
  let d = GY[0] * u.scale * (P[i] - T[i]);
  DP[i] = d;
  DT[i] = -d;
}
`;
}

function check(op: string, pred: Tensor, target: Tensor): void {
  if (pred.dtype !== 'f32' || target.dtype !== 'f32' || pred.rank !== target.rank || pred.shape.some((d, i) => d !== target.shape[i]) || pred.size === 0) {
    throw new Error(`${op}: expected non-empty f32 pred and target of one shape, found ${pred.dtype} [${pred.shape.join(', ')}] and ` +
      `${target.dtype} [${target.shape.join(', ')}]`);
  }
}

/** mean((pred - target)^2) as a [1] tensor. */
export function mseLoss(ctx: GpuContext, pred: Tensor, target: Tensor): Tensor {
  check('mseLoss', pred, target);
  const parts = ctx.empty([partialCount(pred.size)]);
  const out = ctx.empty([1]);
  const count = sumSquaresPartials(ctx, pred, target, parts, 0);
  sumSquaresFinish(ctx, parts, count, out, 'mean', 1 / pred.size);
  parts.dispose();
  return out;
}

/** Gradients of gy * mseLoss(pred, target); gy: a [1] tensor. */
export function mseLossBackward(ctx: GpuContext, pred: Tensor, target: Tensor, gy: Tensor): { dpred: Tensor; dtarget: Tensor } {
  check('mseLossBackward', pred, target);
  if (gy.size !== 1 || gy.dtype !== 'f32') throw new Error(`mseLossBackward: expected an f32 gy of one element, found ${gy.dtype} [${gy.shape.join(', ')}]`);
  const dpred = ctx.empty(pred.shape), dtarget = ctx.empty(pred.shape);
  ctx.dispatch({
    label: 'mse_loss_backward', code: wgslBackward(), bindings: [pred, target, gy, dpred, dtarget],
    uniforms: packUniforms([['u32', pred.size], ['f32', 2 / pred.size], ['u32', 0], ['u32', 0]]),
    workgroups: gridFor(Math.ceil(pred.size / WG), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
  return { dpred, dtarget };
}
