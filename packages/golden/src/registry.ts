// Runner kinds, keyed by case.json's `runner` field. One file per kind under runners/; adding a kind is
// one import and one entry here.

import type { Runner } from './golden_case.js';
import { opLinear } from './runners/op_linear.js';
import { opSoftmax } from './runners/op_softmax.js';
import { opConv2d } from './runners/op_conv2d.js';
import { opGroupNorm } from './runners/op_group_norm.js';
import { opLayerNorm } from './runners/op_layer_norm.js';
import { opCrossNorm } from './runners/op_cross_norm.js';
import { opUpsample } from './runners/op_upsample.js';
import { opAdaptiveAvgPool } from './runners/op_adaptive_avg_pool.js';
import { opAttention } from './runners/op_attention.js';
import { opTimestepEmbedding } from './runners/op_timestep_embedding.js';
import { opGegluFf } from './runners/op_geglu_ff.js';
import { unetRunner } from './runners/unet.js';
import { vaeRunner } from './runners/vae.js';
import { schedulerRunner } from './runners/sched.js';
import { pipelineControlNeXtRunner } from './runners/sd15_pipeline_controlnext.js';
import { loraRunner } from './runners/sd15_lora.js';
import { sd15ControlNeXtRunner } from './runners/sd15_controlnext.js';
import { sd15ControlNeXtTrainingRunner } from './runners/sd15_controlnext_training.js';
import { sdxlControlNeXtRunner } from './runners/sdxl_controlnext.js';
import { sdxlPipelineControlNeXtRunner } from './runners/sdxl_pipeline_controlnext.js';
import { clipTextRunner } from './runners/clip_text.js';
import { unetMergeRunner } from './runners/sd15_controlnext_unet_merge.js';
import { controlNetRunner } from './runners/sd15_controlnet.js';
import { clipVisionRunner } from './runners/clip_vision.js';
import { svdVaeRunner } from './runners/svd_vae.js';
import { svdUnetRunner } from './runners/svd_unet.js';
import { svdControlNeXtRunner, svdControlNeXtV2Runner } from './runners/svd_controlnext.js';
import { svdPipelineControlNeXtRunner } from './runners/svd_pipeline_controlnext.js';
import { optimAdamwRunner } from './runners/optim_adamw.js';
import { gradOpsRunner } from './runners/grad_ops.js';
import { trainControlNeXtRunner } from './runners/train_controlnext.js';

export const runners: Readonly<Record<string, Runner>> = {
  op_linear: opLinear,
  op_softmax: opSoftmax,
  op_conv2d: opConv2d,
  op_group_norm: opGroupNorm,
  op_layer_norm: opLayerNorm,
  op_cross_norm: opCrossNorm,
  op_upsample: opUpsample,
  op_adaptive_avg_pool: opAdaptiveAvgPool,
  op_attention: opAttention,
  op_timestep_embedding: opTimestepEmbedding,
  op_geglu_ff: opGegluFf,
  unet: unetRunner,
  vae: vaeRunner,
  clip_text: clipTextRunner,
  scheduler: schedulerRunner,
  pipeline_controlnext: pipelineControlNeXtRunner,
  lora: loraRunner,
  controlnext: sd15ControlNeXtRunner,
  controlnext_training: sd15ControlNeXtTrainingRunner,
  sdxl_controlnext: sdxlControlNeXtRunner,
  sdxl_pipeline_controlnext: sdxlPipelineControlNeXtRunner,
  unet_merge: unetMergeRunner,
  controlnet: controlNetRunner,
  clip_vision: clipVisionRunner,
  svd_vae: svdVaeRunner,
  svd_unet: svdUnetRunner,
  svd_controlnext: svdControlNeXtRunner,
  svd_controlnext_v2: svdControlNeXtV2Runner,
  svd_pipeline_controlnext: svdPipelineControlNeXtRunner,
  optim_adamw: optimAdamwRunner,
  grad_ops: gradOpsRunner,
  train_controlnext: trainControlNeXtRunner,
};
