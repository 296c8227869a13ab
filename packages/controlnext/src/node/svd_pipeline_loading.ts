// Loading the SVD + ControlNeXt-SVD pipeline from files (Node only): an SVD-xt folder in the diffusers
// layout (model_index.json, unet/, vae/, image_encoder/, scheduler/; feature_extractor/ holds the CLIP
// mean/std, which are SVD's standard ones) plus ControlNeXt's files: the control module
// (controlnet.safetensors, or its folder) and, optionally, the released UNet that replaces the base
// weights (both ControlNeXt-SVD releases ship a full UNet: spec section 10). Every model loads strictly.
// The releases are PyTorch pickles (.bin), which this loader cannot read: it says so and points at the
// safetensors conversions.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { Backend } from '@cnx/tensor';
import { AutoencoderKLTemporalDecoder, CLIPVisionModelWithProjection, readSchedulerConfigFile, UNetSpatioTemporalConditionModel } from '@cnx/unet';
import { ControlNeXtSVD, type SvdVariantName } from '../controlnext/controlnext_svd.js';
import { SvdControlNeXtPipeline } from '../pipelines/svd_pipeline.js';

export interface LoadSvdPipelineOptions {
  /** ControlNeXt-SVD control module file or folder (safetensors). */
  controlnext?: string;
  /** A full UNet weights file (or folder) replacing unet/'s weights (the ControlNeXt-SVD releases ship one). */
  controlnextUnet?: string;
  /** Expected variant (detected from the module file otherwise). */
  variant?: SvdVariantName;
  /** Prefer .fp16 weight files where both exist (16-bit STORAGE is the backend's weightDtype: createBackend(name, { weightDtype: 'f16' })). */
  prefer?: 'fp32' | 'fp16';
}

function checkSafetensors(path: string, what: string): void {
  if (!existsSync(path)) throw new Error(`${what}: ${path} does not exist`);
  const files = statSync(path).isDirectory() ? [] : [path];
  for (const f of files) {
    const ext = extname(f).toLowerCase();
    if (ext === '.bin' || ext === '.pt' || ext === '.pth' || ext === '.ckpt') {
      throw new Error(`${what}: ${f} is a PyTorch pickle, which cannot be read here; use a safetensors file ` +
        '(e.g. a conversion of the release such as Kijai/ControlNeXt-SVD-V2-Comfy, or convert it with safetensors.torch.save_file)');
    }
  }
}

/** Load an SVD-xt folder (+ ControlNeXt-SVD files); errors name the missing folder or file. */
export function loadSvdPipeline(modelDir: string, backend: Backend, opts: LoadSvdPipelineOptions = {}): SvdControlNeXtPipeline {
  if (!existsSync(modelDir) || !statSync(modelDir).isDirectory()) throw new Error(`SVD model folder ${modelDir} does not exist`);
  for (const sub of ['unet', 'vae', 'image_encoder']) {
    if (!existsSync(join(modelDir, sub, 'config.json'))) {
      throw new Error(`${modelDir} is not an SVD folder in the diffusers layout: ${sub}/config.json is missing (expected model_index.json, unet/, vae/, image_encoder/, scheduler/)`);
    }
  }
  const indexPath = join(modelDir, 'model_index.json');
  if (existsSync(indexPath)) {
    const cls = (JSON.parse(readFileSync(indexPath, 'utf8')) as { unet?: unknown }).unet;
    if (Array.isArray(cls) && typeof cls[1] === 'string' && !/SpatioTemporal/.test(cls[1])) {
      throw new Error(`${indexPath}: the unet is a ${cls[1]}, not a UNetSpatioTemporalConditionModel (is this an image model folder?)`);
    }
  }
  if (opts.controlnext) checkSafetensors(opts.controlnext, '--controlnext');
  if (opts.controlnextUnet) checkSafetensors(opts.controlnextUnet, '--controlnext-unet');
  const storage = { prefer: opts.prefer ?? 'fp32' } as const;
  const built: { dispose(): void }[] = [];
  try {
    const controlnext = opts.controlnext ? ControlNeXtSVD.load(opts.controlnext, backend, { variant: opts.variant }) : undefined;
    if (controlnext) built.push(controlnext);
    const imageEncoder = CLIPVisionModelWithProjection.fromFolder(join(modelDir, 'image_encoder'), backend, storage);
    built.push(imageEncoder);
    const vae = AutoencoderKLTemporalDecoder.fromFolder(join(modelDir, 'vae'), backend, storage);
    built.push(vae);
    const unet = UNetSpatioTemporalConditionModel.fromFolder(join(modelDir, 'unet'), backend, { ...storage, weights: opts.controlnextUnet });
    built.push(unet);
    const schedPath = join(modelDir, 'scheduler', 'scheduler_config.json');
    const schedulerConfig = existsSync(schedPath) ? readSchedulerConfigFile(schedPath) : undefined;
    return new SvdControlNeXtPipeline({ unet, vae, imageEncoder, controlnext, schedulerConfig });
  } catch (e) {
    built.forEach((m) => m.dispose());
    throw e;
  }
}
