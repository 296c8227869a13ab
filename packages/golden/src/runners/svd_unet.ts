// svd_unet: UNetSpatioTemporalConditionModel forward(sample [B, F, Cin, h, w], timestep (float32 c_noise,
// one per batch item or a scalar), encoder_hidden_states [B, L, D], added_time_ids [B, 3]).sample from the
// model of kind "svd_unet"; every intermediate listed in case.json from the forward's trace ('unet.<path>').

import { UNetSpatioTemporalConditionModel } from '@cnx/unet';
import type { Produced, Runner } from '../golden_case.js';
import { collectingTrace, modelDirOfKind } from './unet.js';

export const svdUnetRunner: Runner = async (c, backend) => {
  const out: Produced = new Map();
  const model = UNetSpatioTemporalConditionModel.fromFolder(modelDirOfKind(c, 'svd_unet'), backend);
  const sample = c.input('sample', backend);
  const timestep = c.timestepInput('timestep', backend);
  const ctx = c.input('encoder_hidden_states', backend);
  const ids = c.input('added_time_ids', backend);
  try {
    out.set('out.sample', model.forward(sample, timestep, ctx, ids, { trace: collectingTrace(c, 'unet', out) }));
  } finally {
    [sample, timestep, ctx, ids].forEach((t) => t.dispose());
    model.dispose();
  }
  return out;
};
