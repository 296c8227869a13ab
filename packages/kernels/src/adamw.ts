// AdamW as one fused update kernel per parameter group, and clip_grad_norm_, on the GPU.
//
//  - adamwStep(ctx, state, grad, step, h): one dispatch, one thread per element, in place on the f32
//    param, exp_avg and exp_avg_sq tensors (grad is read only). PyTorch 1.13's order
//    (torch/optim/adamw.py `_single_tensor_adamw`; the optim_adamw golden case's notes):
//      p <- p * (1 - lr*wd); m <- beta1 m + (1 - beta1) g; v <- beta2 v + (1 - beta2) g g;
//      p <- p - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),   bc1 = 1 - beta1^k, bc2 = 1 - beta2^k.
//    The per-step scalars (1 - lr*wd, lr/bc1, sqrt(bc2)) are float64 on the host (@cnx/tensor
//    adamwScalars, as torch's python floats) and reach the kernel as f32 uniforms, like torch passing
//    python scalars to f32 tensor ops. "One kernel per group": a group's params, grads and moments are
//    each one flat tensor (the parameters are views at offsets into it, and so are their gradients), so
//    one dispatch updates the whole group with that group's lr; groups are separate calls.
//  - clipGradNorm(ctx, grads, maxNorm): total = sqrt(sum over every grad of ||g||^2) (sum_squares.ts:
//    one partials dispatch per tensor into one buffer, one 'clip' finish), coef = min(max_norm /
//    (total + 1e-6), 1), then every grad is multiplied by coef in place (one dispatch per tensor; the
//    coefficient stays on the GPU). Returns [total, coef] as a [2] tensor (torch returns total).
// CPU reference: @cnx/tensor cpu/adamw.ts (float64).
// Limits: f32 contiguous tensors of equal size per group; numel < 2^32.

import { adamwScalars, type AdamWHyperparameters, type Tensor } from '@cnx/tensor';
import { gridFor, packUniforms, type GpuContext } from './webgpu/context.js';
import { partialCount, sumSquaresFinish, sumSquaresPartials } from './sum_squares.js';

export type { AdamWHyperparameters } from '@cnx/tensor';

const WG = 256;

export function wgslAdamw(): string {
  return /* wgsl */ `// AdamW update (torch 1.13 order), in place
struct U { n: u32, decay: f32, beta1: f32, omb1: f32, beta2: f32, omb2: f32, stepSize: f32, bc2Sqrt: f32,
           eps: f32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> P: array<f32>;
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read_write> M: array<f32>;
@group(0) @binding(3) var<storage, read_write> V: array<f32>;
@group(0) @binding(4) var<uniform> u: U;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let i = (wid.x + wid.y * nwg.x) * ${WG}u + tid;
  if (i >= u.n) { return; }
  let g = G[i];
  let p = P[i] * u.decay;
  let m = M[i] * u.beta1 + u.omb1 * g;
  let v = V[i] * u.beta2 + u.omb2 * g * g;
  let denom = sqrt(v) / u.bc2Sqrt + u.eps;
  P[i] = p - u.stepSize * m / denom;
  M[i] = m;
  V[i] = v;
}
`;
}

export function wgslScale(): string {
  return /* wgsl */ `// g *= coef (clip_grad_norm_), coef = Coef[1], in place
struct U { n: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> Gr: array<f32>;
@group(0) @binding(1) var<storage, read> Coef: array<f32>;
@group(0) @binding(2) var<uniform> u: U;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let i = (wid.x + wid.y * nwg.x) * ${WG}u + tid;
  if (i >= u.n) { return; }
  Gr[i] = Gr[i] * Coef[1];
}
`;
}

/** The optimizer state of one parameter group: flat f32 tensors of equal size, updated in place. */
export interface AdamWGroupState {
  param: Tensor;
  expAvg: Tensor;
  expAvgSq: Tensor;
}

/** One AdamW step (step count `step`, 1 on the first step) on a group, in place; one dispatch. */
export function adamwStep(ctx: GpuContext, state: AdamWGroupState, grad: Tensor, step: number, h: AdamWHyperparameters): void {
  const n = state.param.size;
  for (const [name, t] of [['param', state.param], ['grad', grad], ['exp_avg', state.expAvg], ['exp_avg_sq', state.expAvgSq]] as const) {
    if (t.dtype !== 'f32' || t.size !== n || !t.isContiguous || t.offset !== 0) {
      throw new Error(`adamwStep: expected contiguous f32 ${name} of ${n} elements (the param's), found ${t.dtype} [${t.shape.join(', ')}]`);
    }
  }
  if (n === 0) return;
  const s = adamwScalars(step, h);
  ctx.dispatch({
    label: 'adamw_step', code: wgslAdamw(), bindings: [state.param, grad, state.expAvg, state.expAvgSq],
    uniforms: packUniforms([
      ['u32', n], ['f32', s.decay], ['f32', h.beta1], ['f32', 1 - h.beta1], ['f32', h.beta2], ['f32', 1 - h.beta2],
      ['f32', s.stepSize], ['f32', s.bc2Sqrt], ['f32', h.eps], ['u32', 0], ['u32', 0], ['u32', 0],
    ]),
    workgroups: gridFor(Math.ceil(n / WG), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}

/**
 * clip_grad_norm_(grads, maxNorm) with norm_type 2 over every tensor in `grads` (all groups): scales
 * them in place and returns a [2] tensor (total norm before clipping, the coefficient applied).
 */
export function clipGradNorm(ctx: GpuContext, grads: readonly Tensor[], maxNorm: number): Tensor {
  if (!(maxNorm > 0)) throw new Error(`clipGradNorm: expected max_norm > 0, found ${maxNorm}`);
  for (const [i, g] of grads.entries()) {
    if (g.dtype !== 'f32' || !g.isContiguous || g.offset !== 0) {
      throw new Error(`clipGradNorm: expected contiguous f32 gradients, grads[${i}] is ${g.dtype} [${g.shape.join(', ')}]`);
    }
  }
  const total = grads.reduce((s, g) => s + partialCount(g.size), 0);
  const parts = ctx.empty([Math.max(1, total)]);
  const out = ctx.empty([2]);
  let offset = 0;
  for (const g of grads) offset += sumSquaresPartials(ctx, g, undefined, parts, offset);
  sumSquaresFinish(ctx, parts, total, out, 'clip', maxNorm);
  for (const g of grads) {
    if (g.size === 0) continue;
    ctx.dispatch({
      label: 'clip_grad_scale', code: wgslScale(), bindings: [g, out],
      uniforms: packUniforms([['u32', g.size], ['u32', 0], ['u32', 0], ['u32', 0]]),
      workgroups: gridFor(Math.ceil(g.size / WG), ctx.limits.maxComputeWorkgroupsPerDimension),
    });
  }
  parts.dispose();
  return out;
}
