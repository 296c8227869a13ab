// EulerDiscreteScheduler: Algorithm 2 of Karras et al. 2022 (arXiv 2206.00364) on the discrete
// Stable Diffusion noise levels, following diffusers v0.29.2 scheduling_euler_discrete.py.
// With the default s_churn = 0 it is the deterministic Euler method in sigma.

import { ops, type Tensor } from '@cnx/tensor';
import { normalLike, type Scheduler, type StepOptions, type StepResult } from './scheduler.js';
import { ConfigReader, MAX_SCHEDULER_TIMESTEPS, type SchedulerConfigJson } from './scheduler_config.js';
import { readNoiseScheduleConfig, type NoiseScheduleConfig, type PredictionType, type TimestepSpacing } from './noise_schedule.js';
import { linspace, toFloat32 } from './numpy_compat.js';
import { KDiffusionScheduler } from './sigma_scheduler.js';
import { checkNumInferenceSteps, interpSigmas, karrasSigmas, sigmaToT, spacedTimesteps } from './timestep_tables.js';

export interface EulerConfig extends NoiseScheduleConfig {
  predictionType: PredictionType;
  interpolationType: 'linear' | 'log_linear';
  useKarrasSigmas: boolean;
  sigmaMin: number | null;
  sigmaMax: number | null;
  timestepSpacing: TimestepSpacing;
  timestepType: 'discrete' | 'continuous';
  stepsOffset: number;
  finalSigmasType: 'zero' | 'sigma_min';
}

/** Stochastic churn of Karras et al. Algorithm 2 (all off by default, as in diffusers). */
export interface EulerStepOptions extends StepOptions {
  sChurn?: number;
  sTmin?: number;
  sTmax?: number;
  sNoise?: number;
}

const NAME = 'EulerDiscreteScheduler' as const;

export class EulerDiscreteScheduler extends KDiffusionScheduler implements Scheduler {
  readonly className = NAME;
  readonly order = 1;
  readonly config: EulerConfig;

  constructor(json: SchedulerConfigJson = {}) {
    const r = new ConfigReader(json, NAME);
    const config: EulerConfig = {
      ...readNoiseScheduleConfig(r, { rescale: true }),
      // 'original_sample' is diffusers' older name of 'sample'.
      predictionType: r.oneOf('prediction_type', ['epsilon', 'v_prediction', 'sample'] as const, 'epsilon', { original_sample: 'sample' }),
      interpolationType: r.oneOf('interpolation_type', ['linear', 'log_linear'] as const, 'linear'),
      useKarrasSigmas: r.bool('use_karras_sigmas', false),
      sigmaMin: r.numberOrNull('sigma_min', { min: 0 }),
      sigmaMax: r.numberOrNull('sigma_max', { min: 0 }),
      timestepSpacing: r.oneOf('timestep_spacing', ['leading', 'linspace', 'trailing'] as const, 'linspace'),
      timestepType: r.oneOf('timestep_type', ['discrete', 'continuous'] as const, 'discrete'),
      stepsOffset: r.int('steps_offset', 0, 0, MAX_SCHEDULER_TIMESTEPS),
      finalSigmasType: r.oneOf('final_sigmas_type', ['zero', 'sigma_min'] as const, 'zero'),
    };
    super(config, NAME);
    this.config = config;
  }

  setTimesteps(n: number): void {
    checkNumInferenceSteps(this.className, n, this.numTrainTimesteps);
    this.numInferenceSteps = n;
    const c = this.config;
    // Timesteps are float32 in diffusers (fractional for 'linspace'); the sigma table interpolates them.
    let timesteps = toFloat32(spacedTimesteps(c.timestepSpacing, c.numTrainTimesteps, n, c.stepsOffset, false));
    const logSigmas = this.trainSigmas.map(Math.log);
    let sigmas = c.interpolationType === 'linear'
      ? interpSigmas(timesteps, this.trainSigmas)
      // diffusers: n + 1 log-uniform levels from sigma_max down to sigma_0 (the final sigma is appended too).
      : linspace(Math.log(this.trainSigmas[this.trainSigmas.length - 1]!), Math.log(this.trainSigmas[0]!), n + 1).map(Math.exp);
    if (c.useKarrasSigmas) {
      sigmas = karrasSigmas(sigmas, n, c.sigmaMin, c.sigmaMax);
      timesteps = toFloat32(sigmas.map((s) => sigmaToT(s, logSigmas)));
    }
    if (c.timestepType === 'continuous' && c.predictionType === 'v_prediction') {
      // EDM-style c_noise = log(sigma) / 4 (diffusers' continuous-time v-prediction models).
      timesteps = toFloat32(sigmas.map((s) => 0.25 * Math.log(s)));
    }
    const last = c.finalSigmasType === 'zero' ? 0 : this.trainSigmas[0]!;
    this.timesteps = timesteps;
    this.sigmas = [...sigmas, last];
    this.resetStepIndex();
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, opts: EulerStepOptions = {}): StepResult {
    if (this.numInferenceSteps === undefined) throw new Error(`${this.className}.step: call setTimesteps() first`);
    const i = this.currentIndex(t);
    const sigma = this.sigmas[i]!;
    const sChurn = opts.sChurn ?? 0, sTmin = opts.sTmin ?? 0, sTmax = opts.sTmax ?? Infinity, sNoise = opts.sNoise ?? 1;
    const gamma = sTmin <= sigma && sigma <= sTmax ? Math.min(sChurn / (this.sigmas.length - 1), Math.SQRT2 - 1) : 0;
    const sigmaHat = sigma * (gamma + 1);
    // Churn: raise the noise level to sigma_hat before the Euler step.
    let x = sample;
    if (gamma > 0) {
      const z = normalLike(modelOutput, opts.generator, `${this.className}.step with s_churn=${sChurn}`);
      x = ops.linearCombination([[sample, 1], [z, sNoise * Math.sqrt(sigmaHat * sigmaHat - sigma * sigma)]]);
      z.dispose();
    }
    let x0: Tensor;
    switch (this.config.predictionType) {
      case 'sample': x0 = modelOutput.reshape(modelOutput.shape); break;
      case 'epsilon': x0 = ops.linearCombination([[x, 1], [modelOutput, -sigmaHat]]); break;
      case 'v_prediction':
        x0 = ops.linearCombination([[modelOutput, -sigma / Math.sqrt(sigma * sigma + 1)], [x, 1 / (sigma * sigma + 1)]]);
        break;
    }
    // d = (x - x0) / sigma_hat; x_prev = x + d * (sigma_next - sigma_hat)
    const dt = this.sigmas[i + 1]! - sigmaHat;
    const prevSample = ops.linearCombination([[x, 1 + dt / sigmaHat], [x0, -dt / sigmaHat]]);
    if (x !== sample) x.dispose();
    this.stepIndex = i + 1;
    return { prevSample, predOriginalSample: x0 };
  }

  dispose(): void {}
}
