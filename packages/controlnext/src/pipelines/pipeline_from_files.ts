// A pipeline from bytes: the browser's (and any in-memory) counterpart of loadPipeline (node/
// pipeline_loading.ts), from a Stable Diffusion folder given as a map of relative path -> contents
// ('unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'vae/...', 'text_encoder/...',
// 'tokenizer/vocab.json', 'tokenizer/merges.txt', 'scheduler/scheduler_config.json'), plus optional
// ControlNeXt files, a ControlNet folder's files and LoRA files as bytes. Same checks, same errors.

import { SafetensorsFile, type Backend } from '@cnx/tensor';
import {
  AutoencoderKL, CLIPTextModel, CLIPTokenizer, UNet2DConditionModel, createScheduler, fileText, parseSchedulerConfig, subFiles,
  type ModelFiles,
} from '@cnx/unet';
import { ControlNeXt } from '../controlnext/controlnext.js';
import { ControlNetModel } from '../controlnet/controlnet.js';
import { mergeLora, readLoraFile, type MergedLora } from '../lora.js';
import { applyPartialUnet, type PartialUnetReport } from '../controlnext/partial_unet.js';
import type { ControlNeXtVariant, VariantName } from '../controlnext/variants.js';
import { ControllableDiffusionPipeline } from './pipeline.js';
import { ClipPromptEncoder } from './prompt_encoder.js';
import { ControlNetControl, ControlNeXtControl, type PipelineControl } from './pipeline_control.js';

export interface LoadedPipeline {
  pipeline: ControllableDiffusionPipeline;
  partialUnet?: PartialUnetReport;
  loras: MergedLora[];
}

export interface PipelineFromFilesOptions {
  /** Scheduler short name or class (default: UniPC), configured from scheduler/scheduler_config.json. */
  scheduler?: string;
  /** Prefer .fp16 weight files where both are given. */
  prefer?: 'fp32' | 'fp16';
  /** ControlNeXt control module files ('controlnet.safetensors', and its config.json when there). */
  controlnext?: ModelFiles;
  /** ControlNeXt partial UNet weights (unet.safetensors bytes), merged into the base UNet. */
  controlnextUnet?: ArrayBuffer | Uint8Array;
  /** ControlNeXt variant (default sd15), or a user variant. */
  variant?: VariantName | ControlNeXtVariant;
  /** GroupNorm groups of a shrunk release module (not stored in its file). */
  controlnextGroups?: number[];
  /** A diffusers ControlNet folder's files instead of ControlNeXt. */
  controlnet?: ModelFiles;
  /** LoRA files as bytes with their scales (name: for messages and the delta-file rule). */
  loras?: { bytes: ArrayBuffer | Uint8Array; name?: string; scale: number }[];
}

const bytesOf = (b: ArrayBuffer | Uint8Array) => (b instanceof Uint8Array ? b : new Uint8Array(b));

/** Build a Stable Diffusion pipeline (+ ControlNeXt / ControlNet, + LoRAs) from a folder's files in memory. */
export function pipelineFromFiles(files: ModelFiles, backend: Backend, opts: PipelineFromFilesOptions = {}): LoadedPipeline {
  if (opts.controlnext && opts.controlnet) throw new Error('pipelineFromFiles: give a ControlNeXt module or a ControlNet folder, not both');
  const store = { prefer: opts.prefer ?? 'fp32' } as const;
  const schedulerConfig = parseSchedulerConfig(fileText(files, 'scheduler/scheduler_config.json', 'pipelineFromFiles'), 'scheduler/scheduler_config.json');
  const scheduler = createScheduler(opts.scheduler ?? 'unipc', schedulerConfig);
  const unet = UNet2DConditionModel.fromFiles(subFiles(files, 'unet'), backend, store);
  const disposeAll: { dispose(): void }[] = [unet];
  try {
    const vae = AutoencoderKL.fromFiles(subFiles(files, 'vae'), backend, store);
    disposeAll.push(vae);
    const textModel = CLIPTextModel.fromFiles(subFiles(files, 'text_encoder'), backend, store);
    disposeAll.push(textModel);
    const tokenizer = CLIPTokenizer.fromFiles(subFiles(files, 'tokenizer'));
    const variant = opts.variant ?? 'sd15';
    const variantName = typeof variant === 'string' ? variant : undefined;
    let partialUnet: PartialUnetReport | undefined;
    if (opts.controlnextUnet) {
      partialUnet = applyPartialUnet(unet, SafetensorsFile.fromBytes(bytesOf(opts.controlnextUnet), 'unet.safetensors'), backend, { variant: variantName });
    }
    let control: PipelineControl | undefined;
    if (opts.controlnext) {
      const cnx = ControlNeXt.fromFiles(opts.controlnext, backend, { variant, groups: opts.controlnextGroups });
      disposeAll.push(cnx);
      control = new ControlNeXtControl(cnx);
    } else if (opts.controlnet) {
      const net = ControlNetModel.fromFiles(opts.controlnet, backend);
      disposeAll.push(net);
      control = new ControlNetControl({
        forward: (sample, timestep, ctx, cond, conditioningScale) => net.forward(sample, timestep, ctx, cond, { conditioningScale }),
        dispose: () => net.dispose(),
      });
    }
    const loras = (opts.loras ?? []).map(({ bytes, name, scale }) =>
      mergeLora(readLoraFile(SafetensorsFile.fromBytes(bytesOf(bytes), name ?? 'lora.safetensors')), { unet, textEncoder: textModel }, scale));
    const pipeline = new ControllableDiffusionPipeline({
      unet, vae, scheduler, textEncoder: new ClipPromptEncoder(tokenizer, textModel), control,
    });
    return { pipeline, partialUnet, loras };
  } catch (e) {
    disposeAll.forEach((m) => m.dispose());
    throw e;
  }
}
