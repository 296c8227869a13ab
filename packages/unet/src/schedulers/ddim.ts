// DDIMScheduler (Song et al., arXiv 2010.02502), following diffusers v0.29.2
// src/diffusers/schedulers/scheduling_ddim.py: eq. (12) with sigma_t(eta) of eq. (16).

import { ops, type Tensor } from '@cnx/tensor';
import { clamp, normalLike, type Scheduler, type StepOptions, type StepResult } from './scheduler.js';
import { ConfigReader, MAX_SCHEDULER_TIMESTEPS, type SchedulerConfigJson } from './scheduler_config.js';
import { AlphaCumprodScheduler } from './alpha_scheduler.js';
import { readNoiseScheduleConfig, type NoiseScheduleConfig, type PredictionType, type TimestepSpacing } from './noise_schedule.js';
import { checkNumInferenceSteps, spacedTimesteps } from './timestep_tables.js';

export interface DDIMConfig extends NoiseScheduleConfig {
  clipSample: boolean;
  clipSampleRange: number;
  /** alphabar "before" t = 0 for the last step: 1 (true) or alphabar_0 (false, Stable Diffusion). */
  setAlphaToOne: boolean;
  stepsOffset: number;
  predictionType: PredictionType;
  timestepSpacing: TimestepSpacing;
}

const NAME = 'DDIMScheduler' as const;

export class DDIMScheduler extends AlphaCumprodScheduler implements Scheduler {
  readonly className = NAME;
  readonly config: DDIMConfig;

  constructor(json: SchedulerConfigJson = {}) {
    const r = new ConfigReader(json, NAME);
    r.unsupported('thresholding', (v) => v === false, 'dynamic thresholding is for pixel-space models');
    const config: DDIMConfig = {
      ...readNoiseScheduleConfig(r, { rescale: true }),
      clipSample: r.bool('clip_sample', true),
      clipSampleRange: r.number('clip_sample_range', 1, { min: 0, exclusiveMin: true }),
      setAlphaToOne: r.bool('set_alpha_to_one', true),
      stepsOffset: r.int('steps_offset', 0, 0, MAX_SCHEDULER_TIMESTEPS),
      predictionType: r.oneOf('prediction_type', ['epsilon', 'v_prediction', 'sample'] as const, 'epsilon'),
      timestepSpacing: r.oneOf('timestep_spacing', ['leading', 'linspace', 'trailing'] as const, 'leading'),
    };
    super(config, NAME);
    this.config = config;
  }

  setTimesteps(n: number): void {
    checkNumInferenceSteps(this.className, n, this.numTrainTimesteps);
    this.numInferenceSteps = n;
    this.timesteps = spacedTimesteps(this.config.timestepSpacing, this.numTrainTimesteps, n, this.config.stepsOffset, true);
  }

  setBeginIndex(_index: number): void {
    // DDIM derives everything from t itself; nothing to record.
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, opts: StepOptions = {}): StepResult {
    const n = this.numInferenceSteps;
    if (n === undefined) throw new Error(`${this.className}.step: call setTimesteps() first`);
    const eta = opts.eta ?? 0;
    if (!(eta >= 0)) throw new Error(`${this.className}.step: eta must be >= 0, found ${eta}`);
    // 1. previous timestep: always one stride of T // n below, whatever the spacing (as diffusers).
    const prevT = t - Math.floor(this.numTrainTimesteps / n);
    // 2. alphas, betas
    const aT = this.alphaAt(t);
    const aPrev = this.alphaPrev(prevT);
    const bT = 1 - aT;
    // 3. predicted x_0 and predicted noise, eq. (12)
    let x0: Tensor, eps: Tensor;
    switch (this.config.predictionType) {
      case 'epsilon':
        x0 = ops.linearCombination([[sample, 1 / Math.sqrt(aT)], [modelOutput, -Math.sqrt(bT) / Math.sqrt(aT)]]);
        eps = modelOutput.reshape(modelOutput.shape);
        break;
      case 'sample':
        x0 = modelOutput.reshape(modelOutput.shape);
        eps = ops.linearCombination([[sample, 1 / Math.sqrt(bT)], [x0, -Math.sqrt(aT) / Math.sqrt(bT)]]);
        break;
      case 'v_prediction':
        x0 = ops.linearCombination([[sample, Math.sqrt(aT)], [modelOutput, -Math.sqrt(bT)]]);
        eps = ops.linearCombination([[modelOutput, Math.sqrt(aT)], [sample, Math.sqrt(bT)]]);
        break;
    }
    // 4. clip x_0 (the noise estimate keeps the unclipped value, use_clipped_model_output=False)
    if (this.config.clipSample) {
      const c = clamp(x0, -this.config.clipSampleRange, this.config.clipSampleRange);
      x0.dispose();
      x0 = c;
    }
    // 5. sigma_t(eta), eq. (16)
    const variance = ((1 - aPrev) / bT) * (1 - aT / aPrev);
    const std = eta * Math.sqrt(variance);
    // 6-7. x_{t-1} = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - std^2) eps (+ std z)
    const terms: [Tensor, number][] = [[x0, Math.sqrt(aPrev)], [eps, Math.sqrt(1 - aPrev - std * std)]];
    let noise: Tensor | undefined;
    if (eta > 0) {
      noise = normalLike(modelOutput, opts.generator, `${this.className}.step with eta=${eta}`);
      terms.push([noise, std]);
    }
    const prevSample = ops.linearCombination(terms);
    eps.dispose();
    noise?.dispose();
    return { prevSample, predOriginalSample: x0 };
  }

  dispose(): void {}
}
