// Reference configurations of released models, as their diffusers config.json files state them.
// sd15_unet.json: runwayml/stable-diffusion-v1-5 unet/config.json (spec section 13.1): 859,520,964 parameters.
// sdxl_unet.json: stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (spec section 13.2).

import sd15Unet from './sd15_unet.json' with { type: 'json' };
import sdxlUnet from './sdxl_unet.json' with { type: 'json' };

/** A fresh copy of SD1.5's UNet config.json (callers may edit it). */
export function sd15UNetConfig(): Record<string, unknown> {
  return structuredClone(sd15Unet) as Record<string, unknown>;
}

/** A fresh copy of SDXL base's UNet config.json. */
export function sdxlUNetConfig(): Record<string, unknown> {
  return structuredClone(sdxlUnet) as Record<string, unknown>;
}
