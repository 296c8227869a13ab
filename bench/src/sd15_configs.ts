// The SD1.5 architectures the benchmark measures, as their diffusers config.json files state them.
// UNet: runwayml/stable-diffusion-v1-5 unet/config.json (spec §13.1). ControlNet: lllyasviel/sd-controlnet-canny
// config.json (diffusers ControlNetModel; the encoder half of the UNet config plus the conditioning embedding).
// Only the fields that change the architecture are listed; the defaults of the rest are diffusers'.

import type { UNetLikeConfig } from './flops.js';

export const SD15_UNET_CONFIG = {
  sample_size: 64,
  in_channels: 4,
  out_channels: 4,
  center_input_sample: false,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  downsample_padding: 1,
  mid_block_scale_factor: 1,
  act_fn: 'silu',
  norm_num_groups: 32,
  norm_eps: 1e-5,
  cross_attention_dim: 768,
  attention_head_dim: 8,
  use_linear_projection: false,
} as const satisfies UNetLikeConfig & Record<string, unknown>;

export const SD15_CONTROLNET_CONFIG = {
  in_channels: 4,
  conditioning_channels: 3,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  downsample_padding: 1,
  mid_block_scale_factor: 1,
  act_fn: 'silu',
  norm_num_groups: 32,
  norm_eps: 1e-5,
  cross_attention_dim: 768,
  attention_head_dim: 8,
  use_linear_projection: false,
  controlnet_conditioning_channel_order: 'rgb',
  conditioning_embedding_out_channels: [16, 32, 96, 256],
} as const satisfies UNetLikeConfig & Record<string, unknown>;

/** CLIP ViT-L/14 text length. */
export const SD15_SEQ_LEN = 77;
