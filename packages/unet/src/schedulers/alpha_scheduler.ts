// What the schedulers over integer training timesteps share (DDIM, PNDM; diffusers v0.29.2 repeats it
// in both): alphas_cumprod, the alphabar "before" t = 0 for the last step (set_alpha_to_one), the
// unscaled model input, and the forward process x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise.

import { ops, type Tensor } from '@cnx/tensor';
import type { SchedulerClassName } from './scheduler.js';
import { cumprodAlphas, makeBetas, type NoiseScheduleConfig } from './noise_schedule.js';

export abstract class AlphaCumprodScheduler {
  abstract readonly className: SchedulerClassName;
  abstract readonly config: NoiseScheduleConfig & { setAlphaToOne: boolean };
  /** diffusers `order`: one model call per entry of `timesteps`. */
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly sigmas = undefined;
  readonly alphasCumprod: Float64Array;
  /** alphabar "before" t = 0 for the last step: 1 (set_alpha_to_one) or alphabar_0 (Stable Diffusion). */
  readonly finalAlphaCumprod: number;
  timesteps: number[] = [];
  numInferenceSteps: number | undefined;

  /** `config` is the subclass's (read before super()); `className` names its errors. */
  protected constructor(config: NoiseScheduleConfig & { setAlphaToOne: boolean }, className: SchedulerClassName) {
    this.alphasCumprod = cumprodAlphas(makeBetas(config, className));
    this.finalAlphaCumprod = config.setAlphaToOne ? 1 : this.alphasCumprod[0]!;
  }

  get numTrainTimesteps(): number { return this.config.numTrainTimesteps; }

  scaleModelInput(sample: Tensor, _t: number): Tensor {
    return sample.reshape(sample.shape);
  }

  /** alphabar_t for an integer training timestep; `where` completes the error's 'Class<where>:' prefix. */
  protected alphaAt(t: number, where = ''): number {
    if (!Number.isInteger(t) || t < 0 || t >= this.numTrainTimesteps) {
      throw new Error(`${this.className}${where}: timestep must be an integer in [0, ${this.numTrainTimesteps - 1}], found ${t}`);
    }
    return this.alphasCumprod[t]!;
  }

  /** alphabar at a previous timestep, or finalAlphaCumprod before t = 0. */
  protected alphaPrev(prevT: number): number {
    return prevT >= 0 ? this.alphasCumprod[prevT]! : this.finalAlphaCumprod;
  }

  addNoise(original: Tensor, noise: Tensor, t: number): Tensor {
    const a = this.alphaAt(t, '.addNoise');
    return ops.linearCombination([[original, Math.sqrt(a)], [noise, Math.sqrt(1 - a)]]);
  }
}
