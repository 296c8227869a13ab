// Runner kind 'pipeline_controlnext' (case sd15_pipeline_controlnext): the ControlNeXt-SD1.5 pipeline
// end to end through ControllableDiffusionPipeline.generate(): the scheduler class and config, the
// UNet, VAE and control module folders, steps and guidance come from case.json; prompt embeddings,
// initial latents and the control image from io.safetensors. Per-step values are collected by the
// pipeline's observer (read back to the host at each step), in the case's layouts:
//   pipe.control[i]: the control map at the UNet batch ([map; map] under CFG, as the repo runs the
//   module on [img, img]); pipe.control_scale[i]: the module's scale; out.step_latents[i], ...

import { join } from 'node:path';
import type { Tensor } from '@cnx/tensor';
import { ControllableDiffusionPipeline, ControlNeXt, ControlNeXtControl } from '@cnx/controlnext';
import { AutoencoderKL, UNet2DConditionModel, createScheduler, readSchedulerConfigFile } from '@cnx/unet';
import type { GoldenCase, Produced, Runner } from '../golden_case.js';
import { modelDirOfKind } from './unet.js';

function numberArray(v: unknown): number[] | undefined {
  return Array.isArray(v) && v.every((x) => typeof x === 'number') ? v : undefined;
}

function stack(rows: Float32Array[]): Float32Array {
  const out = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  let o = 0;
  for (const r of rows) { out.set(r, o); o += r.length; }
  return out;
}

function schedulerClass(c: GoldenCase): string {
  const cls = c.json.models?.['scheduler']?.class;
  if (typeof cls !== 'string') throw new Error(`${c.name}: case.json models.scheduler.class is missing`);
  return cls.replace(/^diffusers\./, '');
}

export const pipelineControlNeXtRunner: Runner = async (c, backend) => {
  const out: Produced = new Map();
  const moduleEntry = Object.values(c.json.models ?? {}).find((m) => m.kind === 'controlnext') as { structure?: { groups?: unknown } } | undefined;
  const groups = numberArray(moduleEntry?.structure?.groups);
  const scheduler = createScheduler(schedulerClass(c), readSchedulerConfigFile(join(c.modelDir('scheduler'), 'scheduler_config.json')));
  const unet = UNet2DConditionModel.fromFolder(modelDirOfKind(c, 'controlnext_unet'), backend);
  const vae = AutoencoderKL.fromFolder(modelDirOfKind(c, 'vae'), backend);
  const cnx = ControlNeXt.load(modelDirOfKind(c, 'controlnext'), backend, { variant: 'sd15', groups });
  const pipe = new ControllableDiffusionPipeline({ unet, vae, scheduler, control: new ControlNeXtControl(cnx) });
  // Without guidance (guidance_scale <= 1) a case has no negative embeddings.
  const names = ['latents', 'prompt_embeds', 'control_image', 'negative_prompt_embeds'].filter((n) => n !== 'negative_prompt_embeds' || n in c.json.inputs);
  const inputs: Tensor[] = names.map((n) => c.input(n, backend));
  const [latents, promptEmbeds, controlImage, negativePromptEmbeds] = inputs as [Tensor, Tensor, Tensor, Tensor | undefined];
  const rows: Record<string, Float32Array[]> = { control: [], scale: [], unet: [], noise: [], latents: [] };
  try {
    const r = await pipe.generate({
      latents, promptEmbeds, negativePromptEmbeds, controlImage,
      numInferenceSteps: Number(c.args['num_inference_steps']),
      guidanceScale: Number(c.args['guidance_scale']),
      observer: {
        async onStep(s) {
          if (s.control) {
            const map = await s.control.out.data();
            const N = s.modelInput.shape[0]!, Bc = s.control.out.shape[0]!;
            // The map as the UNet batch sees it: repeated to N rows (Bc = 1: broadcast; Bc = B: [map; map]).
            const per = map.length / Bc;
            const full = new Float32Array(per * N);
            for (let n = 0; n < N; n++) full.set(map.subarray((n % Bc) * per, (n % Bc + 1) * per), n * per);
            rows.control!.push(full);
            const sc = s.control.scale;
            rows.scale!.push(typeof sc === 'number' ? Float32Array.of(sc) : await sc.data());
          }
          rows.unet!.push(await s.unetOutput.data());
          rows.noise!.push(await s.noisePred.data());
          rows.latents!.push(await s.latents.data());
        },
        async onDecode(d) {
          out.set('vae.decode_input', await d.input.data());
          out.set('out.image_decoded', await d.decoded.data());
        },
      },
    });
    out.set('out.timesteps', Float32Array.from(r.timesteps));
    out.set('out.step_latents', stack(rows.latents!));
    out.set('out.latents_final', r.latents);
    out.set('out.image', r.images);
    out.set('pipe.control', stack(rows.control!));
    out.set('pipe.control_scale', stack(rows.scale!));
    out.set('pipe.unet_output', stack(rows.unet!));
    out.set('pipe.noise_pred', stack(rows.noise!));
  } finally {
    inputs.forEach((t) => t.dispose());
    pipe.dispose();
    cnx.dispose();
  }
  return out;
};
