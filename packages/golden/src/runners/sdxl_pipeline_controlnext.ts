// Runner kind 'sdxl_pipeline_controlnext': the ControlNeXt-SDXL pipeline (the repo's
// StableDiffusionXLControlNeXtPipeline) end to end through StableDiffusionXLPipeline.generate() (the
// shared denoising loop with SDXL's conditioning), read entirely from the case folder:
//  - models by kind: the base SDXL UNet ('controlnext_sdxl_unet'), its attn2.to_out delta file
//    ('unet_partial', merged with the variant's rule: W = W0 + dW), the control module
//    ('controlnext_sdxl'), the VAE ('vae');
//  - one pipeline call per args entry 'run' (names out.*, pipe.*, vae.*) and 'run_<x>' (out.<x>.*,
//    pipe.<x>.*, vae.<x>.*), each with the scheduler of models 'scheduler' / 'scheduler_<x>' (class and
//    config from there) and its own steps, guidance, guidance_rescale, controlnet_scale, size and
//    micro-conditioning sizes; inputs '<x>.<name>' where the case has one, else the shared '<name>'.
// Per-step values come from the pipeline's observer (onBegin: time ids, pooled embeddings, the control
// image as the control receives it, the initial latents; onStep: model input, control map and the
// scale the injection used, UNet output, noise_cfg / noise_pred, latents; onDecode). Maps and images
// that our path keeps at the image batch (ControlNeXt runs once per image under CFG) are laid out at
// the UNet batch as the reference has them (row n = image row n mod batch). Intermediates named
// 'pipe.step<k>.unet.<path>' are the UNet's traced '<path>' at step k, or with '.input' the input of
// that module (a per-call module pre-hook).

import { join } from 'node:path';
import type { Backend, Tensor } from '@cnx/tensor';
import { applyPartialUnet, ControlNeXt, ControlNeXtControl, StableDiffusionXLPipeline, type SDXLGenerateOptions, type SizePair } from '@cnx/controlnext';
import { AutoencoderKL, UNet2DConditionModel, createScheduler, readSchedulerConfigFile, type FeatureHook } from '@cnx/unet';
import type { GoldenCase, Produced, Runner } from '../golden_case.js';
import { modelDirOfKind } from './unet.js';

function stack(rows: Float32Array[]): Float32Array {
  const out = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  let o = 0;
  for (const r of rows) { out.set(r, o); o += r.length; }
  return out;
}

/** Rows of a [b, ...] tensor laid out for a batch of n (row i = row i mod b), as the reference repeats them. */
async function atBatch(t: Tensor, n: number): Promise<Float32Array> {
  const d = await t.data();
  const b = t.shape[0]!, per = d.length / b;
  const out = new Float32Array(per * n);
  for (let i = 0; i < n; i++) out.set(d.subarray((i % b) * per, (i % b + 1) * per), i * per);
  return out;
}

function pair(v: unknown, what: string): SizePair | undefined {
  if (v === null || v === undefined) return undefined;
  if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number')) return [v[0] as number, v[1] as number];
  throw new Error(`${what} must be null or [h, w], found ${JSON.stringify(v)}`);
}

function num(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${what} must be a number, found ${JSON.stringify(v)}`);
  return v;
}

/** The calls of the case: args.run -> '' and args.run_<x> -> '<x>'. */
function runsOf(c: GoldenCase): { key: string; infix: string }[] {
  const runs = Object.keys(c.args).filter((k) => k === 'run' || k.startsWith('run_')).map((key) => ({ key, infix: key === 'run' ? '' : key.slice(4) }));
  if (runs.length === 0) throw new Error(`${c.name}: case.json args has no 'run' entry`);
  return runs;
}

async function runOne(c: GoldenCase, backend: Backend, pipeParts: { unet: UNet2DConditionModel; vae: AutoencoderKL; cnx: ControlNeXt }, key: string, infix: string, out: Produced): Promise<void> {
  const run = c.args[key] as Record<string, unknown>;
  const at = (base: string, rest: string) => (infix ? `${base}.${infix}.${rest}` : `${base}.${rest}`);
  const what = `${c.name}: args.${key}`;
  const schedulerKey = infix ? `scheduler_${infix}` : 'scheduler';
  const entry = c.json.models?.[schedulerKey];
  if (!entry || typeof entry.class !== 'string') throw new Error(`${c.name}: case.json models.${schedulerKey}.class is missing`);
  const scheduler = createScheduler(entry.class.replace(/^diffusers\./, ''), readSchedulerConfigFile(join(c.modelDir(schedulerKey), 'scheduler_config.json')));
  // The pipeline shares the models between the calls; only the scheduler is per call.
  const pipe = new StableDiffusionXLPipeline({ ...pipeParts, scheduler, control: new ControlNeXtControl(pipeParts.cnx) });
  const inputName = (n: string) => (infix && c.io.has(`${infix}.${n}`) ? `${infix}.${n}` : n);
  const names = ['latents', 'prompt_embeds', 'negative_prompt_embeds', 'pooled_prompt_embeds', 'negative_pooled_prompt_embeds', 'control_image'];
  const inputs = Object.fromEntries(names.filter((n) => c.io.has(inputName(n))).map((n) => [n, c.input(inputName(n), backend)])) as Record<string, Tensor>;
  const rows: Record<string, Float32Array[]> = { input: [], control: [], scale: [], unet: [], cfg: [], noise: [], latents: [] };
  // 'pipe.step<k>.unet.<path>[.input]' intermediates.
  const stepNames = c.checkedNames().map((n) => /^pipe\.(?:([a-z_]+)\.)?step(\d+)\.unet\.(.+)$/.exec(n)).filter((m) => m && (m[1] ?? '') === infix) as RegExpExecArray[];
  let stepIndex = 0;
  const preInputs = new Map<string, Tensor>();
  const hooks: Record<string, FeatureHook> = {};
  const traced: string[] = [];
  for (const m of stepNames) {
    const path = m[3]!;
    if (path.endsWith('.input')) {
      const mod = path.slice(0, -'.input'.length);
      hooks[`${mod}:before`] = (x) => { if (stepIndex === Number(m[2])) preInputs.set(m[0]!, x.contiguous()); return x; };
    } else traced.push(`unet.${path}`);
  }
  try {
    const o: SDXLGenerateOptions = {
      latents: inputs.latents, promptEmbeds: inputs.prompt_embeds, negativePromptEmbeds: inputs.negative_prompt_embeds,
      pooledPromptEmbeds: inputs.pooled_prompt_embeds, negativePooledPromptEmbeds: inputs.negative_pooled_prompt_embeds,
      controlImage: inputs.control_image,
      numInferenceSteps: num(run.num_inference_steps, `${what}.num_inference_steps`),
      guidanceScale: num(run.guidance_scale, `${what}.guidance_scale`),
      guidanceRescale: run.guidance_rescale === undefined ? undefined : num(run.guidance_rescale, `${what}.guidance_rescale`),
      controlScale: run.controlnet_scale === undefined ? undefined : num(run.controlnet_scale, `${what}.controlnet_scale`),
      height: run.height === undefined || run.height === null ? undefined : num(run.height, `${what}.height`),
      width: run.width === undefined || run.width === null ? undefined : num(run.width, `${what}.width`),
      originalSize: pair(run.original_size, `${what}.original_size`),
      cropsCoordsTopLeft: pair(run.crops_coords_top_left, `${what}.crops_coords_top_left`),
      targetSize: pair(run.target_size, `${what}.target_size`),
      negativeOriginalSize: pair(run.negative_original_size, `${what}.negative_original_size`),
      negativeCropsCoordsTopLeft: pair(run.negative_crops_coords_top_left, `${what}.negative_crops_coords_top_left`),
      negativeTargetSize: pair(run.negative_target_size, `${what}.negative_target_size`),
      hooks, stepTensors: traced,
      observer: {
        async onBegin(s) {
          const N = s.conditioning.ctx.shape[0]!;
          out.set(at('pipe', 'add_time_ids'), await s.conditioning.addedCond!.timeIds.data());
          out.set(at('pipe', 'add_text_embeds'), await s.conditioning.addedCond!.textEmbeds.data());
          if (s.controlImage) out.set(at('pipe', 'control_image'), await atBatch(s.controlImage, N));
          out.set(at('pipe', 'latents_initial'), await s.latents.data());
        },
        async onStep(s) {
          const N = s.modelInput.shape[0]!;
          rows.input!.push(await s.modelInput.data());
          if (s.control) rows.control!.push(await atBatch(s.control.out, N));
          const sc = s.controlScale;
          if (sc !== undefined) rows.scale!.push(typeof sc === 'number' ? Float32Array.of(sc) : await sc.data());
          rows.unet!.push(await s.unetOutput.data());
          rows.cfg!.push(await s.noiseCfg.data());
          rows.noise!.push(await s.noisePred.data());
          rows.latents!.push(await s.latents.data());
          for (const m of stepNames) {
            if (Number(m[2]) !== s.index) continue;
            const path = m[3]!;
            const v = path.endsWith('.input') ? preInputs.get(m[0]!) : s.tensors[`unet.${path}`];
            if (v) out.set(m[0]!, await v.data());
          }
          stepIndex = s.index + 1;
        },
        async onDecode(d) {
          out.set(at('vae', 'decode_input'), await d.input.data());
          out.set(at('out', 'image_decoded'), await d.decoded.data());
        },
      },
    };
    const r = await pipe.generate(o);
    out.set(at('out', 'timesteps'), Float32Array.from(r.timesteps));
    out.set(at('out', 'init_noise_sigma'), Float32Array.of(scheduler.initNoiseSigma));
    if (scheduler.sigmas) out.set(at('out', 'sigmas'), Float32Array.from(scheduler.sigmas));
    out.set(at('out', 'step_latents'), stack(rows.latents!));
    out.set(at('out', 'latents_final'), r.latents);
    out.set(at('out', 'image'), r.images);
    out.set(at('pipe', 'latent_model_input'), stack(rows.input!));
    out.set(at('pipe', 'control'), stack(rows.control!));
    out.set(at('pipe', 'control_scale'), stack(rows.scale!));
    out.set(at('pipe', 'unet_output'), stack(rows.unet!));
    out.set(at('pipe', 'noise_cfg'), stack(rows.cfg!));
    out.set(at('pipe', 'noise_pred'), stack(rows.noise!));
  } finally {
    Object.values(inputs).forEach((t) => t.dispose());
    preInputs.forEach((t) => t.dispose());
    scheduler.dispose();
  }
}

export const sdxlPipelineControlNeXtRunner: Runner = async (c, backend) => {
  const out: Produced = new Map();
  const unet = UNet2DConditionModel.fromFolder(modelDirOfKind(c, 'controlnext_sdxl_unet'), backend);
  let vae: AutoencoderKL | undefined;
  let cnx: ControlNeXt | undefined;
  try {
    const delta = Object.entries(c.json.models ?? {}).find(([, m]) => m.kind === 'unet_partial');
    if (delta) applyPartialUnet(unet, join(c.modelDir(delta[0]), delta[1].weights ?? 'unet.safetensors'), backend, { variant: 'sdxl' });
    vae = AutoencoderKL.fromFolder(modelDirOfKind(c, 'vae'), backend);
    cnx = ControlNeXt.load(modelDirOfKind(c, 'controlnext_sdxl'), backend, { variant: 'sdxl' });
    for (const { key, infix } of runsOf(c)) await runOne(c, backend, { unet, vae, cnx }, key, infix, out);
  } finally {
    cnx?.dispose();
    vae?.dispose();
    unet.dispose();
  }
  return out;
};
