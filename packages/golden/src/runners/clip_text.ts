// clip_text: transformers CLIPTextModel(input_ids, output_hidden_states=True) from the model of kind
// "clip_text": last_hidden_state, pooler_output, and hidden_states.i (0 = embeddings, i = after layer i)
// reported as 'clip.hidden_states.i'. input_ids are stored as exact float32.

import { CLIPTextModel } from '@cnx/unet';
import type { Produced, Runner } from '../golden_case.js';
import { collectingTrace, modelDirOfKind } from './unet.js';

export const clipTextRunner: Runner = async (c, backend) => {
  const out: Produced = new Map();
  const model = CLIPTextModel.fromFolder(modelDirOfKind(c, 'clip_text'), backend);
  try {
    const { shape, data } = c.expected('input_ids');
    if (shape.length !== 2) throw new Error(`${c.name}: expected input_ids [B, L], found [${shape.join(', ')}]`);
    const [B, L] = shape as [number, number];
    const ids = Array.from({ length: B }, (_, b) => Array.from(data.subarray(b * L, (b + 1) * L)));
    const o = model.forward(ids, { trace: collectingTrace(c, 'clip', out) });
    out.set('out.last_hidden_state', o.lastHiddenState);
    out.set('out.pooler_output', o.pooledOutput);
    o.textEmbeds?.dispose();
  } finally {
    model.dispose();
  }
  return out;
};
