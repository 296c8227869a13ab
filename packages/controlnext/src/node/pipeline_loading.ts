// Node only (the package's Node entry, src/node.ts). Browsers build the same pipeline from bytes with
// pipelineFromFiles (pipelines/pipeline_from_files.ts).
//
// Building a pipeline from files on disk: a Stable Diffusion folder in the Hugging Face diffusers layout
//   model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/   (fp32 or .fp16 weights)
// plus, optionally, ControlNeXt's files (the control module `controlnet.safetensors` and the partial
// UNet `unet.safetensors`, spec 3.3 / 10) or a diffusers ControlNet folder, and LoRA files.
// Every missing piece is an error that names the file and says what the folder should contain.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '@cnx/tensor';
import { AutoencoderKL, CLIPTextModel, CLIPTokenizer, UNet2DConditionModel, createScheduler, readSchedulerConfigFile } from '@cnx/unet';
import { ControlNeXt } from '../controlnext/controlnext.js';
import { ControlNetModel } from '../controlnet/controlnet.js';
import { mergeLora, readLoraFile } from '../lora.js';
import type { LoadedPipeline } from '../pipelines/pipeline_from_files.js';
import { applyPartialUnet, type PartialUnetReport } from '../controlnext/partial_unet.js';
import { ControllableDiffusionPipeline } from '../pipelines/pipeline.js';
import { ClipPromptEncoder } from '../pipelines/prompt_encoder.js';
import { ControlNetControl, ControlNeXtControl, type PipelineControl } from '../pipelines/pipeline_control.js';
import type { VariantName } from '../controlnext/variants.js';

export const SD_FOLDER_LAYOUT = 'a Stable Diffusion diffusers folder holds model_index.json, unet/, vae/, text_encoder/, tokenizer/ and scheduler/ ' +
  '(each model folder: config.json + diffusion_pytorch_model[.fp16].safetensors, text_encoder/: config.json + model[.fp16].safetensors, ' +
  'tokenizer/: vocab.json + merges.txt, scheduler/: scheduler_config.json)';

/** Check a diffusers folder and name what is missing. */
export function checkModelFolder(dir: string): void {
  if (!existsSync(dir)) throw new Error(`model folder ${dir} does not exist (${SD_FOLDER_LAYOUT})`);
  if (!statSync(dir).isDirectory()) throw new Error(`model folder ${dir} is a file, not a folder (${SD_FOLDER_LAYOUT})`);
  const need = ['unet/config.json', 'vae/config.json', 'text_encoder/config.json', 'tokenizer/vocab.json', 'tokenizer/merges.txt', 'scheduler/scheduler_config.json'];
  const missing = need.filter((p) => !existsSync(join(dir, p)));
  if (missing.length > 0) throw new Error(`model folder ${dir} is missing ${missing.join(', ')} (${SD_FOLDER_LAYOUT})`);
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
  /** ControlNeXt variant (default sd15: the released SD1.5 weights). */
  variant?: VariantName;
  /** GroupNorm groups of a shrunk release module (not stored in its file). */
  controlnextGroups?: number[];
  /** A diffusers ControlNet folder instead of ControlNeXt. */
  controlnet?: string;
  /** LoRA files merged into the UNet and text encoder with their scales. */
  loras?: { path: string; scale: number }[];
}


/** Load a diffusers Stable Diffusion folder (+ ControlNeXt / ControlNet, + LoRAs) onto a backend. */
export function loadPipeline(dir: string, backend: Backend, opts: LoadPipelineOptions = {}): LoadedPipeline {
  checkModelFolder(dir);
  if (opts.controlnext && opts.controlnet) throw new Error('loadPipeline: give a ControlNeXt module or a ControlNet folder, not both');
  for (const [what, p] of [['ControlNeXt module', opts.controlnext], ['ControlNeXt partial UNet', opts.controlnextUnet], ['ControlNet folder', opts.controlnet]] as const) {
    if (p !== undefined && !existsSync(p)) throw new Error(`${what} ${p} does not exist`);
  }
  const store = { prefer: opts.prefer ?? 'fp32' } as const;
  const schedulerPath = join(dir, 'scheduler', 'scheduler_config.json');
  const schedulerConfig = readSchedulerConfigFile(schedulerPath);
  let scheduler: ReturnType<typeof createScheduler>;
  try {
    scheduler = createScheduler(opts.scheduler ?? 'unipc', schedulerConfig);
  } catch (e) {
    throw new Error(`${schedulerPath}: ${(e as Error).message}`); // the scheduler class names the key, not the file
  }
  const unet = UNet2DConditionModel.fromFolder(join(dir, 'unet'), backend, store);
  const disposeAll: { dispose(): void }[] = [unet];
  try {
    const vae = AutoencoderKL.fromFolder(join(dir, 'vae'), backend, store);
    disposeAll.push(vae);
    const textModel = CLIPTextModel.fromFolder(join(dir, 'text_encoder'), backend, store);
    disposeAll.push(textModel);
    const tokenizer = CLIPTokenizer.fromFolder(join(dir, 'tokenizer'));
    let partialUnet: PartialUnetReport | undefined;
    if (opts.controlnextUnet) partialUnet = applyPartialUnet(unet, opts.controlnextUnet, backend, { variant: opts.variant ?? 'sd15' });
    let control: PipelineControl | undefined;
    if (opts.controlnext) {
      const cnx = ControlNeXt.load(opts.controlnext, backend, { variant: opts.variant ?? 'sd15', groups: opts.controlnextGroups });
      disposeAll.push(cnx);
      control = new ControlNeXtControl(cnx);
    } else if (opts.controlnet) {
      const net = ControlNetModel.fromFolder(opts.controlnet, backend);
      disposeAll.push(net);
      control = new ControlNetControl({
        forward: (sample, timestep, ctx, cond, conditioningScale) => net.forward(sample, timestep, ctx, cond, { conditioningScale }),
        dispose: () => net.dispose(),
      });
    }
    // LoRAs after the ControlNeXt UNet weights (as run_controlnext.py loads them).
    const loras = (opts.loras ?? []).map(({ path, scale }) => mergeLora(readLoraFile(path), { unet, textEncoder: textModel }, scale));
    const pipeline = new ControllableDiffusionPipeline({
      unet, vae, scheduler, textEncoder: new ClipPromptEncoder(tokenizer, textModel), control,
    });
    return { pipeline, partialUnet, loras };
  } catch (e) {
    disposeAll.forEach((m) => m.dispose());
    throw e;
  }
}
