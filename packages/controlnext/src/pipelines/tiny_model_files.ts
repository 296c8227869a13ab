// The tiny random Stable Diffusion + ControlNeXt (tiny_model.ts) as the files of a real model folder, so
// that a first run needs no download: `cnx tiny-model DIR` writes them (node/tiny_model_folder.ts), the
// browser demo builds them in memory, and loadPipeline / pipelineFromFiles load them through exactly the
// path a real SD1.5 folder takes. Layout (the Hugging Face diffusers layout, plus ControlNeXt's files as
// its repository ships them):
//
//   model_index.json                      StableDiffusionPipeline, the class of each part
//   unet/config.json, unet/diffusion_pytorch_model.safetensors
//   vae/config.json,  vae/diffusion_pytorch_model.safetensors
//   text_encoder/config.json, text_encoder/model.safetensors      (transformers CLIPTextModel)
//   tokenizer/vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json
//   scheduler/scheduler_config.json       SD1.5's PNDMScheduler config
//   controlnext/controlnet.safetensors    the ControlNeXt-SD1.5 release module (widths [16, 32, 32])
//   controlnext/unet.safetensors          the partial UNet file (every attention to_out tensor), here the
//                                         base's own values, so that merging it changes nothing
//   README.md                             what this folder is
//
// Loaded with its ControlNeXt files, the folder gives exactly tinyPipeline(backend, { seed })'s images
// (same weights, same scheduler config). The weights are random: the images are noise.

import { CpuBackend, encodeSafetensors, type SafetensorsEntry } from '@cnx/tensor';
import type { Module } from '@cnx/unet';
import { blockMeanVaeConfig } from './block_mean_vae.js';
import { TINY_VAE_CONFIG, tinyModels, tinySchedulerConfig, tinyTextConfig, tinyUnetConfig, tinyVocab, type TinyVae } from './tiny_model.js';

/** diffusers version named in the configs (the reference version of the golden cases). */
const DIFFUSERS_VERSION = '0.29.2';

export interface TinyModelFilesOptions {
  /** Seed of the random weights (default 0; the same seed as tinyPipeline's gives the same model). */
  seed?: number;
  /** 'random' (default) or 'block-mean': the VAE set by construction to the 8x8-block-mean codec (tiny_model.ts). */
  vae?: TinyVae;
}

/** Every file of the tiny model folder by relative path ('unet/config.json', ...). */
export type TinyModelFiles = Record<string, Uint8Array | string>;

async function weightsFile(module: Module, keep: (key: string) => boolean = () => true): Promise<Uint8Array> {
  const entries: Record<string, SafetensorsEntry> = {};
  for (const [key, t] of module.namedParameters()) {
    if (keep(key)) entries[key] = { dtype: 'F32', shape: t.shape, data: await t.data() };
  }
  return encodeSafetensors(entries, { format: 'pt' });
}

const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';

const README = (seed: number, vae: TinyVae) => `# A tiny RANDOM-weight Stable Diffusion 1.5 + ControlNeXt (seed ${seed})

Written by \`cnx tiny-model\` (controlnext-ts). Same layout as a real diffusers SD1.5 folder and ControlNeXt's
files, with tiny widths (UNet [16, 32], ${vae === 'block-mean' ? 'VAE [12, 12, 12, 12]' : 'VAE [8, 16, 16, 16]'}, a 2-layer CLIP text encoder, a byte-level
tokenizer) and random weights: everything loads and runs in seconds, and the images are noise.
${vae === 'block-mean' ? `
The VAE is not random: its weights are set by construction to an exact codec (latents = the standardised
8x8 block means of the image, 3 channels; decode = bilinear upsampling) and the scheduler predicts v (as SD 2.x),
so a UNet and ControlNeXt module
trained on this folder with \`cnx train --model <this folder>\` draw recognisable (blurred) pictures.
` : ''}
    npx cnx generate --model . --controlnext controlnext/controlnet.safetensors \\
      --controlnext-unet controlnext/unet.safetensors --control-image controlnext/example_condition.png \\
      --prompt "a test" --steps 4
`;

/** The tiny model folder's files (builds the models on a CPU backend, reads their weights, encodes them). */
export async function tinyModelFiles(opts: TinyModelFilesOptions = {}): Promise<TinyModelFiles> {
  const seed = opts.seed ?? 0, vae = opts.vae ?? 'random';
  const backend = new CpuBackend();
  const m = tinyModels(backend, { seed, control: true, vae });
  try {
    const vocab: Record<string, number> = {};
    for (const [tok, id] of tinyVocab()) vocab[tok] = id;
    const special = { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', pad_token: '<|endoftext|>' };
    return {
      'model_index.json': json({
        _class_name: 'StableDiffusionPipeline', _diffusers_version: DIFFUSERS_VERSION,
        feature_extractor: [null, null], requires_safety_checker: false, safety_checker: [null, null],
        scheduler: ['diffusers', 'PNDMScheduler'], text_encoder: ['transformers', 'CLIPTextModel'],
        tokenizer: ['transformers', 'CLIPTokenizer'], unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'],
      }),
      'unet/config.json': json({ _class_name: 'UNet2DConditionModel', _diffusers_version: DIFFUSERS_VERSION, ...tinyUnetConfig(vae) }),
      'unet/diffusion_pytorch_model.safetensors': await weightsFile(m.unet),
      'vae/config.json': json({ _class_name: 'AutoencoderKL', _diffusers_version: DIFFUSERS_VERSION, ...(vae === 'block-mean' ? blockMeanVaeConfig(64) : TINY_VAE_CONFIG) }),
      'vae/diffusion_pytorch_model.safetensors': await weightsFile(m.vae),
      'text_encoder/config.json': json({ ...tinyTextConfig(m.tokenizer), torch_dtype: 'float32' }),
      'text_encoder/model.safetensors': await weightsFile(m.textModel),
      'tokenizer/vocab.json': json(vocab),
      'tokenizer/merges.txt': '#version: 0.2\n',
      'tokenizer/special_tokens_map.json': json(special),
      'tokenizer/tokenizer_config.json': json({ ...special, model_max_length: m.tokenizer.maxLength, tokenizer_class: 'CLIPTokenizer' }),
      'scheduler/scheduler_config.json': json({ ...tinySchedulerConfig(vae), _diffusers_version: DIFFUSERS_VERSION }),
      'controlnext/controlnet.safetensors': await weightsFile(m.controlModule!),
      'controlnext/unet.safetensors': await weightsFile(m.unet, (k) => /\.to_out\./.test(k)),
      'README.md': README(seed, vae),
    };
  } finally {
    for (const part of [m.unet, m.vae, m.textModel, m.controlModule]) part?.dispose();
    backend.destroy();
  }
}

/** Files of tinyModelFiles as a pipelineFromFiles argument pair: the SD folder, the ControlNeXt files. */
export function splitTinyModelFiles(files: TinyModelFiles): { sd: TinyModelFiles; controlnext: TinyModelFiles; controlnextUnet: Uint8Array } {
  const sd: TinyModelFiles = {};
  for (const [k, v] of Object.entries(files)) if (!k.startsWith('controlnext/')) sd[k] = v;
  const unet = files['controlnext/unet.safetensors'];
  if (!(unet instanceof Uint8Array)) throw new Error('splitTinyModelFiles: controlnext/unet.safetensors missing');
  return { sd, controlnext: { 'controlnet.safetensors': files['controlnext/controlnet.safetensors']! }, controlnextUnet: unet };
}
