// Reference configurations of released models, as their diffusers config.json files state them.
// sd15_unet.json: runwayml/stable-diffusion-v1-5 unet/config.json (spec section 13.1): 859,520,964 parameters.
// sdxl_unet.json: stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (spec section 13.2).
// sd15_vae.json, sd15_text_encoder.json: the same SD1.5 repository's vae/ and text_encoder/ configs.

import sd15Unet from './sd15_unet.json' with { type: 'json' };
import sdxlUnet from './sdxl_unet.json' with { type: 'json' };
import sd15Vae from './sd15_vae.json' with { type: 'json' };
import sd15TextEncoder from './sd15_text_encoder.json' with { type: 'json' };

/** A fresh copy of SD1.5's UNet config.json (callers may edit it). */
export function sd15UNetConfig(): Record<string, unknown> {
  return structuredClone(sd15Unet) as Record<string, unknown>;
}

/** A fresh copy of SDXL base's UNet config.json. */
export function sdxlUNetConfig(): Record<string, unknown> {
  return structuredClone(sdxlUnet) as Record<string, unknown>;
}

/** A fresh copy of SD1.5's VAE config.json (scaling_factor: the default 0.18215). */
export function sd15VaeConfig(): Record<string, unknown> {
  return structuredClone(sd15Vae) as Record<string, unknown>;
}

/** A fresh copy of SD1.5's text_encoder config.json (CLIP ViT-L/14 text tower). */
export function sd15TextEncoderConfig(): Record<string, unknown> {
  return structuredClone(sd15TextEncoder) as Record<string, unknown>;
}
