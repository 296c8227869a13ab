// Which pipeline a diffusers folder is, from its model_index.json (diffusers DiffusionPipeline.from_pretrained
// reads the same file: `_class_name` picks the pipeline class, each other key names a component as
// [library, class], or [null, null] for an absent optional component; plain values are the pipeline's
// registered config, e.g. SDXL's force_zeros_for_empty_prompt and requires_aesthetics_score).
// Without model_index.json (or without its _class_name) the folder's contents decide (text_encoder_2/ =
// SDXL), and the result says so.

import { parseConfigText } from '@cnx/unet';
import type { VariantName } from '../controlnext/variants.js';

export type PipelineFamily = 'sd' | 'sdxl';

/** The pipeline classes this project runs, by model_index.json `_class_name`. */
export const PIPELINE_CLASSES: Readonly<Record<string, PipelineFamily>> = {
  StableDiffusionPipeline: 'sd',
  StableDiffusionImg2ImgPipeline: 'sd',
  StableDiffusionXLPipeline: 'sdxl',
  StableDiffusionXLImg2ImgPipeline: 'sdxl',
};

/** The base model family each released ControlNeXt variant was trained on. */
export const VARIANT_FAMILY: Readonly<Partial<Record<VariantName, PipelineFamily>>> = {
  sd15: 'sd', sd15_training: 'sd', sdxl: 'sdxl',
};

export const SD_FOLDER_LAYOUT = 'a Stable Diffusion diffusers folder holds model_index.json, unet/, vae/, text_encoder/, tokenizer/ and scheduler/ ' +
  '(each model folder: config.json + diffusion_pytorch_model[.fp16].safetensors, text_encoder/: config.json + model[.fp16].safetensors, ' +
  'tokenizer/: vocab.json + merges.txt, scheduler/: scheduler_config.json)';

export const SDXL_FOLDER_LAYOUT = 'an SDXL diffusers folder holds model_index.json (_class_name StableDiffusionXLPipeline), unet/, vae/, ' +
  'text_encoder/ + tokenizer/ (CLIP ViT-L), text_encoder_2/ + tokenizer_2/ (OpenCLIP bigG, CLIPTextModelWithProjection) and scheduler/ ' +
  '(text_encoder/ and tokenizer/ may be null in model_index.json, as in the refiner)';

export function folderLayout(family: PipelineFamily): string {
  return family === 'sdxl' ? SDXL_FOLDER_LAYOUT : SD_FOLDER_LAYOUT;
}

/** The components a family's folder has, and the files each must hold (relative to the pipeline folder). */
const COMPONENT_FILES: Readonly<Record<string, readonly string[]>> = {
  unet: ['unet/config.json'],
  vae: ['vae/config.json'],
  text_encoder: ['text_encoder/config.json'],
  tokenizer: ['tokenizer/vocab.json', 'tokenizer/merges.txt'],
  text_encoder_2: ['text_encoder_2/config.json'],
  tokenizer_2: ['tokenizer_2/vocab.json', 'tokenizer_2/merges.txt'],
  scheduler: ['scheduler/scheduler_config.json'],
};
const FAMILY_COMPONENTS: Readonly<Record<PipelineFamily, readonly string[]>> = {
  sd: ['unet', 'vae', 'text_encoder', 'tokenizer', 'scheduler'],
  sdxl: ['unet', 'vae', 'text_encoder', 'tokenizer', 'text_encoder_2', 'tokenizer_2', 'scheduler'],
};
/** Components model_index.json may declare absent ([null, null]). */
const OPTIONAL: Readonly<Record<PipelineFamily, readonly string[]>> = { sd: [], sdxl: ['text_encoder', 'tokenizer'] };

export interface ModelIndex {
  family: PipelineFamily;
  /** model_index.json _class_name, when the folder has one. */
  className?: string;
  /** The components present (component folder names). */
  components: string[];
  /** SDXL pipeline config (diffusers defaults when absent). */
  forceZerosForEmptyPrompt: boolean;
  requiresAestheticsScore: boolean;
  /** How the family was decided, for messages. */
  evidence: string;
}

/**
 * The pipeline a folder holds. `text`: model_index.json's text (undefined when absent); `has`: whether a
 * relative path exists in the folder. Unknown pipeline classes and absent required components are errors
 * naming the class / component and the expected layout.
 */
export function readModelIndex(text: string | undefined, has: (path: string) => boolean, source: string): ModelIndex {
  let family: PipelineFamily;
  let className: string | undefined;
  let evidence: string;
  let raw: Record<string, unknown> = {};
  if (text !== undefined) raw = parseConfigText(text, `${source}/model_index.json`);
  const cls = raw._class_name;
  if (cls !== undefined) {
    if (typeof cls !== 'string') throw new Error(`${source}/model_index.json: "_class_name" must be a string (one of ${Object.keys(PIPELINE_CLASSES).join(', ')})`);
    const f = Object.hasOwn(PIPELINE_CLASSES, cls) ? PIPELINE_CLASSES[cls] : undefined; // 'constructor' is no class
    if (!f) {
      throw new Error(`${source}/model_index.json: pipeline class ${JSON.stringify(cls.slice(0, 80))} is not supported (supported: ${Object.keys(PIPELINE_CLASSES).join(', ')})`);
    }
    family = f;
    className = cls;
    evidence = `model_index.json _class_name ${cls}`;
  } else {
    family = has('text_encoder_2/config.json') || has('tokenizer_2/vocab.json') ? 'sdxl' : 'sd';
    evidence = `${text === undefined ? 'no model_index.json' : 'model_index.json has no _class_name'}; ` +
      `${family === 'sdxl' ? 'text_encoder_2/ is present (SDXL)' : 'no text_encoder_2/ (Stable Diffusion 1.x/2.x)'}`;
  }
  const components: string[] = [];
  const missing: string[] = [];
  for (const comp of FAMILY_COMPONENTS[family]) {
    const declared = Object.hasOwn(raw, comp) ? raw[comp] : undefined;
    const absent = Array.isArray(declared) && declared[0] === null && declared[1] === null;
    if (absent) {
      if (!OPTIONAL[family].includes(comp)) throw new Error(`${source}/model_index.json: ${className} needs a ${comp} component, but it is declared absent ([null, null]) (${folderLayout(family)})`);
      continue;
    }
    const need = COMPONENT_FILES[comp]!.filter((p) => !has(p));
    // Without model_index.json an SDXL folder may still lack the first encoder (refiner layout).
    if (className === undefined && OPTIONAL[family].includes(comp) && need.length === COMPONENT_FILES[comp]!.length) continue;
    if (need.length > 0) missing.push(...need);
    else components.push(comp);
  }
  if (missing.length > 0) {
    throw new Error(`model folder ${source} is missing ${missing.join(', ')} (${folderLayout(family)}; this folder is ` +
      `${className ?? (family === 'sdxl' ? 'SDXL' : 'Stable Diffusion 1.x/2.x')} from ${evidence})`);
  }
  if (family === 'sdxl' && components.includes('text_encoder') !== components.includes('tokenizer')) {
    throw new Error(`model folder ${source}: text_encoder/ and tokenizer/ come together (found only ${components.includes('text_encoder') ? 'text_encoder/' : 'tokenizer/'}) (${SDXL_FOLDER_LAYOUT})`);
  }
  const bool = (k: string, dflt: boolean) => {
    const v = raw[k];
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') throw new Error(`${source}/model_index.json: ${k} must be true or false, found ${JSON.stringify(v)?.slice(0, 80)}`);
    return v;
  };
  return {
    family, className, components, evidence,
    forceZerosForEmptyPrompt: bool('force_zeros_for_empty_prompt', true),
    requiresAestheticsScore: bool('requires_aesthetics_score', false),
  };
}
