// clip_vision: SVD's CLIP image preprocessing (clipImagePreprocess: antialiased bicubic resize to the
// encoder's image_size, CLIP mean/std from case.json args) and transformers
// CLIPVisionModelWithProjection(pixel_values, output_hidden_states=True) from the model of kind
// "clip_vision": out.image_embeds, out.last_hidden_state, 'clip.hidden_states.i', and the preprocessing
// stages as 'clip.preprocess.resized' / 'clip.preprocess.pixel_values'.

import { CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, CLIPVisionModelWithProjection, clipImagePreprocess } from '@cnx/unet';
import type { Produced, Runner } from '../golden_case.js';
import { collectingTrace, modelDirOfKind } from './unet.js';

export const clipVisionRunner: Runner = async (c, backend) => {
  const out: Produced = new Map();
  const model = CLIPVisionModelWithProjection.fromFolder(modelDirOfKind(c, 'clip_vision'), backend);
  try {
    const { shape, data } = c.expected('image');
    if (shape.length !== 4) throw new Error(`${c.name}: expected image [B, 3, H, W], found [${shape.join(', ')}]`);
    const size = Number(c.args['image_size'] ?? model.config.image_size);
    const mean = (c.args['image_mean'] as number[] | undefined) ?? [...CLIP_IMAGE_MEAN];
    const std = (c.args['image_std'] as number[] | undefined) ?? [...CLIP_IMAGE_STD];
    const pre = clipImagePreprocess({ data, shape: shape as [number, number, number, number] }, size, mean, std);
    out.set('clip.preprocess.resized', pre.resized.data);
    out.set('clip.preprocess.pixel_values', pre.pixelValues.data);
    const px = backend.fromRaw(pre.pixelValues.data, pre.pixelValues.shape);
    const o = model.forward(px, { trace: collectingTrace(c, 'clip', out) });
    px.dispose();
    out.set('out.image_embeds', o.imageEmbeds);
    out.set('out.last_hidden_state', o.lastHiddenState);
    o.pooledOutput.dispose();
  } finally {
    model.dispose();
  }
  return out;
};
