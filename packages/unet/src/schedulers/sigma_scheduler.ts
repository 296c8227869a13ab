// What the schedulers over the k-diffusion noise levels share (Euler, Euler ancestral, DPM-Solver
// multistep, UniPC; diffusers v0.29.2 repeats it in each as "Copied from" blocks): the training noise
// levels sigma_t, the current schedule, and the step-index bookkeeping (_step_index, _begin_index).

import { ops, type Tensor } from '@cnx/tensor';
import { indexOfTimestep, type SchedulerClassName } from './scheduler.js';
import {
  cumprodAlphas, makeBetas, sigmaToAlphaSigma, sigmasFromAlphasCumprod, type NoiseScheduleConfig, type TimestepSpacing,
} from './noise_schedule.js';
import { linspace, toFloat32 } from './numpy_compat.js';

export abstract class SigmaScheduler {
  abstract readonly className: SchedulerClassName;
  abstract readonly config: NoiseScheduleConfig;
  readonly alphasCumprod: Float64Array;
  /** Training noise levels sigma_t, t = 0..T-1 (ascending). */
  protected readonly trainSigmas: Float64Array;
  timesteps: number[] = [];
  sigmas: number[] = [];
  numInferenceSteps: number | undefined;
  protected stepIndex: number | undefined;
  protected beginIndex: number | undefined;

  /** `config` is the subclass's (read before super()); `className` names its errors. */
  protected constructor(config: NoiseScheduleConfig, className: SchedulerClassName) {
    this.alphasCumprod = cumprodAlphas(makeBetas(config, className));
    // Zero terminal SNR would make the last sigma infinite; diffusers pins alphabar_T to 2^-24.
    if (config.rescaleBetasZeroSnr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
    this.trainSigmas = sigmasFromAlphasCumprod(this.alphasCumprod);
  }

  get numTrainTimesteps(): number { return this.config.numTrainTimesteps; }

  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  /** The position of timestep t in the schedule (diffusers index_for_timestep / _init_step_index). */
  protected abstract indexFor(t: number): number;

  /** The index of the step at t: the running step index, else the begin index, else t's position. */
  protected currentIndex(t: number): number {
    this.stepIndex ??= this.beginIndex ?? this.indexFor(t);
    return this.stepIndex;
  }

  /** The schedule index add_noise uses: t's position unless a begin/step index is already known. */
  protected noiseIndex(t: number): number {
    return this.beginIndex === undefined ? this.indexFor(t) : this.stepIndex ?? this.beginIndex;
  }

  /** A new schedule starts from no step and no begin index. */
  protected resetStepIndex(): void {
    this.stepIndex = undefined;
    this.beginIndex = undefined;
  }
}

/**
 * The Euler schedulers' k-diffusion parameterisation: the sample carries noise of std sigma
 * (x = x0 + sigma eps), the model sees x / sqrt(sigma^2 + 1), and a timestep outside the schedule is
 * an error. Before setTimesteps() the schedule is the full training one.
 */
export abstract class KDiffusionScheduler extends SigmaScheduler {
  abstract override readonly config: NoiseScheduleConfig & { timestepSpacing: TimestepSpacing };

  protected constructor(config: NoiseScheduleConfig, className: SchedulerClassName) {
    super(config, className);
    const T = config.numTrainTimesteps;
    this.timesteps = toFloat32(linspace(0, T - 1, T).reverse());
    this.sigmas = [...this.trainSigmas].reverse().concat([0]);
  }

  get initNoiseSigma(): number {
    const max = Math.max(...this.sigmas);
    return this.config.timestepSpacing === 'linspace' || this.config.timestepSpacing === 'trailing' ? max : Math.sqrt(max * max + 1);
  }

  protected indexFor(t: number): number {
    const i = indexOfTimestep(t, this.timesteps);
    if (i === undefined) throw new Error(`${this.className}: timestep ${t} is not in the schedule (${this.timesteps.length} timesteps; call setTimesteps() and pass its values)`);
    return i;
  }

  scaleModelInput(sample: Tensor, t: number): Tensor {
    const sigma = this.sigmas[this.currentIndex(t)]!;
    return ops.affine(sample, 1 / Math.sqrt(sigma * sigma + 1));
  }

  addNoise(original: Tensor, noise: Tensor, t: number): Tensor {
    return ops.linearCombination([[original, 1], [noise, this.sigmas[this.noiseIndex(t)]!]]);
  }
}

/**
 * The multistep solvers' (DPM-Solver, UniPC) variance-preserving parameterisation: the sample is
 * alpha_t x0 + sigma_t eps, the model sees it unscaled, and a timestep outside the schedule maps to
 * the last step (diffusers _init_step_index).
 */
export abstract class MultistepSigmaScheduler extends SigmaScheduler {
  /** diffusers' `order` class attribute: model evaluations per entry of `timesteps` (1 for multistep solvers). */
  readonly order = 1;
  readonly initNoiseSigma = 1;

  protected indexFor(t: number): number {
    return indexOfTimestep(t, this.timesteps) ?? this.timesteps.length - 1;
  }

  scaleModelInput(sample: Tensor, _t: number): Tensor {
    return sample.reshape(sample.shape);
  }

  addNoise(original: Tensor, noise: Tensor, t: number): Tensor {
    const { alpha, sigmaT } = sigmaToAlphaSigma(this.sigmas[this.noiseIndex(t)]!);
    return ops.linearCombination([[original, alpha], [noise, sigmaT]]);
  }
}
