// controlnext (ControlNeXt-SD1.5 release), and the shared body of controlnext_training and
// sdxl_controlnext: the control module loaded from the case's module folder (architecture detected and
// checked against the variant, widths from the weight shapes), run through the CACHED path
// (prepare once, forwardPrepared per step), then the UNet forward with the variant's injection hook.
// Every name the case checks comes from traces: 'controlnext.*' (module), 'inject.*' (injection:
// control_pooled, control_normed, sample_before, sample_after), 'unet.*' (UNet).

import type { Backend } from '@cnx/tensor';
import { ControlNeXt, type VariantName } from '@cnx/controlnext';
import { UNet2DConditionModel } from '@cnx/unet';
import type { GoldenCase, Produced, Runner } from '../golden_case.js';
import { collectingTrace, modelDirOfKind } from './unet.js';

function numberArray(v: unknown): number[] | undefined {
  return Array.isArray(v) && v.every((x) => typeof x === 'number') ? v : undefined;
}

export interface ControlNeXtCaseSpec {
  variant: VariantName;
  /** case.json models kind of the UNet and of the control module. */
  unetKind: string;
  moduleKind: string;
  /** User strength (the pipeline's --controlnet_scale); undefined = 1. */
  strength?: number;
  /** Extra runs: [io input name of the control image, output/intermediate name prefix infix]. */
  extraImages?: [string, string][];
}

export async function runControlNeXtCase(c: GoldenCase, backend: Backend, spec: ControlNeXtCaseSpec): Promise<Produced> {
  const out: Produced = new Map();
  const moduleEntry = Object.values(c.json.models ?? {}).find((m) => m.kind === spec.moduleKind) as { structure?: { groups?: unknown } } | undefined;
  // The release module's GroupNorm groups are not in the file (hard-coded by the repo); a shrunk case says them.
  const groups = numberArray(moduleEntry?.structure?.groups);
  const cnx = ControlNeXt.load(modelDirOfKind(c, spec.moduleKind), backend, { variant: spec.variant, groups, strength: spec.strength });
  const unet = UNet2DConditionModel.fromFolder(modelDirOfKind(c, spec.unetKind), backend);
  const sample = c.input('sample', backend);
  const timestep = c.timestepInput('timestep', backend);
  const ctx = c.input('encoder_hidden_states', backend);
  const hasAdded = 'text_embeds' in c.json.inputs || 'time_ids' in c.json.inputs;
  const addedCond = hasAdded ? { textEmbeds: c.input('text_embeds', backend), timeIds: c.input('time_ids', backend) } : undefined;
  const B = sample.shape[0]!;
  try {
    for (const [imageName, infix] of [['controlnet_cond', ''], ...(spec.extraImages ?? [])] as [string, string][]) {
      const p = (base: string, rest: string) => (infix ? `${base}.${infix}${rest ? `.${rest}` : ''}` : `${base}${rest ? `.${rest}` : ''}`);
      const image = c.input(imageName, backend);
      const moduleTrace = infix ? undefined : collectingTrace(c, 'controlnext', out);
      const prepared = cnx.prepare(image, { trace: moduleTrace });
      const ctrl = cnx.control(prepared, timestep, { trace: moduleTrace });
      prepared.dispose();
      image.dispose();
      out.set(p('out', 'control'), ctrl.out);
      // out.scale: the pipeline's controls['scale'] after `*= controlnet_scale` (release: the learned parameter).
      const s = ctrl.scale;
      out.set(p('out', 'scale'), typeof s === 'number' ? Float32Array.of(s * cnx.strength) : s);
      const hooks = cnx.hooks(ctrl, B, { trace: collectingTrace(c, p('inject', ''), out) });
      try {
        const y = unet.forward(sample, timestep, ctx, {
          addedCond, hooks: hooks.hooks, trace: infix ? undefined : collectingTrace(c, 'unet', out),
        });
        out.set(p('out', 'sample'), y);
      } finally {
        hooks.dispose();
      }
    }
  } finally {
    [sample, timestep, ctx, addedCond?.textEmbeds, addedCond?.timeIds].forEach((t) => t?.dispose());
    unet.dispose();
    cnx.dispose();
  }
  return out;
}

export const sd15ControlNeXtRunner: Runner = (c, backend) =>
  runControlNeXtCase(c, backend, { variant: 'sd15', unetKind: 'controlnext_unet', moduleKind: 'controlnext' });
