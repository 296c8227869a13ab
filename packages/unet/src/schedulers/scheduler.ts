// The scheduler contract shared by every sampler here: diffusers' two-call protocol.
//
//   const s = createScheduler('UniPCMultistepScheduler', configJson);
//   s.setTimesteps(n);                       // builds s.timesteps (descending)
//   let x = latents * s.initNoiseSigma;
//   for (const t of s.timesteps) {
//     const xin = s.scaleModelInput(x, t);   // what the denoiser sees
//     const eps = unet(xin, t);
//     x = s.step(eps, t, x).prevSample;      // x_{t-1}
//   }
//
// Scalar coefficients are computed in float64 on the host; tensor updates go through
// ops.linearCombination / ops.affine so they run on whichever backend holds the tensors. Tensors a
// scheduler keeps between steps (multistep history) are its own views, moved out of the caller's
// memory scope with keep() and disposed when they leave the history, on setTimesteps() or dispose();
// so a sampling loop that runs each step inside scope() does not grow.

import { keep, ops, type Tensor } from '@cnx/tensor';
import type { NoiseSource } from './random_generator.js';
import type { PredictionType } from './noise_schedule.js';

export type SchedulerClassName =
  | 'DDIMScheduler'
  | 'EulerDiscreteScheduler'
  | 'EulerAncestralDiscreteScheduler'
  | 'DPMSolverMultistepScheduler'
  | 'PNDMScheduler'
  | 'UniPCMultistepScheduler';

export interface StepOptions {
  /** DDIMScheduler eta: 0 is deterministic DDIM, 1 is DDPM-like ancestral sampling. */
  eta?: number;
  /**
   * Source of N(0, 1) noise for stochastic steps: Euler ancestral, DDIM with eta > 0, SDE variants
   * of DPM-Solver. Required there (an error names it when missing); ignored by deterministic steps.
   */
  generator?: NoiseSource;
}

export interface StepResult {
  /** x_{t-1}, owned by the caller. */
  prevSample: Tensor;
  /** The model's x_0 estimate where the scheduler computes one (DDIM, Euler, Euler ancestral). */
  predOriginalSample?: Tensor;
}

export interface Scheduler {
  readonly className: SchedulerClassName;
  /** diffusers `order`: model evaluations per entry of `timesteps` (1 for every scheduler here; img2img skips `order` entries per step). */
  readonly order: number;
  readonly numTrainTimesteps: number;
  /** alphabar_t for t = 0..T-1. */
  readonly alphasCumprod: Float64Array;
  /** Timesteps of the current schedule, descending; empty before setTimesteps(). */
  readonly timesteps: readonly number[];
  /** Noise levels of the current schedule (k-diffusion sigma), for sigma-based schedulers. */
  readonly sigmas: readonly number[] | undefined;
  /** Standard deviation of the initial noise: multiply N(0, 1) latents by it. */
  readonly initNoiseSigma: number;
  setTimesteps(numInferenceSteps: number): void;
  /** Start the schedule at timesteps[index] (image-to-image); call before the first step. */
  setBeginIndex(index: number): void;
  /** The denoiser input for `sample` at timestep t (a new tensor). */
  scaleModelInput(sample: Tensor, t: number): Tensor;
  step(modelOutput: Tensor, t: number, sample: Tensor, opts?: StepOptions): StepResult;
  /** Forward-diffuse clean `original` to timestep t with `noise` (image-to-image, inpainting). */
  addNoise(original: Tensor, noise: Tensor, t: number): Tensor;
  /** Release the tensors kept between steps. */
  dispose(): void;
}

/**
 * A view of a caller's tensor that a scheduler keeps across steps: it survives the caller's scope
 * (and the caller disposing its own handle); the scheduler disposes it when done.
 */
export function retain(t: Tensor): Tensor {
  return keep(t.reshape(t.shape));
}

/** Move a tensor the scheduler itself created into its cross-step state (out of the current scope). */
export function hold(t: Tensor): Tensor {
  return keep(t);
}

/** N(0, 1) noise shaped like `like`, on its backend; the error names what needs the generator. */
export function normalLike(like: Tensor, generator: NoiseSource | undefined, who: string): Tensor {
  if (!generator) {
    throw new Error(`${who}: this step draws noise; pass step(..., { generator }) (a RandomGenerator or any NoiseSource)`);
  }
  const data = generator.normal(like.size);
  if (data.length !== like.size) throw new Error(`${who}: noise source returned ${data.length} values, expected ${like.size}`);
  return like.backend.fromRaw(data, like.shape);
}

/** clamp(x, lo, hi) through the backend's elementwise max/min with broadcast scalars. */
export function clamp(x: Tensor, lo: number, hi: number): Tensor {
  const l = x.backend.fromRaw(new Float32Array([lo]), [1]);
  const h = x.backend.fromRaw(new Float32Array([hi]), [1]);
  const a = ops.binary('max', x, l);
  const out = ops.binary('min', a, h);
  [l, h, a].forEach((v) => v.dispose());
  return out;
}

/** Error for an unknown prediction type at step time (config reading already restricts it). */
export function badPrediction(className: string, p: PredictionType, allowed: string): never {
  throw new Error(`${className}: prediction_type "${p}" is not supported by this scheduler (allowed: ${allowed})`);
}

/** Index of t in a schedule: the second match when t occurs twice (diffusers index_for_timestep). */
export function indexOfTimestep(t: number, schedule: readonly number[]): number | undefined {
  const hits: number[] = [];
  schedule.forEach((s, i) => { if (s === t) hits.push(i); });
  return hits.length > 1 ? hits[1] : hits[0];
}
