// The optimizer's core ops, both IN PLACE (op_definition.ts `inPlace`): they overwrite a parameter
// group's flat f32 storages, so every parameter view into them (and every gradient view) sees the update.
//
//  - adamw_step: one AdamW step of torch 1.13 (torch/optim/adamw.py `_single_tensor_adamw`) on flat
//    tensors param, grad, exp_avg, exp_avg_sq [n]; writes param, exp_avg, exp_avg_sq. The reference is
//    cpu/adamw.ts (float64 per element, rounded once to f32); the WebGPU kernel is @cnx/kernels adamw.ts
//    (one dispatch per call, so one per parameter group when the group is one flat storage).
//  - clip_grad_norm: torch.nn.utils.clip_grad_norm_ (torch/nn/utils/clip_grad.py, norm_type 2) over k
//    flat gradient tensors (one per group, all groups together): outputs [2] = (total norm before
//    clipping, coefficient applied), then each gradient scaled in place by the coefficient.
//    The coefficient min(max_norm / (total + 1e-6), 1) is stored as f32 and the gradients are multiplied
//    by that f32 value, as torch does (its clip_coef is an f32 tensor); the norm accumulates in float64.

import { adamwStep, clipCoefficient, gradNorm } from '../cpu/adamw.js';
import { defineOp, expectF32, f32 } from '../op_definition.js';
import { formatShape } from '../shape.js';

export interface AdamwStepParams {
  /** Step count after incrementing (1 on the first step). */
  step: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export interface ClipGradNormParams {
  maxNorm: number;
}

/** Inputs [param, grad, exp_avg, exp_avg_sq], each f32 [n]; outputs the new [param, exp_avg, exp_avg_sq] in place. */
export const adamwStepOp = defineOp<AdamwStepParams>({
  name: 'adamw_step',
  inPlace: () => [0, 2, 3],
  outputs(inputs, p) {
    const names = ['param', 'grad', 'exp_avg', 'exp_avg_sq'];
    expectF32('adamw_step', inputs, names);
    const [param] = inputs;
    if (inputs.length !== 4 || !param || param.shape.length !== 1) {
      throw new Error(`adamw_step: expected 4 flat f32 tensors (param, grad, exp_avg, exp_avg_sq), found ` +
        inputs.map((x) => (x ? formatShape(x.shape) : 'none')).join(', '));
    }
    inputs.forEach((x, i) => {
      if (!x || x.shape.length !== 1 || x.shape[0] !== param.shape[0]) {
        throw new Error(`adamw_step: expected ${names[i]} [${param.shape[0]}] (the param's size), found ${x ? formatShape(x.shape) : 'none'}`);
      }
    });
    if (!Number.isInteger(p.step) || p.step < 1) throw new Error(`adamw_step: expected a step count >= 1, found ${p.step}`);
    return f32(param.shape, param.shape, param.shape);
  },
  cpu([param, grad, expAvg, expAvgSq], p) {
    const r = adamwStep(
      { param: param!.data as Float32Array, expAvg: expAvg!.data as Float32Array, expAvgSq: expAvgSq!.data as Float32Array },
      grad!.data as Float32Array, p.step, p,
    );
    return [r.param, r.expAvg, r.expAvgSq];
  },
});

/** Inputs k flat f32 gradients; outputs [2] (total norm, coefficient) and the k scaled gradients in place. */
export const clipGradNormOp = defineOp<ClipGradNormParams>({
  name: 'clip_grad_norm',
  inPlace: (k) => [undefined, ...Array.from({ length: k }, (_, i) => i)],
  outputs(grads, { maxNorm }) {
    if (grads.length === 0) throw new Error('clip_grad_norm: no gradients');
    if (!(maxNorm > 0)) throw new Error(`clip_grad_norm: expected max_norm > 0, found ${maxNorm}`);
    expectF32('clip_grad_norm', grads);
    grads.forEach((g, i) => {
      if (!g || g.shape.length !== 1) throw new Error(`clip_grad_norm: expected flat gradients, gradient ${i} is ${g ? formatShape(g.shape) : 'missing'}`);
    });
    return f32([2], ...grads.map((g) => g!.shape));
  },
  cpu(grads, { maxNorm }) {
    const data = grads.map((g) => g!.data as Float32Array);
    const total = gradNorm(data);
    const coef = Math.fround(clipCoefficient(total, maxNorm));
    return [Float32Array.of(total, coef), ...data.map((g) => g.map((v) => v * coef))];
  },
});
