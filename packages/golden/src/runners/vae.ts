// vae: AutoencoderKL encode(image).latent_dist (mean, logvar clamped to [-30, 20], std) and
// decode(latents).sample, latents passed as-is (case.json `call`), from the model of kind "vae".

import { AutoencoderKL } from '@cnx/unet';
import type { Produced, Runner } from '../golden_case.js';
import { collectingTrace, modelDirOfKind } from './unet.js';

export const vaeRunner: Runner = async (c, backend) => {
  const out: Produced = new Map();
  const vae = AutoencoderKL.fromFolder(modelDirOfKind(c, 'vae'), backend);
  const trace = collectingTrace(c, 'vae', out);
  const image = c.input('image', backend);
  const latents = c.input('latents', backend);
  try {
    const p = vae.encode(image, trace);
    out.set('out.posterior_mean', p.mean);
    out.set('out.posterior_logvar', p.logvar);
    out.set('out.posterior_std', p.std);
    out.set('out.decoded', vae.decode(latents, trace));
  } finally {
    image.dispose();
    latents.dispose();
    vae.dispose();
  }
  return out;
};
