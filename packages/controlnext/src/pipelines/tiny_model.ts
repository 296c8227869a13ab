// A tiny Stable Diffusion + ControlNeXt with random weights, built in memory: what `cnx generate` runs
// when no model folder is given, so that a first try works without downloading anything. Its output is
// noise from random weights, not a picture; the CLI says so.
//
// Sizes follow the golden cases' tiny models (golden/sd15_pipeline_controlnext): UNet widths
// [16, 32], a 4-block VAE (8 pixels per latent, as SD), a 2-layer CLIP text encoder of width 32, and
// a ControlNeXt-SD1.5 release module shrunk to widths [16, 32, 32]. The tokenizer's vocabulary is the
// 256 byte symbols (plus their end-of-word forms) with no merges: every character is a token.
//
// With `vae: 'block-mean'` the random VAE is replaced by one whose weights are set by construction to
// the 8x8-block-mean codec (block_mean_vae.ts: 3 latent channels, standardised on the synthetic shapes
// set), and the UNet takes 3 latent channels: the UNet and text encoder stay random, but a UNet and
// module trained on this VAE (`cnx train`) draw pictures one can look at.

import { RandomWeights, type Backend } from '@cnx/tensor';
import { AutoencoderKL, CLIPTextModel, CLIPTokenizer, UNet2DConditionModel, bytesToUnicode, createScheduler } from '@cnx/unet';
import { ControlNeXt } from '../controlnext/controlnext.js';
import { ControlNeXtSD15Module } from '../controlnext/controlnext_sd15.js';
import type { LightStructure } from '../controlnext/controlnext_light.js';
import { shapeSample } from '../training/shapes.js';
import { BlockMeanVaeWeights, blockMeanLatentStats, blockMeanVaeConfig } from './block_mean_vae.js';
import { ClipPromptEncoder } from './prompt_encoder.js';
import { ControllableDiffusionPipeline } from './pipeline.js';
import { ControlNeXtControl } from './pipeline_control.js';

export const TINY_UNET_CONFIG = {
  sample_size: 16, in_channels: 4, out_channels: 4,
  down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'],
  block_out_channels: [16, 32], layers_per_block: 1, cross_attention_dim: 32, attention_head_dim: 2,
  norm_num_groups: 8, norm_eps: 1e-5,
};

export const TINY_VAE_CONFIG = {
  in_channels: 3, out_channels: 3, latent_channels: 4, layers_per_block: 1, norm_num_groups: 8, sample_size: 64,
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
  block_out_channels: [8, 16, 16, 16], scaling_factor: 0.18215,
};

/** The SD1.5 scheduler_config.json (every scheduler class reads what it knows from it). */
export const SD15_SCHEDULER_CONFIG = {
  _class_name: 'PNDMScheduler', beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000,
  steps_offset: 1, set_alpha_to_one: false, skip_prk_steps: true, clip_sample: false,
};

/** Byte-level vocabulary without merges: each byte symbol, its end-of-word form, and the specials. */
export function tinyVocab(): Map<string, number> {
  const vocab = new Map<string, number>();
  for (const s of bytesToUnicode()) {
    vocab.set(s, vocab.size);
    vocab.set(`${s}</w>`, vocab.size);
  }
  vocab.set('<|startoftext|>', vocab.size);
  vocab.set('<|endoftext|>', vocab.size);
  return vocab;
}

/** The tiny model's tokenizer: tinyVocab() with no merges (every character is a token). */
export function tinyTokenizer(): CLIPTokenizer {
  return new CLIPTokenizer(tinyVocab(), [], { maxLength: 77 });
}

export interface TinyPipelineOptions {
  /** Seed of the random weights (default 0). */
  seed?: number;
  /** Include a random ControlNeXt-SD1.5 module (default true). */
  control?: boolean;
  /** The VAE: 'random' (default; its images are noise) or 'block-mean' (the exact 8x8-block-mean codec). */
  vae?: TinyVae;
  /** Scheduler short name or class (default unipc). */
  scheduler?: string;
}

/** Pixel size of the tiny model's default output (sample_size 16 latents x 8). */
export const TINY_IMAGE_SIZE = 128;

/** The tiny text encoder's transformers config (vocabulary and special ids from the tokenizer). */
export function tinyTextConfig(tokenizer: CLIPTokenizer): Record<string, unknown> {
  return {
    architectures: ['CLIPTextModel'], model_type: 'clip_text_model', vocab_size: tokenizer.eosId + 1, hidden_size: 32,
    intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, max_position_embeddings: 77, hidden_act: 'quick_gelu',
    layer_norm_eps: 1e-5, bos_token_id: tokenizer.bosId, eos_token_id: tokenizer.eosId, pad_token_id: tokenizer.padId,
  };
}

/** The tiny ControlNeXt-SD1.5 release module's widths (GroupNorm groups [1, 8, 8]: the release's own). */
export const TINY_CONTROLNEXT_STRUCTURE = {
  timeProjDim: 128, timeEmbedDim: 256, inChannels: [3, 16, 32], outChannels: [16, 32, 32], groups: [1, 8, 8],
  midChannels: 32, finalChannels: TINY_UNET_CONFIG.block_out_channels[1]!,
};

/**
 * A tiny light ControlNeXt module (the SD1.5-Training / SDXL architecture, variant sd15_training) for the tiny
 * UNet: what training runs start from with nothing downloaded (cnx train, the convergence experiment, tests).
 */
export const TINY_LIGHT_CONTROLNEXT_STRUCTURE: LightStructure = {
  timeProjDim: 16, timeEmbedDim: 32, stemChannels: [8, 8, 16], stemPadding: 1, inChannels: [16, 16], outChannels: [16, 32],
  groups: [4, 8], midChannels: 32, finalChannels: TINY_UNET_CONFIG.block_out_channels[0]!, scale: 1,
};

export const TINY_VAES = ['random', 'block-mean'] as const;
export type TinyVae = (typeof TINY_VAES)[number];

/**
 * The block-mean VAE's config and weights, its latents standardised with the block-mean statistics of
 * 256 samples of the synthetic shapes set (seed 0) at 64 px: the data it is meant for.
 */
export function tinyBlockMeanVae(backend: Backend): AutoencoderKL {
  const size = 64;
  const stats = blockMeanLatentStats(Array.from({ length: 256 }, (_, i) => ({ rgb: shapeSample(i, { size, seed: 0 }).target, size })));
  return new AutoencoderKL(blockMeanVaeConfig(size), new BlockMeanVaeWeights(stats), backend);
}

/**
 * The tiny model's scheduler config: SD1.5's, and with the block-mean VAE v-prediction (as SD 2.x): a
 * tiny UNet trained for minutes predicts the noise at t ~ 999 with an error that the clean-latent estimate
 * divides by sqrt(alphas_cumprod) ~ 0.07, so epsilon-prediction samples stay noise; v-prediction's
 * estimate does not amplify it (bench/results/convergence/README.md measured both).
 */
export function tinySchedulerConfig(vae: TinyVae = 'random'): Record<string, unknown> {
  return vae === 'block-mean' ? { ...SD15_SCHEDULER_CONFIG, prediction_type: 'v_prediction' } : SD15_SCHEDULER_CONFIG;
}

/** The tiny UNet's config for a VAE (the block-mean VAE has 3 latent channels). */
export function tinyUnetConfig(vae: TinyVae = 'random'): typeof TINY_UNET_CONFIG {
  return vae === 'block-mean' ? { ...TINY_UNET_CONFIG, in_channels: 3, out_channels: 3 } : TINY_UNET_CONFIG;
}

/** The tiny model's parts with their random weights (what tinyPipeline assembles and tinyModelFiles writes out). */
export interface TinyModels {
  tokenizer: CLIPTokenizer;
  textModel: CLIPTextModel;
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  controlModule?: ControlNeXtSD15Module;
}

export function tinyModels(backend: Backend, opts: Pick<TinyPipelineOptions, 'seed' | 'control' | 'vae'> = {}): TinyModels {
  const seed = opts.seed ?? 0;
  const ws = (k: number) => new RandomWeights({ seed: seed * 16 + k });
  const tokenizer = tinyTokenizer();
  const textModel = new CLIPTextModel(tinyTextConfig(tokenizer), ws(1), backend);
  const unet = new UNet2DConditionModel(tinyUnetConfig(opts.vae), ws(2), backend);
  const vae = opts.vae === 'block-mean' ? tinyBlockMeanVae(backend) : new AutoencoderKL(TINY_VAE_CONFIG, ws(3), backend);
  const controlModule = (opts.control ?? true) ? new ControlNeXtSD15Module(ws(4), backend, TINY_CONTROLNEXT_STRUCTURE) : undefined;
  return { tokenizer, textModel, unet, vae, ...(controlModule ? { controlModule } : {}) };
}

export function tinyPipeline(backend: Backend, opts: TinyPipelineOptions = {}): ControllableDiffusionPipeline {
  const { tokenizer, textModel, unet, vae, controlModule } = tinyModels(backend, opts);
  const control = controlModule ? new ControlNeXtControl(new ControlNeXt('sd15', controlModule, backend)) : undefined;
  return new ControllableDiffusionPipeline({
    unet, vae, scheduler: createScheduler(opts.scheduler ?? 'unipc', tinySchedulerConfig(opts.vae)),
    textEncoder: new ClipPromptEncoder(tokenizer, textModel), control,
  });
}
