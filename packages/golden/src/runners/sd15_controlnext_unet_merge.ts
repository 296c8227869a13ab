// unet_merge: ControlNeXt partial UNet weights merged into a base UNet, outputs before and after.
// For each UNet family the case has inputs for (`sd15.*`: the 'unet' entry; `sdxl.*`: the
// 'controlnext_sdxl_unet' entry), the 'unet_partial' file whose keys and shapes fit that UNet is merged;
// the merge mode is detected by applyPartialUnet from the family's variant (sd15: replace, sdxl: add),
// not read from the case.

import { SafetensorsFile } from '@cnx/tensor';
import { applyPartialUnet, type VariantName } from '@cnx/controlnext';
import { UNet2DConditionModel } from '@cnx/unet';
import type { GoldenCase, Produced, Runner } from '../golden_case.js';
import { modelDirOfKind } from './unet.js';
import { join } from 'node:path';

interface Family {
  prefix: 'sd15' | 'sdxl';
  variant: VariantName;
  unetKind: string;
}

const FAMILIES: readonly Family[] = [
  { prefix: 'sd15', variant: 'sd15', unetKind: 'unet' },
  { prefix: 'sdxl', variant: 'sdxl', unetKind: 'controlnext_sdxl_unet' },
];

/** The one 'unet_partial' file whose keys and shapes all fit `unet` (the case names files, not families). */
function partialFileFor(c: GoldenCase, unet: UNet2DConditionModel, family: string): string {
  const entries = Object.entries(c.json.models ?? {}).filter(([, m]) => m.kind === 'unet_partial');
  const params = new Map(unet.namedParameters().map(([n, t]) => [n, t.shape.join(',')]));
  const fits = entries.map(([key, m]) => join(c.modelDir(key), m.weights ?? 'unet.safetensors')).filter((file) => {
    const f = SafetensorsFile.open(file);
    try {
      return f.keys().every((k) => params.get(k) === f.info(k).shape.join(','));
    } finally {
      f.close();
    }
  });
  if (fits.length !== 1) {
    throw new Error(`${c.name}: expected exactly one 'unet_partial' file fitting the ${family} UNet, found ${fits.length} (entries: ${entries.map(([k]) => k).join(', ') || 'none'})`);
  }
  return fits[0]!;
}

export const unetMergeRunner: Runner = async (c, backend) => {
  const out: Produced = new Map();
  for (const f of FAMILIES) {
    if (!(`${f.prefix}.sample` in c.json.inputs)) continue;
    const unet = UNet2DConditionModel.fromFolder(modelDirOfKind(c, f.unetKind), backend);
    const sample = c.input(`${f.prefix}.sample`, backend);
    const t = c.timestepInput(`${f.prefix}.timestep`, backend);
    const ctx = c.input(`${f.prefix}.encoder_hidden_states`, backend);
    const added = `${f.prefix}.text_embeds` in c.json.inputs
      ? { textEmbeds: c.input(`${f.prefix}.text_embeds`, backend), timeIds: c.input(`${f.prefix}.time_ids`, backend) } : undefined;
    try {
      out.set(`out.${f.prefix}.sample_base`, unet.forward(sample, t, ctx, { addedCond: added }));
      applyPartialUnet(unet, partialFileFor(c, unet, f.prefix), backend, { variant: f.variant });
      out.set(`out.${f.prefix}.sample_merged`, unet.forward(sample, t, ctx, { addedCond: added }));
    } finally {
      [sample, t, ctx, added?.textEmbeds, added?.timeIds].forEach((x) => x?.dispose());
      unet.dispose();
    }
  }
  return out;
};
