// The SD1.5 architectures the benchmark measures, as their diffusers config.json files state them.
// UNet: runwayml/stable-diffusion-v1-5 unet/config.json (spec §13.1). ControlNet: lllyasviel/sd-controlnet-canny
// config.json (diffusers ControlNetModel; the encoder half of the UNet config plus the conditioning embedding).

import { sd15UNetConfig } from '@cnx/unet';
import type { UNetLikeConfig } from './flops.js';

/** runwayml/stable-diffusion-v1-5 unet/config.json, the same file @cnx/unet builds the model from. */
export const SD15_UNET_CONFIG = sd15UNetConfig() as unknown as Readonly<UNetLikeConfig & Record<string, unknown> & {
  block_out_channels: readonly [number, number, number, number];
}>;

/**
 * lllyasviel/sd-controlnet-canny config.json: the UNet config's encoder half (no up blocks, no output
 * conv) plus the conditioning embedding.
 */
export const SD15_CONTROLNET_CONFIG = (() => {
  const { up_block_types: _up, out_channels: _out, sample_size: _size, center_input_sample: _center, ...encoder } = SD15_UNET_CONFIG;
  return {
    ...encoder,
    conditioning_channels: 3,
    controlnet_conditioning_channel_order: 'rgb',
    conditioning_embedding_out_channels: [16, 32, 96, 256],
    use_linear_projection: false,
  } as const satisfies UNetLikeConfig & Record<string, unknown>;
})();

/** CLIP ViT-L/14 text length. */
export const SD15_SEQ_LEN = 77;
