// The WebGPU implementation of every gradient op (@cnx/tensor grad_ops/), as a table typed by
// GradOpParams (a gradient op without a kernel here is a type error), adapting each op's (inputs, params)
// to its backward kernel family (conv2d_backward.ts, norm_backward.ts, attention_backward.ts, ...).

import type { GradOpName, GradOpParams, Tensor } from '@cnx/tensor';
import { attentionBackward } from '../attention_backward.js';
import { conv2dBackwardBias, conv2dBackwardInput, conv2dBackwardWeight } from '../conv2d_backward.js';
import { softmaxBackward, unaryBackward } from '../elementwise_backward.js';
import { mseLossBackward } from '../mse_loss.js';
import { groupNormBackward, layerNormBackward, type NormGrads } from '../norm_backward.js';
import { adaptiveAvgPool2dBackward, upsampleNearestBackward } from '../resample_backward.js';
import type { WebgpuKernel } from './core_kernels.js';
import { compare } from './elementwise.js';

/** dx, then dweight and dbias where the forward had them (the gradient ops' output order). */
function normOutputs(r: NormGrads): Tensor[] {
  return [r.dx, ...(r.dweight ? [r.dweight] : []), ...(r.dbias ? [r.dbias] : [])];
}

export const gradKernels: { readonly [K in GradOpName]: WebgpuKernel<GradOpParams[K]> } = {
  conv2d_backward_input: (ctx, [dy, w], p) => [conv2dBackwardInput(ctx, dy!, w!, p.inputShape, p)],
  conv2d_backward_weight: (ctx, [x, dy], p) => [conv2dBackwardWeight(ctx, x!, dy!, p.weightShape, p)],
  conv2d_backward_bias: (ctx, [dy]) => [conv2dBackwardBias(ctx, dy!)],
  group_norm_backward: (ctx, [x, dy, mean, rstd, w, b], p) => normOutputs(groupNormBackward(ctx, x!, dy!, mean!, rstd!, w, b, p)),
  layer_norm_backward: (ctx, [x, dy, mean, rstd, w, b]) => normOutputs(layerNormBackward(ctx, x!, dy!, mean!, rstd!, w, b)),
  unary_backward: (ctx, [x, dy], p) => [unaryBackward(ctx, p.op, x!, dy!)],
  softmax_backward: (ctx, [y, dy]) => [softmaxBackward(ctx, y!, dy!)],
  compare: (ctx, [a, b], p) => [compare(ctx, p.op, a!, b!)],
  attention_backward: (ctx, [q, k, v, o, dO, lse], p) => {
    const r = attentionBackward(ctx, q!, k!, v!, o!, dO!, lse!, { scale: p.scale, causal: p.causal });
    return [r.dq, r.dk, r.dv];
  },
  upsample_nearest_backward: (ctx, [dy], p) => [upsampleNearestBackward(ctx, dy!, [dy!.shape[0]!, dy!.shape[1]!, ...p.inputSize])],
  adaptive_avg_pool2d_backward: (ctx, [dy], p) => [adaptiveAvgPool2dBackward(ctx, dy!, [dy!.shape[0]!, dy!.shape[1]!, ...p.inputSize])],
  mse_loss_backward: (ctx, [pred, target, gy]) => {
    const r = mseLossBackward(ctx, pred!, target!, gy!);
    return [r.dpred, r.dtarget];
  },
};
