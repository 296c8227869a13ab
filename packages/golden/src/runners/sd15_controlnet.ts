// controlnet: the diffusers ControlNetModel (case entry of kind 'controlnet') gives the residuals for
// the UNet (kind 'unet'): down, mid = controlnet(sample, t, ctx, cond, conditioning_scale);
// out.sample = unet(sample, t, ctx, down_block_additional_residuals=down, mid_block_additional_residual=mid).
// args.conditioning_scale and args.guess_mode are read from the case.

import { ControlNetModel } from '@cnx/controlnext';
import { UNet2DConditionModel } from '@cnx/unet';
import type { Produced, Runner } from '../golden_case.js';
import { collectingTrace, modelDirOfKind } from './unet.js';

export const controlNetRunner: Runner = async (c, backend) => {
  const out: Produced = new Map();
  const scale = c.args.conditioning_scale ?? 1;
  if (typeof scale !== 'number') throw new Error(`${c.name}: args.conditioning_scale must be a number, found ${JSON.stringify(scale)}`);
  const guessMode = c.args.guess_mode === true;
  const controlnet = ControlNetModel.fromFolder(modelDirOfKind(c, 'controlnet'), backend);
  const unet = UNet2DConditionModel.fromFolder(modelDirOfKind(c, 'unet'), backend);
  const sample = c.input('sample', backend);
  const t = c.timestepInput('timestep', backend);
  const ctx = c.input('encoder_hidden_states', backend);
  const cond = c.input('controlnet_cond', backend);
  try {
    const res = controlnet.forward(sample, t, ctx, cond, { conditioningScale: scale, guessMode, trace: collectingTrace(c, 'controlnet', out) });
    res.down.forEach((d, i) => out.set(`out.down_block_res_samples.${i}`, d));
    out.set('out.mid_block_res_sample', res.mid);
    out.set('out.sample', unet.forward(sample, t, ctx, {
      downBlockAdditionalResiduals: res.down, midBlockAdditionalResidual: res.mid, trace: collectingTrace(c, 'unet', out),
    }));
  } finally {
    [sample, t, ctx, cond].forEach((x) => x.dispose());
    controlnet.dispose();
    unet.dispose();
  }
  return out;
};
