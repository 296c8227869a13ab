// Reference configurations of released models, as their diffusers config.json files state them.
// sd15_unet.json: runwayml/stable-diffusion-v1-5 unet/config.json (spec section 13.1): 859,520,964 parameters.

import sd15Unet from './sd15_unet.json' with { type: 'json' };

/** A fresh copy of SD1.5's UNet config.json (callers may edit it). */
export function sd15UNetConfig(): Record<string, unknown> {
  return structuredClone(sd15Unet) as Record<string, unknown>;
}
