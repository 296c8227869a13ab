// Node only (the package's Node entry, src/node.ts). Browsers build the same pipeline from bytes with
// pipelineFromFiles (pipelines/pipeline_from_files.ts).
//
// Building a pipeline from files on disk: a diffusers folder, Stable Diffusion 1.x/2.x
//   model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/   (fp32 or .fp16 weights)
// or SDXL (model_index.json _class_name StableDiffusionXLPipeline; + text_encoder_2/, tokenizer_2/),
// plus, optionally, ControlNeXt's files (the control module `controlnet.safetensors` and the partial
// UNet `unet.safetensors`, spec 3.3 / 5.3 / 10) or a diffusers ControlNet folder, and LoRA files.
// The pipeline class comes from model_index.json (pipelines/model_index.ts); the assembly is shared with
// the bytes path (pipelines/pipeline_assembly.ts). Every missing piece is an error that names the file
// and says what the folder should contain.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '@cnx/tensor';
import {
  AutoencoderKL, CLIPTextModel, CLIPTokenizer, UNet2DConditionModel, readFolderText, readSchedulerConfigFile,
} from '@cnx/unet';
import { ControlNeXt } from '../controlnext/controlnext.js';
import { detectVariant } from '../controlnext/load_control_module.js';
import { ControlNetModel } from '../controlnet/controlnet.js';
import { readLoraFile } from '../lora.js';
import { SafetensorsFile } from '@cnx/tensor';
import type { ControlNeXtVariant, VariantName } from '../controlnext/variants.js';
import { readModelIndex, SD_FOLDER_LAYOUT, type ModelIndex } from '../pipelines/model_index.js';
import { assemblePipeline, type LoadedPipeline, type PipelineSource } from '../pipelines/pipeline_assembly.js';

export { SD_FOLDER_LAYOUT, SDXL_FOLDER_LAYOUT } from '../pipelines/model_index.js';

/**
 * Check a diffusers folder and name what is missing; returns what it holds (the pipeline family from
 * model_index.json, else from its contents). Reads no weights.
 */
export function checkModelFolder(dir: string): ModelIndex {
  if (!existsSync(dir)) throw new Error(`model folder ${dir} does not exist (${SD_FOLDER_LAYOUT}; SDXL: + text_encoder_2/, tokenizer_2/)`);
  if (!statSync(dir).isDirectory()) throw new Error(`model folder ${dir} is a file, not a folder (${SD_FOLDER_LAYOUT})`);
  return readModelIndex(readFolderText(dir, 'model_index.json', 'checkModelFolder'), (p) => existsSync(join(dir, p)), dir);
}

export interface LoadPipelineOptions {
  /** Scheduler short name or class (default: UniPC, the ControlNeXt pipelines' choice), configured from scheduler/scheduler_config.json. */
  scheduler?: string;
  /** Prefer .fp16 weight files where both exist (computation stays f32). */
  prefer?: 'fp32' | 'fp16';
  /** ControlNeXt control module: a .safetensors file or the folder holding it. */
  controlnext?: string;
  /** ControlNeXt partial UNet weights (unet.safetensors), merged into the base UNet. */
  controlnextUnet?: string;
  /** ControlNeXt variant (default: detected from the module file and the model folder). */
  variant?: VariantName | ControlNeXtVariant;
  /** GroupNorm groups of a shrunk release module (not stored in its file). */
  controlnextGroups?: number[];
  /** A diffusers ControlNet folder instead of ControlNeXt. */
  controlnet?: string;
  /** LoRA files merged into the UNet and text encoder with their scales. */
  loras?: { path: string; scale: number }[];
}

/** A diffusers folder on disk. */
export function folderPipelineSource(dir: string, backend: Backend): PipelineSource {
  return {
    name: dir,
    has: (p) => existsSync(join(dir, p)),
    text: (p) => readFolderText(dir, p, 'loadPipeline'),
    unet: (o) => UNet2DConditionModel.fromFolder(join(dir, 'unet'), backend, o),
    vae: (o) => AutoencoderKL.fromFolder(join(dir, 'vae'), backend, o),
    textModel: (folder, o) => CLIPTextModel.fromFolder(join(dir, folder), backend, o),
    tokenizer: (folder) => CLIPTokenizer.fromFolder(join(dir, folder)),
    schedulerConfig: () => readSchedulerConfigFile(join(dir, 'scheduler', 'scheduler_config.json')),
  };
}

/** Load a diffusers Stable Diffusion or SDXL folder (+ ControlNeXt / ControlNet, + LoRAs) onto a backend. */
export function loadPipeline(dir: string, backend: Backend, opts: LoadPipelineOptions = {}): LoadedPipeline {
  checkModelFolder(dir);
  if (opts.controlnext && opts.controlnet) throw new Error('loadPipeline: give a ControlNeXt module or a ControlNet folder, not both');
  for (const [what, p] of [['ControlNeXt module', opts.controlnext], ['ControlNeXt partial UNet', opts.controlnextUnet], ['ControlNet folder', opts.controlnet]] as const) {
    if (p !== undefined && !existsSync(p)) throw new Error(`${what} ${p} does not exist`);
  }
  const { controlnext, controlnextUnet, controlnet } = opts;
  return assemblePipeline(folderPipelineSource(dir, backend), {
    controlnext: controlnext !== undefined ? {
      load: (variant, groups) => ControlNeXt.load(controlnext, backend, { variant, groups }),
      detect: (hints) => detectVariant(controlnext, hints),
    } : undefined,
    controlnextUnet: controlnextUnet !== undefined ? () => SafetensorsFile.open(controlnextUnet) : undefined,
    controlnet: controlnet !== undefined ? () => ControlNetModel.fromFolder(controlnet, backend) : undefined,
    loras: (opts.loras ?? []).map(({ path, scale }) => ({ read: () => readLoraFile(path), scale })),
  }, backend, opts);
}
