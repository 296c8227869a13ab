// A tiny Stable Video Diffusion + ControlNeXt-SVD with random weights, built in memory: what `cnx video`
// runs without a model folder, so that a first try works anywhere. Its frames are noise from random
// weights, not a video of anything; the CLI says so.
//
// Sizes follow the golden cases' tiny models (golden/svd_pipeline_controlnext): a spatio-temporal
// UNet of widths [32, 32] (one cross-attention level, image-embedding width 16), a 4-level temporal VAE of
// width 32 (8 pixels per latent, as SVD), a 2-layer CLIP vision tower (width 32, 32 px input, projection 16),
// and a ControlNeXt-SVD module (v2 by default, or v1) with a narrow stem. GroupNorm(32) in the video
// blocks fixes the smallest width at 32.

import { RandomWeights, type Backend } from '@cnx/tensor';
import { AutoencoderKLTemporalDecoder, CLIPVisionModelWithProjection, UNetSpatioTemporalConditionModel } from '@cnx/unet';
import { ControlNeXtSVD, type SvdVariantName } from '../controlnext/controlnext_svd.js';
import { ControlNeXtSVDv1Module, ControlNeXtSVDv2Module } from '../controlnext/controlnext_svd_modules.js';
import { SvdControlNeXtPipeline } from './svd_pipeline.js';

export const TINY_SVD_UNET_CONFIG = {
  in_channels: 8, out_channels: 4,
  down_block_types: ['CrossAttnDownBlockSpatioTemporal', 'DownBlockSpatioTemporal'],
  up_block_types: ['UpBlockSpatioTemporal', 'CrossAttnUpBlockSpatioTemporal'],
  block_out_channels: [32, 32], addition_time_embed_dim: 4, projection_class_embeddings_input_dim: 12,
  layers_per_block: 1, cross_attention_dim: 16, transformer_layers_per_block: 1, num_attention_heads: [2, 4], num_frames: 14,
};

export const TINY_SVD_VAE_CONFIG = {
  in_channels: 3, out_channels: 3, latent_channels: 4, layers_per_block: 1, scaling_factor: 0.18215,
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
  block_out_channels: [32, 32, 32, 32],
};

export const TINY_CLIP_VISION_CONFIG = {
  model_type: 'clip_vision_model', hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4,
  image_size: 32, patch_size: 8, projection_dim: 16, hidden_act: 'gelu', layer_norm_eps: 1e-5, num_channels: 3,
};

/** The tiny model's default frame size (8 x 8 latents; a multiple of the pipeline's 16). */
export const TINY_SVD_SIZE = { height: 64, width: 64 } as const;

export interface TinySvdOptions {
  /** Seed of the random weights (default 0). */
  seed?: number;
  /** ControlNeXt-SVD variant of the random module (default svd_v2). */
  variant?: SvdVariantName;
}

export function tinySvdPipeline(backend: Backend, opts: TinySvdOptions = {}): SvdControlNeXtPipeline {
  const seed = opts.seed ?? 0;
  const ws = (k: number) => new RandomWeights({ seed: seed * 16 + k });
  // 16-bit weight storage: a backend created with weightDtype 'f16' (loadParameter keeps the matrices in f16).
  const unet = new UNetSpatioTemporalConditionModel(TINY_SVD_UNET_CONFIG, ws(1), backend);
  const vae = new AutoencoderKLTemporalDecoder(TINY_SVD_VAE_CONFIG, ws(2), backend);
  const imageEncoder = new CLIPVisionModelWithProjection(TINY_CLIP_VISION_CONFIG, ws(3), backend);
  const variant = opts.variant ?? 'svd_v2';
  const common = { timeProjDim: 128, timeEmbedDim: 64, stemChannels: [16, 16, 32] as [number, number, number], stemPadding: 0, midChannels: 32 };
  const module = variant === 'svd'
    ? new ControlNeXtSVDv1Module(ws(4), backend, {
      ...common, inChannels: [32, 16, 16], outChannels: [16, 16, 32], groups: [4, 8, 8], finalChannels: unet.channelsAt('mid_block:before'),
    })
    : new ControlNeXtSVDv2Module(ws(4), backend, {
      ...common, inChannels: [32, 16], outChannels: [16, 32], groups: [4, 8], finalChannels: unet.channelsAt('down_blocks.0'), scale: 1,
    });
  return new SvdControlNeXtPipeline({ unet, vae, imageEncoder, controlnext: new ControlNeXtSVD(variant, module, backend) });
}
