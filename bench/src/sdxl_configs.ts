// The SDXL architectures the benchmark measures, as their config.json files state them. UNet:
// stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (= ControlNeXt-SDXL/utils/tools.py UNET_CONFIG,
// spec §13.2), the same file @cnx/unet builds the model from. Control: ControlNeXt-SDXL's ControlNetModel
// (models/controlnet.py; spec §5.1: the light layout with a 320-channel output, injected after conv_in).

import { sdxlUNetConfig } from '@cnx/unet';
import type { ControlNeXtTrainingStructure, UNetLikeConfig } from './flops.js';

export const SDXL_UNET_CONFIG = sdxlUNetConfig() as unknown as Readonly<UNetLikeConfig & Record<string, unknown> & {
  block_out_channels: readonly [number, number, number];
}>;

/** ControlNeXt-SDXL's ControlNetModel defaults (spec §5.1): 3,526,400 parameters. */
export const SDXL_CONTROLNEXT_STRUCTURE: ControlNeXtTrainingStructure = {
  time_embed_dim: 256, in_channels: [128, 128], out_channels: [128, 256], groups: [4, 8], mid_out_channels: 320,
};

/** CLIP text length; text states are CLIP ViT-L (768) + OpenCLIP bigG (1280) penultimate states. */
export const SDXL_SEQ_LEN = 77;
export const SDXL_CONTEXT_DIM = 2048;
/** text_encoder_2's projected pooled output. */
export const SDXL_POOLED_DIM = 1280;
