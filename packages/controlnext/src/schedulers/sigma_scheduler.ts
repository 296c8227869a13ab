// What the schedulers over the k-diffusion noise levels share (Euler, Euler ancestral, DPM-Solver
// multistep, UniPC; diffusers v0.29.2 repeats it in each as "Copied from" blocks): the training noise
// levels sigma_t, the current schedule, and the step-index bookkeeping (_step_index, _begin_index).

import type { SchedulerClassName } from './scheduler.js';
import { cumprodAlphas, makeBetas, sigmasFromAlphasCumprod, type NoiseScheduleConfig } from './noise_schedule.js';

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
