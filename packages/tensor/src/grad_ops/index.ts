// The gradient ops: the ops backward functions call that no forward uses (input/weight/bias gradients of
// conv2d, the norms' backward from saved statistics, the flash-attention backward, ...). Like the core
// ops, every backend must run them: the CPU backend runs their float64 references, the WebGPU backend has
// a typed table of their kernels (@cnx/kernels webgpu/grad_kernels.ts), so a missing one is a type error.

import type { OpDefinition } from '../op_definition.js';
import { attentionBackwardOp, type AttentionBackwardParams } from './attention_backward.js';
import {
  conv2dBackwardBiasOp, conv2dBackwardInputOp, conv2dBackwardWeightOp, type Conv2dBackwardInputParams, type Conv2dBackwardWeightParams,
} from './conv2d_backward.js';
import { compareOp, softmaxBackwardOp, unaryBackwardOp, type CompareParams, type UnaryBackwardParams } from './elementwise_backward.js';
import { mseLossBackwardOp } from './mse_loss_backward.js';
import type { GroupNormBackwardParams } from '../cpu/norm_backward.js';
import { groupNormBackwardOp, layerNormBackwardOp } from './norm_backward.js';
import { adaptiveAvgPool2dBackwardOp, upsampleNearestBackwardOp, type ResampleBackwardParams } from './resample_backward.js';

/** Params of each gradient op, by op name. */
export interface GradOpParams {
  conv2d_backward_input: Conv2dBackwardInputParams;
  conv2d_backward_weight: Conv2dBackwardWeightParams;
  conv2d_backward_bias: Record<string, never>;
  group_norm_backward: GroupNormBackwardParams;
  layer_norm_backward: Record<string, never>;
  unary_backward: UnaryBackwardParams;
  softmax_backward: Record<string, never>;
  compare: CompareParams;
  attention_backward: AttentionBackwardParams;
  upsample_nearest_backward: ResampleBackwardParams;
  adaptive_avg_pool2d_backward: ResampleBackwardParams;
  mse_loss_backward: Record<string, never>;
}

export type GradOpName = keyof GradOpParams;

/** Every gradient op definition, by name. */
export const gradOps: { readonly [K in GradOpName]: OpDefinition<GradOpParams[K]> } = {
  conv2d_backward_input: conv2dBackwardInputOp,
  conv2d_backward_weight: conv2dBackwardWeightOp,
  conv2d_backward_bias: conv2dBackwardBiasOp,
  group_norm_backward: groupNormBackwardOp,
  layer_norm_backward: layerNormBackwardOp,
  unary_backward: unaryBackwardOp,
  softmax_backward: softmaxBackwardOp,
  compare: compareOp,
  attention_backward: attentionBackwardOp,
  upsample_nearest_backward: upsampleNearestBackwardOp,
  adaptive_avg_pool2d_backward: adaptiveAvgPool2dBackwardOp,
  mse_loss_backward: mseLossBackwardOp,
};

export * from './attention_backward.js';
export * from './conv2d_backward.js';
export * from './elementwise_backward.js';
export * from './mse_loss_backward.js';
export * from './norm_backward.js';
export * from './resample_backward.js';
