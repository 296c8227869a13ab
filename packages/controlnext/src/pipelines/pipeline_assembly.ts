// Assembling a pipeline from a diffusers folder, whatever holds its files: the folder on disk (Node,
// node/pipeline_loading.ts) or a map of bytes (browsers, pipeline_from_files.ts). Both describe the
// folder as a PipelineSource and the optional control pieces as ControlSources; this file decides
// everything else once:
//  - the pipeline class from model_index.json (model_index.ts): Stable Diffusion 1.x/2.x
//    (ControllableDiffusionPipeline) or SDXL (StableDiffusionXLPipeline: text_encoder + text_encoder_2);
//  - the ControlNeXt variant: the caller's, else detected from the module file (config.json, then the
//    base model family, then the file name: load_control_module.ts detectVariant), refused when the
//    variant was made for another base model than the folder's;
//  - the partial UNet merge by the variant's rule (SD1.5: replace; SDXL: add the deltas), then LoRAs
//    (as the run scripts load them: after the ControlNeXt weights).
// Every model built is disposed again when a later piece fails.

import type { Backend, SafetensorsFile, WeightStoreOptions } from '@cnx/tensor';
import {
  createScheduler, type AutoencoderKL, type CLIPTextModel, type CLIPTokenizer, type SchedulerConfigJson, type UNet2DConditionModel,
} from '@cnx/unet';
import { ControlNeXt } from '../controlnext/controlnext.js';
import type { DetectedVariant, VariantHints } from '../controlnext/load_control_module.js';
import { applyPartialUnet, type PartialUnetReport } from '../controlnext/partial_unet.js';
import { getVariant, type ControlNeXtVariant, type VariantName } from '../controlnext/variants.js';
import type { ControlNetModel } from '../controlnet/controlnet.js';
import { mergeLora, type LoraFile, type MergedLora } from '../lora.js';
import { folderLayout, readModelIndex, VARIANT_FAMILY, type ModelIndex, type PipelineFamily } from './model_index.js';
import { ControllableDiffusionPipeline } from './pipeline.js';
import { ControlNetControl, ControlNeXtControl, type PipelineControl } from './pipeline_control.js';
import { ClipPromptEncoder } from './prompt_encoder.js';
import { StableDiffusionXLPipeline } from './sdxl_pipeline.js';
import { SDXLClipPromptEncoder } from './sdxl_prompt_encoder.js';

/** Either pipeline family; both run generate() with the common options (SDXL accepts more). */
export type DiffusionPipeline = ControllableDiffusionPipeline | StableDiffusionXLPipeline;

/** A diffusers pipeline folder, however its files are held. */
export interface PipelineSource {
  /** The folder, for messages. */
  readonly name: string;
  /** Whether a file exists (path relative to the folder, '/'-separated). */
  has(path: string): boolean;
  /** A text file's contents, or undefined when absent. */
  text(path: string): string | undefined;
  unet(opts: WeightStoreOptions): UNet2DConditionModel;
  vae(opts: WeightStoreOptions): AutoencoderKL;
  /** A transformers CLIP text model folder ('text_encoder', 'text_encoder_2'). */
  textModel(folder: string, opts: WeightStoreOptions): CLIPTextModel;
  tokenizer(folder: string): CLIPTokenizer;
  schedulerConfig(): SchedulerConfigJson;
}

/** The control pieces, each opened only when the assembly gets to it. */
export interface ControlSources {
  controlnext?: {
    load(variant: VariantName | ControlNeXtVariant, groups: number[] | undefined): ControlNeXt;
    detect(hints: VariantHints): DetectedVariant;
  };
  /** ControlNeXt's partial UNet weights. */
  controlnextUnet?: () => SafetensorsFile;
  controlnet?: () => ControlNetModel;
  loras?: { read: () => LoraFile; scale: number }[];
}

export interface AssembleOptions {
  /** Scheduler short name or class (default: UniPC, the ControlNeXt pipelines' choice), configured from scheduler/scheduler_config.json. */
  scheduler?: string;
  /** Prefer .fp16 weight files where both exist (computation stays f32). */
  prefer?: 'fp32' | 'fp16';
  /** ControlNeXt variant (default: detected from the module file and the folder), or a user variant. */
  variant?: VariantName | ControlNeXtVariant;
  /** GroupNorm groups of a shrunk release module (not stored in its file). */
  controlnextGroups?: number[];
}

export interface LoadedPipeline {
  pipeline: DiffusionPipeline;
  /** What the folder is (model_index.json or its contents). */
  modelIndex: ModelIndex;
  /** The ControlNeXt variant used and why. */
  variant?: { name: string; evidence: string };
  partialUnet?: PartialUnetReport;
  loras: MergedLora[];
}

/** The variant to load a ControlNeXt module with, and why (see the header). */
function resolveVariant(
  wanted: VariantName | ControlNeXtVariant | undefined, family: PipelineFamily, detect: (h: VariantHints) => DetectedVariant,
): { variant: VariantName | ControlNeXtVariant; name: string; evidence: string } {
  const familyName = family === 'sdxl' ? 'an SDXL' : 'a Stable Diffusion 1.x/2.x';
  if (typeof wanted === 'object') return { variant: wanted, name: wanted.name, evidence: 'a user variant' };
  if (wanted !== undefined) {
    const v = getVariant(wanted);
    const f = VARIANT_FAMILY[wanted];
    if (f !== undefined && f !== family) {
      throw new Error(`ControlNeXt variant '${wanted}' (${v.description}) is for ${f === 'sdxl' ? 'SDXL' : 'SD1.5'} UNets, but the model folder is ${familyName} model`);
    }
    return { variant: wanted, name: wanted, evidence: 'named explicitly' };
  }
  const d = detect({ family });
  const f = VARIANT_FAMILY[d.variant];
  if (f !== undefined && f !== family) {
    throw new Error(`the ControlNeXt module is ${d.variant} (${d.evidence}), made for ${f === 'sdxl' ? 'SDXL' : 'SD1.5'}, but the model folder is ` +
      `${familyName} model; use a module for this model (or name the variant explicitly to force it)`);
  }
  return { variant: d.variant, name: d.variant, evidence: `detected: ${d.evidence}` };
}

/** Build the folder's pipeline (+ ControlNeXt / ControlNet, + LoRAs) on `backend`. */
export function assemblePipeline(source: PipelineSource, controls: ControlSources, backend: Backend, opts: AssembleOptions = {}): LoadedPipeline {
  if (controls.controlnext && controls.controlnet) throw new Error('give a ControlNeXt module or a ControlNet, not both');
  const index = readModelIndex(source.text('model_index.json'), (p) => source.has(p), source.name);
  const family = index.family;
  // The variant is settled before any model is built, so a wrong module fails fast.
  const resolved = controls.controlnext ? resolveVariant(opts.variant, family, (h) => controls.controlnext!.detect(h)) : undefined;
  if (!controls.controlnext && controls.controlnextUnet) throw new Error('ControlNeXt partial UNet weights need the ControlNeXt module too');
  if (family === 'sdxl' && controls.controlnet) {
    throw new Error(`the model folder ${source.name} is SDXL; a diffusers ControlNet is supported with Stable Diffusion 1.x/2.x folders only`);
  }
  const store = { prefer: opts.prefer ?? 'fp32' } as const;
  const schedulerConfig = source.schedulerConfig();
  let scheduler: ReturnType<typeof createScheduler>;
  try {
    scheduler = createScheduler(opts.scheduler ?? 'unipc', schedulerConfig);
  } catch (e) {
    // The scheduler class names the key; the file is named here.
    throw new Error(`${source.name}/scheduler/scheduler_config.json: ${(e as Error).message}`);
  }
  const disposeAll: { dispose(): void }[] = [scheduler];
  try {
    const unet = source.unet(store);
    disposeAll.push(unet);
    const isSdxlUnet = unet.config.addition_embed_type === 'text_time';
    if (isSdxlUnet !== (family === 'sdxl')) {
      throw new Error(`${source.name}: the folder is ${family === 'sdxl' ? 'SDXL' : 'Stable Diffusion 1.x/2.x'} (${index.evidence}), but unet/config.json ` +
        `${isSdxlUnet ? 'is an SDXL UNet (addition_embed_type "text_time")' : 'has no SDXL text_time conditioning'} (${folderLayout(family)})`);
    }
    const vae = source.vae(store);
    disposeAll.push(vae);
    const te1 = index.components.includes('text_encoder') ? source.textModel('text_encoder', store) : undefined;
    if (te1) disposeAll.push(te1);
    const te2 = family === 'sdxl' ? source.textModel('text_encoder_2', store) : undefined;
    if (te2) disposeAll.push(te2);
    let partialUnet: PartialUnetReport | undefined;
    if (controls.controlnextUnet) {
      const variantName = typeof resolved!.variant === 'string' ? resolved!.variant : undefined;
      partialUnet = applyPartialUnet(unet, controls.controlnextUnet(), backend, { variant: variantName });
    }
    let control: PipelineControl | undefined;
    if (controls.controlnext) {
      const cnx = controls.controlnext.load(resolved!.variant, opts.controlnextGroups);
      disposeAll.push(cnx);
      control = new ControlNeXtControl(cnx);
    } else if (controls.controlnet) {
      const net = controls.controlnet();
      disposeAll.push(net);
      control = new ControlNetControl({
        forward: (sample, timestep, ctx, cond, conditioningScale) => net.forward(sample, timestep, ctx, cond, { conditioningScale }),
        dispose: () => net.dispose(),
      });
    }
    // LoRAs after the ControlNeXt UNet weights (as run_controlnext.py loads them). SDXL: the UNet and the
    // first text encoder (a file's text_encoder_2 layers are reported as skipped).
    const loras = (controls.loras ?? []).map(({ read, scale }) => mergeLora(read(), { unet, textEncoder: te1 }, scale));
    let pipeline: DiffusionPipeline;
    if (family === 'sdxl') {
      const textEncoder = new SDXLClipPromptEncoder(
        te1 && { tokenizer: source.tokenizer('tokenizer'), model: te1 },
        { tokenizer: source.tokenizer('tokenizer_2'), model: te2! },
      );
      pipeline = new StableDiffusionXLPipeline({
        unet, vae, scheduler, textEncoder, control,
        config: { forceZerosForEmptyPrompt: index.forceZerosForEmptyPrompt, requiresAestheticsScore: index.requiresAestheticsScore },
      });
    } else {
      pipeline = new ControllableDiffusionPipeline({ unet, vae, scheduler, textEncoder: new ClipPromptEncoder(source.tokenizer('tokenizer'), te1!), control });
    }
    return { pipeline, modelIndex: index, variant: resolved && { name: resolved.name, evidence: resolved.evidence }, partialUnet, loras };
  } catch (e) {
    disposeAll.forEach((m) => m.dispose());
    throw e;
  }
}
