// A pipeline from bytes: the browser's (and any in-memory) counterpart of loadPipeline (node/
// pipeline_loading.ts), from a diffusers folder given as a map of relative path -> contents
// ('model_index.json', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'vae/...',
// 'text_encoder/...', 'tokenizer/vocab.json', 'tokenizer/merges.txt', SDXL's 'text_encoder_2/...' and
// 'tokenizer_2/...', 'scheduler/scheduler_config.json'), plus optional ControlNeXt files, a ControlNet
// folder's files and LoRA files as bytes. The pipeline class comes from model_index.json; same checks,
// same errors (pipeline_assembly.ts).

import { SafetensorsFile, type Backend } from '@cnx/tensor';
import {
  AutoencoderKL, CLIPTextModel, CLIPTokenizer, UNet2DConditionModel, fileText, parseSchedulerConfig, subFiles, type ModelFiles,
} from '@cnx/unet';
import { ControlNeXt } from '../controlnext/controlnext.js';
import { detectVariantFromFiles } from '../controlnext/load_control_module.js';
import { ControlNetModel } from '../controlnet/controlnet.js';
import { readLoraFile } from '../lora.js';
import type { ControlNeXtVariant, VariantName } from '../controlnext/variants.js';
import { assemblePipeline, type LoadedPipeline, type PipelineSource } from './pipeline_assembly.js';

export interface PipelineFromFilesOptions {
  /** Scheduler short name or class (default: UniPC), configured from scheduler/scheduler_config.json. */
  scheduler?: string;
  /** Prefer .fp16 weight files where both are given. */
  prefer?: 'fp32' | 'fp16';
  /** ControlNeXt control module files ('controlnet.safetensors', and its config.json when there). */
  controlnext?: ModelFiles;
  /** ControlNeXt partial UNet weights (unet.safetensors bytes), merged into the base UNet. */
  controlnextUnet?: ArrayBuffer | Uint8Array;
  /** ControlNeXt variant (default: detected from the module files and the folder), or a user variant. */
  variant?: VariantName | ControlNeXtVariant;
  /** GroupNorm groups of a shrunk release module (not stored in its file). */
  controlnextGroups?: number[];
  /** A diffusers ControlNet folder's files instead of ControlNeXt. */
  controlnet?: ModelFiles;
  /** LoRA files as bytes with their scales (name: for messages and the delta-file rule). */
  loras?: { bytes: ArrayBuffer | Uint8Array; name?: string; scale: number }[];
}

const bytesOf = (b: ArrayBuffer | Uint8Array) => (b instanceof Uint8Array ? b : new Uint8Array(b));

/** A diffusers folder held as a file map. */
export function filesPipelineSource(files: ModelFiles, backend: Backend, name = 'pipelineFromFiles'): PipelineSource {
  return {
    name,
    has: (p) => Object.hasOwn(files, p),
    text: (p) => fileText(files, p, name, true),
    unet: (o) => UNet2DConditionModel.fromFiles(subFiles(files, 'unet'), backend, o),
    vae: (o) => AutoencoderKL.fromFiles(subFiles(files, 'vae'), backend, o),
    textModel: (folder, o) => CLIPTextModel.fromFiles(subFiles(files, folder), backend, o),
    tokenizer: (folder) => CLIPTokenizer.fromFiles(subFiles(files, folder)),
    schedulerConfig: () => parseSchedulerConfig(fileText(files, 'scheduler/scheduler_config.json', name), 'scheduler/scheduler_config.json'),
  };
}

/** Build a Stable Diffusion or SDXL pipeline (+ ControlNeXt / ControlNet, + LoRAs) from a folder's files in memory. */
export function pipelineFromFiles(files: ModelFiles, backend: Backend, opts: PipelineFromFilesOptions = {}): LoadedPipeline {
  if (opts.controlnext && opts.controlnet) throw new Error('pipelineFromFiles: give a ControlNeXt module or a ControlNet folder, not both');
  const { controlnext, controlnextUnet, controlnet } = opts;
  return assemblePipeline(filesPipelineSource(files, backend), {
    controlnext: controlnext && {
      load: (variant, groups) => ControlNeXt.fromFiles(controlnext, backend, { variant, groups }),
      detect: (hints) => detectVariantFromFiles(controlnext, hints),
    },
    controlnextUnet: controlnextUnet && (() => SafetensorsFile.fromBytes(bytesOf(controlnextUnet), 'unet.safetensors')),
    controlnet: controlnet && (() => ControlNetModel.fromFiles(controlnet, backend)),
    loras: (opts.loras ?? []).map(({ bytes, name, scale }) => ({ read: () => readLoraFile(SafetensorsFile.fromBytes(bytesOf(bytes), name ?? 'lora.safetensors')), scale })),
  }, backend, opts);
}

export type { LoadedPipeline } from './pipeline_assembly.js';
