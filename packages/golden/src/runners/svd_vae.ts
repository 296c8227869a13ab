// svd_vae: AutoencoderKLTemporalDecoder from the model of kind "svd_vae" (case.json `call`):
//   posterior of encode(image) (mean = mode, logvar clamped, std);
//   out.decoded_full = decode(latents.flatten(0, 1), num_frames = F) (latents as given, not scaled);
//   out.frames_chunked = StableVideoDiffusionPipeline.decode_latents(latents, F, args.decode_chunk_size)
//     in diffusers' [B, C, F, H, W] layout (decodeVideo gives [B, F, C, H, W]).
// Intermediates 'vae.*' come from encode() and the full decode.

import type { Tensor } from '@cnx/tensor';
import { AutoencoderKLTemporalDecoder } from '@cnx/unet';
import type { Produced, Runner } from '../golden_case.js';
import { collectingTrace, modelDirOfKind } from './unet.js';

export const svdVaeRunner: Runner = async (c, backend) => {
  const out: Produced = new Map();
  const vae = AutoencoderKLTemporalDecoder.fromFolder(modelDirOfKind(c, 'svd_vae'), backend);
  const trace = collectingTrace(c, 'vae', out);
  const image = c.input('image', backend);
  const latents = c.input('latents', backend);
  const chunk = Number(c.args['decode_chunk_size']);
  const tmp: Tensor[] = [];
  try {
    if (latents.rank !== 5) throw new Error(`${c.name}: expected latents [B, F, L, h, w], found ${latents.toString()}`);
    const [B, F, L, h, w] = latents.shape as [number, number, number, number, number];
    const p = vae.encode(image, trace);
    out.set('out.posterior_mean', p.mean);
    out.set('out.posterior_logvar', p.logvar);
    out.set('out.posterior_std', p.std);
    const flat = latents.reshape([B * F, L, h, w]);
    tmp.push(flat);
    out.set('out.decoded_full', vae.decode(flat, F, trace));
    const frames = vae.decodeVideo(latents, chunk);
    tmp.push(frames);
    out.set('out.frames_chunked', frames.permute([0, 2, 1, 3, 4]).contiguous());
  } finally {
    [image, latents, ...tmp].forEach((t) => t.dispose());
    vae.dispose();
  }
  return out;
};
