// The controllable text-to-image (and image-to-image) pipelines, written as ONE visible loop like diffusers'
// StableDiffusionPipeline.__call__ (v0.29.2 pipeline_stable_diffusion.py) and the ControlNeXt repo's
// StableDiffusionControlNextPipeline (ControlNeXt-SD1.5/models/pipeline_controlnext.py):
//
//   cond = the family's conditioning: ctx = [negative; positive] text states (CFG: batch 2B) (+ SDXL's
//          added text_time conditioning, sdxl_pipeline.ts)
//   latents = N(0, 1) * init_noise_sigma                    (or VAE(init image) noised to the start step)
//   for t in timesteps:
//     x = scale_model_input([latents; latents], t)
//     u = unet(x, t, ctx, added cond, control for t)
//     eps = u_uncond + g * (u_text - u_uncond)              (noise_cfg)
//     eps = rescale_noise_cfg(eps, u_text, guidance_rescale)   (when guidance_rescale > 0)
//     latents = scheduler.step(eps, t, latents)
//   image = clamp(vae.decode(latents / scaling_factor) / 2 + 0.5, 0, 1)
//
// DenoisingPipeline holds the loop; a model family is a subclass that says how its conditioning is
// built (encodeConditioning), and where it differs from Stable Diffusion 1.x/2.x, its output size,
// control image and latent scaling rules. ControllableDiffusionPipeline below is SD 1.x/2.x;
// StableDiffusionXLPipeline (sdxl_pipeline.ts) is the same loop with SDXL's two text encoders and
// micro-conditioning.
//
// Each step runs in its own memory scope: only the new latents (and the scheduler's own history) live
// on, so memory does not grow with the number of steps.
//
// Research seams per call (nothing is stored on the pipeline or its modules): `hooks` (UNet hooks by site
// or module path, after the control's own), `trace` (every named intermediate: 'unet.*', 'controlnext.*',
// 'inject.*'), and `onStepEnd` with `stepTensors` (diffusers' callback_on_step_end and its tensor-inputs
// list): the named tensors of each step, including the feature at the injection site
// ('inject.sample_before') and the control map ('control').

import { ops, scope, scopeAsync, subTrace, type Backend, type Tensor, type Trace } from '@cnx/tensor';
import {
  type AutoencoderKL, type UNet2DConditionModel, type UNetForwardOptions, clamp, composeHooks, type Hooks, type Scheduler, RandomGenerator,
  type NoiseSource,
} from '@cnx/unet';
import type { ControlOutput } from '../controlnext/control_module.js';
import type { ActiveControl, PipelineControl } from './pipeline_control.js';
import { CallQueue } from './call_queue.js';
import { FiniteGuard } from './finite_guard.js';

/** Turns prompts into the text states the UNet attends to. */
export interface PromptEncoder {
  /** [prompts.length, L, D] (CLIP last_hidden_state for Stable Diffusion 1.x). */
  encode(prompts: readonly string[]): Tensor;
  dispose(): void;
}

/** What every pipeline family holds besides its text encoders. */
export interface DenoisingComponents {
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  scheduler: Scheduler;
  control?: PipelineControl;
}

/** Stable Diffusion 1.x/2.x. */
export interface PipelineComponents extends DenoisingComponents {
  /** Needed unless prompt embeddings are passed to generate(). */
  textEncoder?: PromptEncoder;
}

/**
 * One generation's conditioning, built by the pipeline family before the loop: the same for every
 * step. N is the UNet batch: 2B under classifier-free guidance ([negative x B; positive x B]), else B.
 */
export interface Conditioning {
  /** Text states [N, L, D]. */
  ctx: Tensor;
  /** Images in the batch (B, prompts x images per prompt). */
  batch: number;
  /** SDXL's text_time conditioning: pooled text embeddings [N, P] and micro-conditioning time ids [N, k]. */
  addedCond?: UNetForwardOptions['addedCond'];
}

/** What encodeConditioning knows of the call besides its options. */
export interface ConditioningSetup {
  /** Images per prompt. */
  perPrompt: number;
  /** Classifier-free guidance is on (guidance scale > 1). */
  cfg: boolean;
  /** Output size in pixels. */
  height: number;
  width: number;
  /** Image-to-image (an init image is given). */
  imageToImage: boolean;
}

/** What a step observer sees; the tensors are valid only until the callback (or its promise) returns. */
export interface StepState {
  /** 0-based step number and the number of steps of this generation. */
  index: number;
  total: number;
  timestep: number;
  /** The UNet input after scale_model_input, [N, 4, h, w] (N = 2B under CFG). */
  modelInput: Tensor;
  unetOutput: Tensor;
  /** After guidance (and guidance_rescale), [B, 4, h, w]. */
  noisePred: Tensor;
  /** The guidance combination before guidance_rescale (diffusers' noise_cfg); noisePred itself when no rescale runs. */
  noiseCfg: Tensor;
  /** The latents after this step, [B, 4, h, w]. */
  latents: Tensor;
  /** ControlNeXt's module output for this step (map at the control image's batch, module scale). */
  control?: ControlOutput;
  /**
   * ControlNeXt: the scale the injection used this step (the module's scale by the variant's rule times
   * this call's strength; the SDXL pipeline's controls['scale'] after `*= controlnet_scale`): a number,
   * or a per-sample [N] tensor.
   */
  controlScale?: number | Tensor;
  /** The tensors named in GenerateOptions.stepTensors, by name. */
  tensors: Readonly<Record<string, Tensor>>;
}

/** Names every step can give (GenerateOptions.stepTensors), besides the traced 'unet.*', 'controlnext.*', 'inject.*'. */
export const STEP_TENSOR_NAMES = ['latents', 'noise_pred', 'noise_cfg', 'unet_output', 'model_input', 'control'] as const;
/** Prefixes of traced names: the UNet's state-dict paths, the control module's, the injection's (sample_before = the feature at the site). */
export const STEP_TRACE_PREFIXES = ['unet.', 'controlnext.', 'inject.'] as const;

/** What onStepEnd may return: replacement latents for the next step (the pipeline takes ownership). */
export interface StepEndResult {
  latents?: Tensor;
}

export interface DecodeState {
  /** latents / scaling_factor, the VAE decoder input. */
  input: Tensor;
  /** The VAE output (about [-1, 1]). */
  decoded: Tensor;
}

/** What the loop starts from, after every input is prepared (valid until the callback returns). */
export interface BeginState {
  /** The initial latents [B, C, h, w] (after init_noise_sigma, or the noised init image). */
  latents: Tensor;
  /** The timesteps that will run. */
  timesteps: readonly number[];
  /** The conditioning of every step (text states, SDXL's added conditioning). */
  conditioning: Conditioning;
  /** The control image as the control receives it ([1 or B, 3, H, W], at the output size). */
  controlImage?: Tensor;
  height: number;
  width: number;
}

export interface PipelineObserver {
  onBegin?(s: BeginState): void | Promise<void>;
  onStep?(s: StepState): void | Promise<void>;
  onDecode?(s: DecodeState): void | Promise<void>;
}

export interface GenerateOptions {
  /** One prompt, or one per image. */
  prompt?: string | readonly string[];
  /** Default "" (diffusers' unconditional prompt). */
  negativePrompt?: string | readonly string[];
  /** Precomputed text states [B, L, D] instead of prompt (and [B, L, D] for the negative side). */
  promptEmbeds?: Tensor;
  negativePromptEmbeds?: Tensor;
  /** Images per prompt (default 1). */
  numImagesPerPrompt?: number;
  /** Output size in pixels, multiples of the VAE scale factor (8); default: the control / init image size, else the UNet's sample_size * 8. */
  height?: number;
  width?: number;
  /** Default 20 (the ControlNeXt run script's). */
  numInferenceSteps?: number;
  /** Classifier-free guidance scale; <= 1 turns guidance off. Default 7.5 (SDXL: 5). */
  guidanceScale?: number;
  /**
   * diffusers' guidance_rescale (arXiv 2305.08891 section 3.4), in [0, 1]: mixes the guided prediction
   * with itself rescaled to the text prediction's per-sample std. Default 0 (off).
   */
  guidanceRescale?: number;
  /** Control image [1 or B, 3, H, W] in [0, 1]; required when the pipeline holds a control. */
  controlImage?: Tensor;
  /** Control strength of this call (ControlNeXt: multiplies the module scale; ControlNet: conditioning scale). Default 1. */
  controlScale?: number;
  /** UNet hooks (@cnx/unet hooks.ts) for every step of this call; at the control's site they run after the injection. */
  hooks?: Hooks;
  /**
   * Every named intermediate of every step: 'unet.<path>' (UNet), 'controlnext.<path>' (control module),
   * 'inject.<name>' (injection). Values are valid during the call only.
   */
  trace?: Trace;
  /**
   * Called after each step with the step state and the tensors named in stepTensors (valid until it
   * returns or its promise settles); may return { latents } to replace the latents of the next step.
   */
  onStepEnd?(state: StepState, tensors: Readonly<Record<string, Tensor>>): void | StepEndResult | Promise<void | StepEndResult>;
  /** Names for onStepEnd: STEP_TENSOR_NAMES or a traced name ('inject.sample_before', 'unet.mid_block', ...). */
  stepTensors?: readonly string[];
  /** Seed of the project's RandomGenerator (initial latents, stochastic schedulers, VAE posterior sample). */
  seed?: number;
  /** A noise source instead of a seed. */
  generator?: NoiseSource;
  /** Initial latents [B, 4, h, w] (multiplied by init_noise_sigma, as diffusers does). */
  latents?: Tensor;
  /** Image-to-image: the init image [B or 1, 3, H, W] in [0, 1] and how much of it to repaint (0, 1]; default 0.8 (SDXL: 0.3). */
  initImage?: Tensor;
  strength?: number;
  /** DDIM eta. */
  eta?: number;
  observer?: PipelineObserver;
  /**
   * Stop with an error naming the step when the latents after a step (or the starting latents, or the
   * decoded image) hold NaN or infinite values (finite_guard.ts: one tiny reduction per step, read one
   * step late). Default true.
   */
  checkFinite?: boolean;
}

export interface GenerateResult {
  /** [B, 3, H, W] in [0, 1]. */
  images: Tensor;
  /** Final latents [B, 4, h, w]. */
  latents: Tensor;
  /** The timesteps that ran. */
  timesteps: number[];
}

/**
 * The largest output side generate() accepts, in pixels (the CLI's --width / --height allow the same).
 * The latents, the VAE activations (about 128 channels at full size) and the attention sequences grow
 * with the square of it; 4096 x 4096 is already 4x SDXL's trained size on each side.
 */
export const MAX_OUTPUT_SIDE = 4096;

/** A number in [lo, hi] (an integer when asked), else an error naming the option. */
export function checkRange(name: string, v: number, lo: number, hi: number, integer = false): void {
  if (!Number.isFinite(v) || v < lo || v > hi || (integer && !Number.isInteger(v))) {
    throw new Error(`${name} must be ${integer ? 'an integer' : 'a number'} in [${lo}, ${hi}], found ${v}`);
  }
}

/** One prompt or a list of prompts as a list. */
export function asList(v: string | readonly string[] | undefined): string[] | undefined {
  return v === undefined ? undefined : typeof v === 'string' ? [v] : [...v];
}

/** Per-family defaults of generate() (the reference pipeline's or run script's). */
export interface PipelineDefaults {
  numInferenceSteps: number;
  guidanceScale: number;
  strength: number;
}

/**
 * diffusers rescale_noise_cfg (pipeline_stable_diffusion.py, v0.29.2; arXiv 2305.08891 section 3.4):
 * std over every dim but the batch, torch.std unbiased (N - 1);
 * noise_cfg * (r * std_text / std_cfg + (1 - r)) = r * rescaled + (1 - r) * noise_cfg.
 */
export function rescaleNoiseCfg(noiseCfg: Tensor, noisePredText: Tensor, guidanceRescale: number): Tensor {
  return scope(() => {
    const axes = noiseCfg.shape.map((_, i) => i).slice(1);
    const n = noiseCfg.size / noiseCfg.shape[0]!;
    if (n < 2) throw new Error(`rescaleNoiseCfg: the unbiased std needs at least 2 values per sample, found ${noiseCfg.toString()}`);
    const variance = (x: Tensor) => {
      const mean = ops.reduce('mean', x, axes, true);
      const d = ops.binary('sub', x, mean);
      return ops.reduce('sum', ops.unary('square', d), axes, true); // (n - 1) * var; the factor cancels in the ratio
    };
    const ratio = ops.unary('sqrt', ops.binary('div', variance(noisePredText), variance(noiseCfg)));
    const factor = ops.affine(ratio, guidanceRescale, 1 - guidanceRescale);
    return ops.binary('mul', noiseCfg, factor);
  });
}

/**
 * The shared denoising loop (see the header). A family subclass builds its conditioning; the loop,
 * the control, the observers and the memory discipline are the same for all.
 */
export abstract class DenoisingPipeline<O extends GenerateOptions = GenerateOptions, C extends DenoisingComponents = DenoisingComponents> {
  readonly backend: Backend;
  /** Defaults of this family's generate(). */
  protected abstract readonly defaults: PipelineDefaults;
  /** generate() calls run one at a time, in call order (call_queue.ts): they share the scheduler's state. */
  private readonly calls = new CallQueue();

  constructor(readonly components: C) {
    this.backend = components.unet.backend;
  }

  get unet(): UNet2DConditionModel { return this.components.unet; }
  get vae(): AutoencoderKL { return this.components.vae; }
  get scheduler(): Scheduler { return this.components.scheduler; }

  /** Pixels per latent cell: 2^(number of VAE blocks - 1) (8 for Stable Diffusion). */
  get vaeScaleFactor(): number {
    return 2 ** (this.vae.config.block_out_channels.length - 1);
  }

  /**
   * The UNet's default output size in pixels, sample_size * vae_scale_factor (diffusers: height or
   * unet.config.sample_size * vae_scale_factor), or undefined when the config has no sample_size.
   */
  get defaultImageSize(): [number, number] | undefined {
    const s = this.unet.defaultSampleSize;
    return s && [s[0] * this.vaeScaleFactor, s[1] * this.vaeScaleFactor];
  }

  /** The conditioning of one generation (see Conditioning); its tensors live in the call's scope. */
  protected abstract encodeConditioning(o: O, setup: ConditioningSetup): Conditioning;

  /**
   * Output size when the call gives none: SD 1.x/2.x take the control image's, else the init image's
   * size; a family whose reference ignores the control image (SDXL) overrides this.
   */
  protected sizeFromImages(o: O): [number | undefined, number | undefined] {
    const ref = o.controlImage ?? o.initImage;
    return [ref?.shape[2], ref?.shape[3]];
  }

  /** The control image at the output size: SD 1.x/2.x require it already there (SDXL resizes). */
  protected controlImageAt(image: Tensor, height: number, width: number): Tensor {
    if (image.shape[2] !== height || image.shape[3] !== width) {
      throw new Error(`generate: control image ${image.toString()} must be ${height}x${width} (the output size); resize it first`);
    }
    return image;
  }

  /** The VAE decoder input for final latents: latents / scaling_factor. */
  protected decoderInput(latents: Tensor): Tensor {
    return ops.scale(latents, 1 / this.vae.scalingFactor);
  }

  /** Runs the VAE's encode / decode: as they are here; SDXL upcasts (force_upcast). */
  protected withVaePrecision<T>(fn: () => T): T {
    return fn();
  }

  /** Latents of an encoded image (a VAE posterior sample): sample * scaling_factor. */
  protected latentsOfEncoded(sample: Tensor): Tensor {
    return ops.scale(sample, this.vae.scalingFactor);
  }

  /**
   * Run the pipeline. The caller owns the returned tensors. Calls made while one runs (Promise.all of
   * several generate() calls) wait their turn and each returns what it would alone.
   */
  generate(o: O = {} as O): Promise<GenerateResult> {
    return this.calls.run('generate', () => this.generateNow(o));
  }

  private async generateNow(o: O): Promise<GenerateResult> {
    const { unet, vae, scheduler, control } = this.components;
    const backend = this.backend;
    const steps = o.numInferenceSteps ?? this.defaults.numInferenceSteps;
    checkRange('numInferenceSteps', steps, 1, scheduler.numTrainTimesteps, true);
    const g = o.guidanceScale ?? this.defaults.guidanceScale;
    checkRange('guidanceScale', g, 0, 100);
    const cfg = g > 1;
    const rescale = o.guidanceRescale ?? 0;
    checkRange('guidanceRescale', rescale, 0, 1);
    const perPrompt = o.numImagesPerPrompt ?? 1;
    checkRange('numImagesPerPrompt', perPrompt, 1, 64, true);
    const controlScale = o.controlScale ?? 1;
    checkRange('controlScale', controlScale, 0, 10);
    if (control && !o.controlImage) throw new Error(`generate: this pipeline holds a ${control.kind}; pass controlImage`);
    if (!control && o.controlImage) throw new Error('generate: controlImage given but the pipeline has no ControlNeXt / ControlNet');
    const generator = o.generator ?? new RandomGenerator(o.seed ?? Math.floor(Math.random() * 2 ** 32));
    const wanted = new Set(o.stepTensors ?? []);
    for (const n of wanted) {
      if (!(STEP_TENSOR_NAMES as readonly string[]).includes(n) && !STEP_TRACE_PREFIXES.some((p) => n.startsWith(p) && n.length > p.length)) {
        throw new Error(`generate: unknown step tensor '${n}' (known: ${STEP_TENSOR_NAMES.join(', ')}, or a traced name ${STEP_TRACE_PREFIXES.map((p) => `${p}*`).join(', ')})`);
      }
    }
    if (wanted.has('control') && control?.kind !== 'controlnext') throw new Error(`generate: step tensor 'control' needs a ControlNeXt pipeline`);

    const result = await scopeAsync(async () => {
      // Output size: explicit, else the family's image rule, else the UNet's sample_size * vae_scale_factor.
      const f = this.vaeScaleFactor;
      const [imageHeight, imageWidth] = this.sizeFromImages(o);
      const defaultSize = (i: 0 | 1, name: string): number => {
        const s = this.defaultImageSize;
        if (!s) throw new Error(`generate: give ${name}: the UNet config has no sample_size to take the default from`);
        return s[i];
      };
      const height = o.height ?? imageHeight ?? defaultSize(0, 'height');
      const width = o.width ?? imageWidth ?? defaultSize(1, 'width');
      for (const [n, v] of [['height', height], ['width', width]] as const) {
        if (!Number.isInteger(v) || v < f || v % f !== 0) throw new Error(`generate: ${n} must be a positive multiple of ${f}, found ${v}`);
        // The same cap whether the size was given, taken from an image or from the UNet's sample_size.
        if (v > MAX_OUTPUT_SIDE) throw new Error(`generate: ${n} must be at most ${MAX_OUTPUT_SIDE}, found ${v}${o[n] === undefined ? ' (taken from the control / init image or the UNet\'s sample_size: give it explicitly)' : ''}`);
      }
      const conditioning = this.encodeConditioning(o, { perPrompt, cfg, height, width, imageToImage: o.initImage !== undefined });
      const { ctx, batch: B, addedCond } = conditioning;
      const controlImage = o.controlImage && this.controlImageAt(o.controlImage, height, width);
      const latentShape = [B, unet.config.in_channels, height / f, width / f];

      // Timesteps, and the starting latents.
      scheduler.setTimesteps(steps);
      let timesteps = [...scheduler.timesteps];
      let latents: Tensor;
      if (o.initImage) {
        const strength = o.strength ?? this.defaults.strength;
        checkRange('strength', strength, 0, 1);
        // diffusers get_timesteps: skip the first (1 - strength) of the schedule.
        const initTimestep = Math.min(Math.floor(steps * strength), steps);
        const tStart = Math.max(steps - initTimestep, 0) * scheduler.order;
        timesteps = timesteps.slice(tStart);
        if (timesteps.length === 0) throw new Error(`generate: strength ${strength} with ${steps} steps leaves no step to run; raise strength or steps`);
        scheduler.setBeginIndex(tStart);
        latents = this.encodeInitImage(o.initImage, B, generator, scheduler, timesteps[0]!, [height, width]);
      } else if (o.latents) {
        if (o.latents.shape.join() !== latentShape.join()) {
          throw new Error(`generate: latents must be [${latentShape.join(', ')}], found ${o.latents.toString()}`);
        }
        latents = ops.affine(o.latents, scheduler.initNoiseSigma);
      } else {
        const z = backend.fromRaw(generator.normal(latentShape.reduce((p, d) => p * d, 1)), latentShape);
        latents = ops.affine(z, scheduler.initNoiseSigma);
        z.dispose();
      }
      await this.calls.callback(() => o.observer?.onBegin?.({ latents, timesteps, conditioning, controlImage, height, width }));

      const guard = new FiniteGuard(o.checkFinite ?? true, 'generate option checkFinite: false turns this check off');
      await guard.watch(latents, o.initImage ? 'the starting latents (the encoded, noised init image)' : o.latents ? 'the starting latents (the latents given)' : 'the starting latents');
      // begin() checks the control image and may throw: inside the try, so that the starting latents'
      // probe (still being read back) is discarded rather than freed under its pending read.
      let active: ActiveControl | undefined;
      try {
        active = control?.begin(controlImage!, B, cfg, controlScale);
        // The denoising loop.
        for (const [i, t] of timesteps.entries()) {
          const next = await scopeAsync(async () => {
            // Named intermediates of this step: views kept until the step's scope ends (after onStepEnd).
            const captured: Record<string, Tensor> = {};
            const capture: Trace | undefined = wanted.size > 0
              ? (name, v) => { if (wanted.has(name) && !(name in captured)) captured[name] = v.contiguous(); }
              : undefined;
            const traceFor = (prefix: string): Trace | undefined => {
              const want = capture && [...wanted].some((n) => n.startsWith(`${prefix}.`));
              if (!o.trace && !want) return undefined;
              const all: Trace = (name, v) => { o.trace?.(name, v); if (want) capture!(name, v); };
              return subTrace(all, prefix);
            };
            const doubled = cfg ? ops.concat([latents, latents], 0) : latents;
            const modelInput = scheduler.scaleModelInput(doubled, t);
            const timestep = backend.fromRaw(Float32Array.of(t), [1]);
            const stepControl = active?.step(t, timestep, modelInput, ctx, { moduleTrace: traceFor('controlnext'), injectionTrace: traceFor('inject') });
            const unetOptions = stepControl?.unetOptions ?? {};
            const unetOutput = unet.forward(modelInput, timestep, ctx, {
              ...unetOptions, addedCond, hooks: composeHooks(unetOptions.hooks, o.hooks), trace: traceFor('unet'),
            });
            // Classifier-free guidance: eps = u + g (c - u) = (1 - g) u + g c; then guidance_rescale.
            const textHalf = cfg ? unetOutput.slice(0, B, 2 * B) : unetOutput;
            const noiseCfg = cfg ? ops.linearCombination([[unetOutput.slice(0, 0, B), 1 - g], [textHalf, g]]) : unetOutput;
            const noisePred = cfg && rescale > 0 ? rescaleNoiseCfg(noiseCfg, textHalf, rescale) : noiseCfg;
            let { prevSample } = scheduler.step(noisePred, t, latents, { eta: o.eta, generator });
            if (wanted.size > 0) {
              const fixed: Record<string, Tensor | undefined> = {
                latents: prevSample, noise_pred: noisePred, noise_cfg: noiseCfg, unet_output: unetOutput, model_input: modelInput,
                control: stepControl?.controlnext?.out,
              };
              for (const n of wanted) if (fixed[n]) captured[n] = fixed[n];
              const missing = [...wanted].filter((n) => !(n in captured));
              if (missing.length > 0) {
                throw new Error(`generate: step ${i} produced no ${missing.map((n) => `'${n}'`).join(', ')} (a traced name must be a path the model reports)`);
              }
            }
            const state: StepState = {
              index: i, total: timesteps.length, timestep: t, modelInput, unetOutput, noisePred, noiseCfg, latents: prevSample,
              control: stepControl?.controlnext, controlScale: stepControl?.injectionScale, tensors: captured,
            };
            await this.calls.callback(() => o.observer?.onStep?.(state));
            const r = await this.calls.callback(() => o.onStepEnd?.(state, captured));
            if (r && r.latents) {
              if (r.latents.shape.join() !== prevSample.shape.join()) {
                throw new Error(`generate: onStepEnd returned latents ${r.latents.toString()}, expected [${prevSample.shape.join(', ')}]`);
              }
              prevSample = r.latents;
            }
            return prevSample;
          });
          latents.dispose();
          latents = next;
          await guard.watch(latents, `the latents after step ${i + 1} of ${timesteps.length} (timestep ${t})`);
        }
        // The last step's probe is read once the decoder below has been queued.
      } catch (e) {
        guard.discard();
        throw e;
      } finally {
        active?.dispose();
      }

      // Decode: the family's latent scaling -> VAE -> [0, 1].
      const input = this.decoderInput(latents);
      const decoded = this.withVaePrecision(() => vae.decode(input));
      await guard.watch(decoded, 'the decoded image (the VAE output of finite latents)');
      await guard.settle();
      const half = ops.affine(decoded, 0.5, 0.5);
      const images = clamp(half, 0, 1);
      await this.calls.callback(() => o.observer?.onDecode?.({ input, decoded }));
      return { images, latents, timesteps };
    });
    // The returned tensors survive the scope (and belong to the caller's scope, if any).
    return result;
  }

  /**
   * Image-to-image start: VAE posterior sample of the init image (scaled to [-1, 1]) as latents
   * (latentsOfEncoded), forward-diffused to the first timestep that runs (diffusers prepare_latents of
   * pipeline_stable_diffusion_img2img.py / pipeline_stable_diffusion_xl_img2img.py).
   */
  private encodeInitImage(image: Tensor, batch: number, generator: NoiseSource, scheduler: Scheduler, t0: number, size: [number, number]): Tensor {
    const b = image.shape[0]!;
    if (image.rank !== 4 || image.shape[1] !== 3 || (b !== 1 && b !== batch) || image.shape[2] !== size[0] || image.shape[3] !== size[1]) {
      throw new Error(`generate: init image must be [1 or ${batch}, 3, ${size[0]}, ${size[1]}] in [0, 1], found ${image.toString()}`);
    }
    return scope(() => {
      const full = b === batch ? image : image.expand([batch, ...image.shape.slice(1)]);
      const post = this.withVaePrecision(() => this.vae.encode(ops.affine(full, 2, -1)));
      const eps = this.backend.fromRaw(generator.normal(post.mean.size), post.mean.shape);
      const init = this.latentsOfEncoded(ops.add(post.mean, ops.mul(post.std, eps)));
      const noise = this.backend.fromRaw(generator.normal(init.size), init.shape);
      return scheduler.addNoise(init, noise, t0);
    });
  }

  /**
   * Free the models. generate() calls made after this are refused; calls made before (running or
   * waiting their turn) still complete, and the models are freed when the last has returned.
   */
  dispose(): void {
    this.calls.close('the pipeline was disposed', () => this.disposeModels());
  }

  /** Free every model the pipeline holds (the family frees its text encoders too). */
  protected disposeModels(): void {
    const { unet, vae, scheduler, control } = this.components;
    control?.dispose();
    unet.dispose();
    vae.dispose();
    scheduler.dispose();
  }
}

/** Stable Diffusion 1.x/2.x (+ ControlNeXt / ControlNet): one CLIP text encoder's last hidden state. */
export class ControllableDiffusionPipeline extends DenoisingPipeline<GenerateOptions, PipelineComponents> {
  /** The ControlNeXt run script's 20 steps; diffusers' 7.5 guidance and 0.8 img2img strength. */
  protected readonly defaults: PipelineDefaults = { numInferenceSteps: 20, guidanceScale: 7.5, strength: 0.8 };

  /** Text states for the batch: [B, L, D] for the prompts and for the negative prompts. */
  protected encodeConditioning(o: GenerateOptions, { perPrompt, cfg }: ConditioningSetup): Conditioning {
    const repeat = (t: Tensor) => {
      if (perPrompt === 1) return t;
      // [P, L, D] -> [P * perPrompt, L, D], each prompt's copies adjacent (diffusers' repeat + view).
      const r = t.unsqueeze(1).expand([t.shape[0]!, perPrompt, ...t.shape.slice(1)]).reshape([-1, ...t.shape.slice(1)]);
      t.dispose();
      return r;
    };
    let pos: Tensor;
    if (o.promptEmbeds) pos = o.promptEmbeds.reshape(o.promptEmbeds.shape);
    else {
      const prompts = asList(o.prompt);
      if (!prompts || prompts.length === 0) throw new Error('generate: give a prompt (or promptEmbeds)');
      if (!this.components.textEncoder) throw new Error('generate: this pipeline has no text encoder; pass promptEmbeds / negativePromptEmbeds');
      pos = this.components.textEncoder.encode(prompts);
    }
    pos = repeat(pos);
    if (!cfg) return { ctx: pos, batch: pos.shape[0]! };
    let neg: Tensor;
    if (o.negativePromptEmbeds) neg = o.negativePromptEmbeds.reshape(o.negativePromptEmbeds.shape);
    else {
      const promptCount = pos.shape[0]! / perPrompt;
      let negs = asList(o.negativePrompt) ?? [''];
      if (negs.length === 1 && promptCount > 1) negs = Array.from({ length: promptCount }, () => negs[0]!);
      if (negs.length !== promptCount) throw new Error(`generate: ${negs.length} negative prompts for ${promptCount} prompts (give one, or one per prompt)`);
      if (!this.components.textEncoder) throw new Error('generate: this pipeline has no text encoder; pass negativePromptEmbeds');
      neg = this.components.textEncoder.encode(negs);
    }
    neg = repeat(neg);
    if (neg.shape.join() !== pos.shape.join()) {
      throw new Error(`generate: negative text states [${neg.shape.join(', ')}] must match the prompt's [${pos.shape.join(', ')}]`);
    }
    return { ctx: ops.concat([neg, pos], 0), batch: pos.shape[0]! };
  }

  protected override disposeModels(): void {
    super.disposeModels();
    this.components.textEncoder?.dispose();
  }
}
