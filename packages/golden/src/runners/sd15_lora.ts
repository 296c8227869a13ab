// Runner kind 'lora' (case sd15_lora): for each LoRA file of the case (case.json models of kind
// lora_<format>, file in `weights`), a fresh UNet from the case's folder gets the LoRA merged with
// args.lora_scale (diffusers load_lora_weights + fuse_lora), then runs forward; the fused weights are
// reported as lora.<format>.fused.<parameter>, the outputs as out.sample_lora_<format>, and the base
// UNet's output as out.sample_base.

import { join } from 'node:path';
import { mergeLora, readLoraFile } from '@cnx/controlnext';
import { UNet2DConditionModel } from '@cnx/unet';
import type { Produced, Runner } from '../golden_case.js';
import { modelDirOfKind } from './unet.js';

export const loraRunner: Runner = async (c, backend) => {
  const out: Produced = new Map();
  const wanted = new Set(c.checkedNames());
  const unetDir = modelDirOfKind(c, 'unet');
  const scale = Number(c.args['lora_scale'] ?? c.config['lora_scale']);
  const sample = c.input('sample', backend);
  const timestep = c.timestepInput('timestep', backend);
  const ctx = c.input('encoder_hidden_states', backend);
  try {
    const base = UNet2DConditionModel.fromFolder(unetDir, backend);
    out.set('out.sample_base', base.forward(sample, timestep, ctx));
    base.dispose();
    for (const m of Object.values(c.json.models ?? {})) {
      const format = /^lora_(.+)$/.exec(m.kind ?? '')?.[1];
      if (!format) continue;
      if (!m.weights) throw new Error(`${c.name}: models entry of kind ${m.kind} has no "weights" file name`);
      const lora = readLoraFile(join(c.dir, m.path, m.weights));
      const unet = UNet2DConditionModel.fromFolder(unetDir, backend);
      try {
        const merged = mergeLora(lora, { unet }, scale);
        for (const { parameter } of merged.merged) {
          const name = `lora.${format}.fused.${parameter}`;
          if (wanted.has(name)) out.set(name, await unet.getParameter(parameter).data());
        }
        out.set(`out.sample_lora_${format}`, unet.forward(sample, timestep, ctx));
      } finally {
        unet.dispose();
      }
    }
  } finally {
    [sample, timestep, ctx].forEach((t) => t.dispose());
  }
  return out;
};
