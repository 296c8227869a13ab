// svd_pipeline_controlnext: the ControlNeXt-SVD repo pipeline end to end (SvdControlNeXtPipeline) with the
// case's models (spatio-temporal UNet, ControlNeXt-SVD module of kind controlnext_svd / controlnext_svd_v2,
// temporal VAE, scheduler_config.json) and its inputs: the reference image, the pose frames, the CLIP
// image_embeds (the case stands in for the image encoder: see clip_vision), the initial latents and the
// image-noise draw. Every argument comes from case.json args. Per-(step, window) values the pipeline traces
// are stacked in call order as pipe.*; out.* are the schedule, the latents after each step, the final
// latents, the VAE output ([1, C, F, H, W] as diffusers' decode_latents) and the frames in [0, 1].

import type { Tensor } from '@cnx/tensor';
import { ControlNeXtSVD, SvdControlNeXtPipeline, type SvdVariantName } from '@cnx/controlnext';
import { AutoencoderKLTemporalDecoder, readSchedulerConfigFile, UNetSpatioTemporalConditionModel } from '@cnx/unet';
import { join } from 'node:path';
import type { GoldenCase, Produced, Runner } from '../golden_case.js';
import { modelDirOfKind } from './unet.js';

function concatRows(rows: Float32Array[]): Float32Array {
  const out = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  let o = 0;
  for (const r of rows) { out.set(r, o); o += r.length; }
  return out;
}

function svdVariantOf(c: GoldenCase): { variant: SvdVariantName; moduleKind: string; unetKind: string } {
  const kinds = Object.values(c.json.models ?? {}).map((m) => m.kind);
  if (kinds.includes('controlnext_svd_v2')) return { variant: 'svd_v2', moduleKind: 'controlnext_svd_v2', unetKind: 'controlnext_svd_v2_unet' };
  if (kinds.includes('controlnext_svd')) return { variant: 'svd', moduleKind: 'controlnext_svd', unetKind: 'controlnext_svd_unet' };
  throw new Error(`${c.name}: case.json models has no ControlNeXt-SVD module (kind controlnext_svd or controlnext_svd_v2)`);
}

export const svdPipelineControlNeXtRunner: Runner = async (c, backend) => {
  const out: Produced = new Map();
  const { variant, moduleKind, unetKind } = svdVariantOf(c);
  const a = c.args;
  const unet = UNetSpatioTemporalConditionModel.fromFolder(modelDirOfKind(c, unetKind), backend);
  const vae = AutoencoderKLTemporalDecoder.fromFolder(modelDirOfKind(c, 'svd_vae'), backend);
  const controlnext = ControlNeXtSVD.load(modelDirOfKind(c, moduleKind), backend, { variant });
  const schedulerConfig = readSchedulerConfigFile(join(c.modelDir('scheduler'), 'scheduler_config.json'));
  const pipe = new SvdControlNeXtPipeline({ unet, vae, controlnext, schedulerConfig });
  const inputs: Tensor[] = [];
  const input = (name: string) => { const t = c.input(name, backend); inputs.push(t); return t; };
  const wanted = new Set(c.checkedNames());
  const calls = new Map<string, Float32Array[]>();
  try {
    const image = input('image');
    if (a['height'] !== undefined && (image.shape[2] !== a['height'] || image.shape[3] !== a['width'])) {
      throw new Error(`${c.name}: the image ${image.toString()} is not the case's ${a['height']}x${a['width']} (the runner does not resize)`);
    }
    const r = await pipe.generate({
      image,
      imageEmbeds: input('image_embeds'),
      controlFrames: input('controlnext_condition'),
      latents: input('latents'),
      imageNoise: input('image_noise'),
      numFrames: Number(a['num_frames']),
      numInferenceSteps: Number(a['num_inference_steps']),
      minGuidanceScale: Number(a['min_guidance_scale']),
      maxGuidanceScale: Number(a['max_guidance_scale']),
      framesPerBatch: Number(a['frames_per_batch']),
      overlap: Number(a['overlap']),
      fps: Number(a['fps']),
      motionBucketId: Number(a['motion_bucket_id']),
      noiseAugStrength: Number(a['noise_aug_strength']),
      decodeChunkSize: Number(a['decode_chunk_size']),
      timeIds: 'fixed',
      trace: async (name, value) => {
        const key = name === 'step_latents' ? 'out.step_latents' : `pipe.${name}`;
        if (!wanted.has(key)) return;
        const list = calls.get(key) ?? [];
        list.push(await value.data());
        calls.set(key, list);
      },
    });
    for (const [k, rows] of calls) out.set(k, concatRows(rows));
    out.set('out.timesteps', Float32Array.from(r.timesteps));
    out.set('out.sigmas', Float32Array.from(r.sigmas));
    out.set('out.latents_final', r.latents);
    const d = r.decoded!;
    out.set('out.frames_decoded', d.permute([0, 2, 1, 3, 4]).contiguous());
    d.dispose();
    out.set('out.frames', r.frames!.reshape([1, ...r.frames!.shape]));
    r.frames!.dispose();
  } finally {
    inputs.forEach((t) => t.dispose());
    pipe.dispose();
  }
  return out;
};
