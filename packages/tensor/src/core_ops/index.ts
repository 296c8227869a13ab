// The core ops: the ones every backend must run. A backend with its own implementations lists them in a
// table typed by CoreOpParams (so a missing core op is a type error there, see @cnx/kernels
// webgpu/core_kernels.ts); everything else it runs through the definitions' `kernels` entries or, for
// host-memory backends, their CPU references. Extension ops (cross normalisation, GEGLU, the timestep
// embedding, user ops) are definitions in the packages that own them.

import type { OpDefinition } from '../op_definition.js';
import { concatOp, type ConcatParams } from './concat.js';
import { conv2dOp, type Conv2dParams } from './conv2d.js';
import { affineOp, binaryOp, unaryOp, type AffineParams, type BinaryParams, type UnaryParams } from './elementwise.js';
import { attentionOp, type AttentionParams } from './attention.js';
import { matmulOp, type MatmulParams } from './matmul.js';
import { groupNormOp, layerNormOp, type GroupNormParams, type LayerNormParams } from './norm.js';
import { mseLossOp } from './loss.js';
import { reduceOp, softmaxOp, type ReduceParams } from './reduce.js';
import { adaptiveAvgPool2dOp, upsampleNearestOp, type ResizeParams } from './resample.js';
import { adamwStepOp, clipGradNormOp, type AdamwStepParams, type ClipGradNormParams } from './optim.js';

/** Params of each core op, by op name. */
export interface CoreOpParams {
  unary: UnaryParams;
  affine: AffineParams;
  binary: BinaryParams;
  reduce: ReduceParams;
  softmax: Record<string, never>;
  matmul: MatmulParams;
  conv2d: Conv2dParams;
  attention: AttentionParams;
  group_norm: GroupNormParams;
  layer_norm: LayerNormParams;
  upsample_nearest: ResizeParams;
  adaptive_avg_pool2d: ResizeParams;
  concat: ConcatParams;
  adamw_step: AdamwStepParams;
  clip_grad_norm: ClipGradNormParams;
  mse_loss: Record<string, never>;
}

export type CoreOpName = keyof CoreOpParams;

/** Every core op definition, by name. */
export const coreOps: { readonly [K in CoreOpName]: OpDefinition<CoreOpParams[K]> } = {
  unary: unaryOp,
  affine: affineOp,
  binary: binaryOp,
  reduce: reduceOp,
  softmax: softmaxOp,
  matmul: matmulOp,
  conv2d: conv2dOp,
  attention: attentionOp,
  group_norm: groupNormOp,
  layer_norm: layerNormOp,
  upsample_nearest: upsampleNearestOp,
  adaptive_avg_pool2d: adaptiveAvgPool2dOp,
  concat: concatOp,
  adamw_step: adamwStepOp,
  clip_grad_norm: clipGradNormOp,
  mse_loss: mseLossOp,
};

export * from './attention.js';
export * from './concat.js';
export * from './conv2d.js';
export * from './elementwise.js';
export * from './loss.js';
export * from './matmul.js';
export * from './norm.js';
export * from './reduce.js';
export * from './resample.js';
export * from './optim.js';
