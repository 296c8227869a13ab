// unet: UNet2DConditionModel forward(sample, timestep, encoder_hidden_states[, added_cond_kwargs]).sample
// from the case's diffusers model folder (the model whose kind is "unet"); SDXL's text_time inputs are
// used when the case provides text_embeds and time_ids. Every intermediate listed in case.json is taken
// from the forward's trace ('unet.<state-dict path>').

import type { Tensor, Trace } from '@cnx/tensor';
import { UNet2DConditionModel } from '@cnx/unet';
import type { GoldenCase, Produced, Runner } from '../golden_case.js';

/** The model folder of the given kind named in case.json `models`. */
export function modelDirOfKind(c: GoldenCase, kind: string): string {
  const entry = Object.entries(c.json.models ?? {}).find(([, m]) => m.kind === kind);
  if (!entry) throw new Error(`${c.name}: case.json models has no entry of kind '${kind}' (found: ${Object.keys(c.json.models ?? {}).join(', ') || 'none'})`);
  return c.modelDir(entry[0]);
}

/**
 * A trace that keeps (a new view of) every value whose prefixed name the case checks; the first report
 * of a name wins (a module reports its output once).
 */
export function collectingTrace(c: GoldenCase, prefix: string, out: Produced): Trace {
  const wanted = new Set(c.checkedNames());
  return (path: string, value: Tensor) => {
    const name = path ? `${prefix}.${path}` : prefix;
    if (wanted.has(name) && !out.has(name)) out.set(name, value.contiguous());
  };
}

export const unetRunner: Runner = async (c, backend) => {
  const out: Produced = new Map();
  const model = UNet2DConditionModel.fromFolder(modelDirOfKind(c, 'unet'), backend);
  const sample = c.input('sample', backend);
  const timestep = c.timestepInput('timestep', backend);
  const ctx = c.input('encoder_hidden_states', backend);
  const hasAdded = 'text_embeds' in c.json.inputs || 'time_ids' in c.json.inputs;
  const addedCond = hasAdded ? { textEmbeds: c.input('text_embeds', backend), timeIds: c.input('time_ids', backend) } : undefined;
  try {
    out.set('out.sample', model.forward(sample, timestep, ctx, { addedCond, trace: collectingTrace(c, 'unet', out) }));
  } finally {
    [sample, timestep, ctx, addedCond?.textEmbeds, addedCond?.timeIds].forEach((t) => t?.dispose());
    model.dispose();
  }
  return out;
};
