// Stable Diffusion XL (+ ControlNeXt-SDXL): the shared denoising loop of pipeline.ts with SDXL's
// conditioning, as diffusers v0.29.2 StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline
// (pipeline_stable_diffusion_xl[_img2img].py) and the ControlNeXt repo's StableDiffusionXLControlNeXtPipeline
// (ControlNeXt-SDXL/pipeline/pipeline_controlnext.py, spec 5.3) run it:
//
//  - text: two CLIP encoders (sdxl_prompt_encoder.ts): states = penultimate hidden states of both,
//    concatenated; pooled = text_encoder_2's projected EOS state. Without a negative prompt (and without
//    negative embeddings) the negative side is ZEROS when the pipeline's force_zeros_for_empty_prompt is
//    set (model_index.json; true for SDXL base), else the encoding of "".
//  - added conditioning (UNet addition_embed_type "text_time"): text_embeds = [negative pooled; pooled],
//    time_ids = original_size + crops_coords_top_left + target_size (each (h, w); defaults (height,
//    width), (0, 0), (height, width)). Text-to-image: the negative ids use the negative_* sizes only when
//    BOTH negative_original_size and negative_target_size are given, else the positive ids, and the rows
//    are cat([neg, pos]).repeat(B, 1): [neg, pos, neg, pos, ...] against the UNet batch [neg x B; pos x B],
//    so with B > 1 and distinct negative ids the halves interleave. That is the reference's behaviour
//    (the golden case records it) and it is reproduced, not fixed.
//    Image-to-image (the Img2Img pipeline): negative ids = negative_original_size (default original) +
//    the POSITIVE crops + negative_target_size (default target), or with requires_aesthetics_score (the
//    refiner) original + crops + (aesthetic_score,) and negative_original + negative_crops +
//    (negative_aesthetic_score,); rows are neg x B then pos x B (paired correctly there).
//    len(time_ids) * addition_time_embed_dim + pooled width must equal the UNet's
//    projection_class_embeddings_input_dim (diffusers _get_add_time_ids' check).
//  - output size: height or unet.sample_size * vae_scale_factor (the control image does not set it);
//    image-to-image: the init image's size.
//  - control image: resized to (height, width) like VaeImageProcessor.preprocess does with a tensor,
//    torch.nn.functional.interpolate(image, size) (mode 'nearest'); values stay in [0, 1].
//  - control scale: the module's scale (1.0 for the SDXL module) x controlnet_scale, formed afresh each
//    step (the repo multiplies a new dict each step: nothing accumulates), both CFG halves.
//  - VAE: scaling_factor from its config (0.13025 for SDXL's); latents_mean / latents_std de-normalise the
//    latents when the config has both. force_upcast (diffusers: a float16 VAE with force_upcast decodes,
//    and img2img encodes, in float32): the VAE's encode and decode run inside backend.inFullPrecision, so
//    a backend computing in f16 (WebGPU compute 'f16') runs them with its f32 kernels. 16-bit weights
//    (fp16 files, or an f16 weight-storage backend) are widened exactly to f32 in those kernels, as
//    diffusers' upcast widens them; a backend that computes in f32 anyway has nothing to switch.
//  - defaults: guidance 5.0 (the pipeline's), 20 steps (the ControlNeXt run script's), img2img strength 0.3.

import { ops, type Tensor } from '@cnx/tensor';
import {
  asList, DenoisingPipeline, type Conditioning, type ConditioningSetup, type DenoisingComponents, type GenerateOptions, type PipelineDefaults,
} from './pipeline.js';
import type { SDXLPromptEncoder, SDXLPromptEmbeddings } from './sdxl_prompt_encoder.js';

/** A (height, width) or (top, left) pair of the micro-conditioning. */
export type SizePair = readonly [number, number];

/** The pipeline-level settings of an SDXL folder's model_index.json. */
export interface SDXLPipelineConfig {
  /** Zeros as the negative conditioning when no negative prompt is given (diffusers default true). */
  forceZerosForEmptyPrompt: boolean;
  /** Img2img time ids carry an aesthetic score instead of the target size (SDXL refiner). */
  requiresAestheticsScore: boolean;
}

export interface SDXLPipelineComponents extends DenoisingComponents {
  /** Needed unless prompt and pooled embeddings are passed to generate(). */
  textEncoder?: SDXLPromptEncoder;
  config?: Partial<SDXLPipelineConfig>;
}

export interface SDXLGenerateOptions extends GenerateOptions {
  /** Prompts for text_encoder_2 (default: prompt). */
  prompt2?: string | readonly string[];
  negativePrompt2?: string | readonly string[];
  /** Precomputed pooled embeddings [B, P]; required with promptEmbeds (and negativePromptEmbeds). */
  pooledPromptEmbeds?: Tensor;
  negativePooledPromptEmbeds?: Tensor;
  /** Micro-conditioning (pixels); defaults: (height, width), (0, 0), (height, width). */
  originalSize?: SizePair;
  cropsCoordsTopLeft?: SizePair;
  targetSize?: SizePair;
  negativeOriginalSize?: SizePair;
  negativeCropsCoordsTopLeft?: SizePair;
  negativeTargetSize?: SizePair;
  /** Image-to-image with requires_aesthetics_score: defaults 6.0 and 2.5. */
  aestheticScore?: number;
  negativeAestheticScore?: number;
}

const DEFAULT_CONFIG: SDXLPipelineConfig = { forceZerosForEmptyPrompt: true, requiresAestheticsScore: false };

function checkPair(name: string, v: SizePair | undefined): void {
  if (v !== undefined && !(Array.isArray(v) && v.length === 2 && v.every((x) => Number.isFinite(x)))) {
    throw new Error(`generate: ${name} must be a pair of numbers [h, w], found ${JSON.stringify(v)}`);
  }
}

/**
 * The micro-conditioning rows for a UNet batch (see the header): one row of ids per sample, for B images
 * (cfg: the batch is [negative x B; positive x B]).
 */
export function sdxlTimeIdRows(
  o: SDXLGenerateOptions, setup: { batch: number; cfg: boolean; height: number; width: number; imageToImage: boolean; requiresAestheticsScore: boolean },
): number[][] {
  for (const k of ['originalSize', 'cropsCoordsTopLeft', 'targetSize', 'negativeOriginalSize', 'negativeCropsCoordsTopLeft', 'negativeTargetSize'] as const) {
    checkPair(k, o[k]);
  }
  const size: SizePair = [setup.height, setup.width];
  const original = o.originalSize ?? size;
  const crops = o.cropsCoordsTopLeft ?? [0, 0];
  const target = o.targetSize ?? size;
  const negCrops = o.negativeCropsCoordsTopLeft ?? [0, 0];
  const { batch: B, cfg } = setup;
  if (!setup.imageToImage) {
    // StableDiffusionXLPipeline / StableDiffusionXLControlNeXtPipeline.
    const pos = [...original, ...crops, ...target];
    const neg = o.negativeOriginalSize && o.negativeTargetSize ? [...o.negativeOriginalSize, ...negCrops, ...o.negativeTargetSize] : pos;
    // cat([neg, pos]).repeat(B, 1): rows alternate, whatever the UNet batch order.
    return cfg ? Array.from({ length: 2 * B }, (_, r) => (r % 2 === 0 ? neg : pos)) : Array.from({ length: B }, () => pos);
  }
  // StableDiffusionXLImg2ImgPipeline.
  const negOriginal = o.negativeOriginalSize ?? original;
  const negTarget = o.negativeTargetSize ?? target;
  let pos: number[], neg: number[];
  if (setup.requiresAestheticsScore) {
    pos = [...original, ...crops, o.aestheticScore ?? 6.0];
    neg = [...negOriginal, ...negCrops, o.negativeAestheticScore ?? 2.5];
  } else {
    pos = [...original, ...crops, ...target];
    neg = [...negOriginal, ...crops, ...negTarget];
  }
  const rows = (r: number[]) => Array.from({ length: B }, () => r);
  return cfg ? [...rows(neg), ...rows(pos)] : rows(pos);
}

export class StableDiffusionXLPipeline extends DenoisingPipeline<SDXLGenerateOptions, SDXLPipelineComponents> {
  protected readonly defaults: PipelineDefaults = { numInferenceSteps: 20, guidanceScale: 5.0, strength: 0.3 };
  readonly config: SDXLPipelineConfig;

  constructor(components: SDXLPipelineComponents) {
    super(components);
    this.config = { ...DEFAULT_CONFIG, ...components.config };
    if (components.control?.kind === 'controlnet') {
      throw new Error('StableDiffusionXLPipeline: a diffusers ControlNet is supported with SD 1.x/2.x only (an SDXL ControlNet needs the added conditioning too); use ControlNeXt-SDXL');
    }
    if (this.unet.config.addition_embed_type !== 'text_time') {
      throw new Error('StableDiffusionXLPipeline: the UNet config has no addition_embed_type "text_time" (an SD 1.x/2.x UNet?); use ControllableDiffusionPipeline');
    }
  }

  /** SDXL's reference ignores the control image's size; image-to-image takes the init image's. */
  protected override sizeFromImages(o: SDXLGenerateOptions): [number | undefined, number | undefined] {
    return [o.initImage?.shape[2], o.initImage?.shape[3]];
  }

  /** VaeImageProcessor.preprocess of a tensor: interpolate(image, size=(height, width)), mode 'nearest'. */
  protected override controlImageAt(image: Tensor, height: number, width: number): Tensor {
    if (image.rank !== 4) throw new Error(`generate: expected a control image [B, 3, H, W], found ${image.toString()}`);
    if (image.shape[2] === height && image.shape[3] === width) return image;
    return ops.upsampleNearest(image, [height, width]);
  }

  /** force_upcast: the VAE in full precision (see the header). */
  protected override withVaePrecision<T>(fn: () => T): T {
    const b = this.backend;
    return this.vae.config.force_upcast && b.inFullPrecision ? b.inFullPrecision(fn) : fn();
  }

  private latentStats(): { mean: Tensor; std: Tensor } | undefined {
    const { latents_mean: m, latents_std: s } = this.vae.config;
    if (!m || !s) return undefined;
    const C = this.vae.config.latent_channels;
    if (m.length !== C || s.length !== C) {
      throw new Error(`StableDiffusionXLPipeline: VAE config latents_mean / latents_std need ${C} entries, found ${m.length} / ${s.length}`);
    }
    return {
      mean: this.backend.fromRaw(Float32Array.from(m), [1, C, 1, 1]),
      std: this.backend.fromRaw(Float32Array.from(s), [1, C, 1, 1]),
    };
  }

  /** latents * latents_std / scaling_factor + latents_mean when the VAE config has both, else latents / scaling_factor. */
  protected override decoderInput(latents: Tensor): Tensor {
    const st = this.latentStats();
    if (!st) return super.decoderInput(latents);
    const scaled = ops.scale(ops.mul(latents, st.std), 1 / this.vae.scalingFactor);
    return ops.add(scaled, st.mean);
  }

  /** (sample - latents_mean) * scaling_factor / latents_std, else sample * scaling_factor. */
  protected override latentsOfEncoded(sample: Tensor): Tensor {
    const st = this.latentStats();
    if (!st) return super.latentsOfEncoded(sample);
    const centred = ops.scale(ops.binary('sub', sample, st.mean), this.vae.scalingFactor);
    return ops.binary('div', centred, st.std);
  }

  private encodePrompts(prompts: readonly string[], prompts2: readonly string[] | undefined, what: string): SDXLPromptEmbeddings {
    const enc = this.components.textEncoder;
    if (!enc) throw new Error(`generate: this SDXL pipeline has no text encoders; pass ${what}`);
    return enc.encode(prompts, prompts2);
  }

  protected encodeConditioning(o: SDXLGenerateOptions, setup: ConditioningSetup): Conditioning {
    const { perPrompt, cfg } = setup;
    // Positive side.
    let pos: SDXLPromptEmbeddings;
    if (o.promptEmbeds) {
      if (!o.pooledPromptEmbeds) throw new Error('generate: promptEmbeds given without pooledPromptEmbeds (SDXL needs both)');
      pos = { states: o.promptEmbeds.reshape(o.promptEmbeds.shape), pooled: o.pooledPromptEmbeds.reshape(o.pooledPromptEmbeds.shape) };
    } else {
      const prompts = asList(o.prompt);
      if (!prompts || prompts.length === 0) throw new Error('generate: give a prompt (or promptEmbeds + pooledPromptEmbeds)');
      const prompts2 = asList(o.prompt2);
      if (prompts2 && prompts2.length !== prompts.length) throw new Error(`generate: ${prompts2.length} prompt2 entries for ${prompts.length} prompts`);
      pos = this.encodePrompts(prompts, prompts2, 'promptEmbeds + pooledPromptEmbeds');
    }
    const P = pos.states.shape[0]!;
    if (pos.states.rank !== 3 || pos.pooled.rank !== 2 || pos.pooled.shape[0] !== P) {
      throw new Error(`generate: SDXL prompt embeddings must be [B, L, D] and pooled [B, P], found ${pos.states.toString()} and ${pos.pooled.toString()}`);
    }
    // Negative side.
    let neg: SDXLPromptEmbeddings | undefined;
    if (cfg) {
      if (o.negativePromptEmbeds) {
        if (!o.negativePooledPromptEmbeds) throw new Error('generate: negativePromptEmbeds given without negativePooledPromptEmbeds (SDXL needs both)');
        neg = { states: o.negativePromptEmbeds.reshape(o.negativePromptEmbeds.shape), pooled: o.negativePooledPromptEmbeds.reshape(o.negativePooledPromptEmbeds.shape) };
      } else if (o.negativePrompt === undefined && this.config.forceZerosForEmptyPrompt) {
        neg = { states: ops.scale(pos.states, 0), pooled: ops.scale(pos.pooled, 0) };
      } else {
        const many = (v: string | readonly string[] | undefined, dflt: string[]) => {
          const l = asList(v) ?? dflt;
          return l.length === 1 && P > 1 ? Array.from({ length: P }, () => l[0]!) : l;
        };
        const negs = many(o.negativePrompt, ['']);
        const negs2 = many(o.negativePrompt2, negs);
        if (negs.length !== P || negs2.length !== P) {
          throw new Error(`generate: ${negs.length} negative prompts (${negs2.length} for the second encoder) for ${P} prompts (give one, or one per prompt)`);
        }
        neg = this.encodePrompts(negs, negs2, 'negativePromptEmbeds + negativePooledPromptEmbeds');
      }
      if (neg.states.shape.join() !== pos.states.shape.join() || neg.pooled.shape.join() !== pos.pooled.shape.join()) {
        throw new Error(`generate: negative embeddings ${neg.states.toString()} / ${neg.pooled.toString()} must match the prompt's ` +
          `${pos.states.toString()} / ${pos.pooled.toString()}`);
      }
    }
    // Images per prompt: each prompt's copies adjacent (diffusers' repeat + view).
    const repeat = (t: Tensor) => {
      if (perPrompt === 1) return t;
      return t.unsqueeze(1).expand([t.shape[0]!, perPrompt, ...t.shape.slice(1)]).reshape([-1, ...t.shape.slice(1)]);
    };
    const B = P * perPrompt;
    const ctx = neg ? ops.concat([repeat(neg.states), repeat(pos.states)], 0) : repeat(pos.states);
    const textEmbeds = neg ? ops.concat([repeat(neg.pooled), repeat(pos.pooled)], 0) : repeat(pos.pooled);

    const rows = sdxlTimeIdRows(o, { ...setup, batch: B, requiresAestheticsScore: this.config.requiresAestheticsScore });
    const c = this.unet.config;
    const ids = rows[0]!.length;
    const passed = c.addition_time_embed_dim! * ids + textEmbeds.shape[1]!;
    if (passed !== c.projection_class_embeddings_input_dim) {
      throw new Error(`StableDiffusionXLPipeline: the UNet expects an added embedding of ${c.projection_class_embeddings_input_dim} values ` +
        `(projection_class_embeddings_input_dim), but ${ids} time ids x addition_time_embed_dim ${c.addition_time_embed_dim} + pooled ` +
        `${textEmbeds.shape[1]} = ${passed}` + (setup.imageToImage ? ' (check requires_aesthetics_score in model_index.json)' : ''));
    }
    const timeIds = this.backend.fromRaw(Float32Array.from(rows.flat()), [rows.length, ids]);
    return { ctx, batch: B, addedCond: { textEmbeds, timeIds } };
  }

  protected override disposeModels(): void {
    super.disposeModels();
    this.components.textEncoder?.dispose();
  }
}
