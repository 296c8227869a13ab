// EulerAncestralDiscreteScheduler: Euler step to sigma_down plus fresh noise of std sigma_up
// (k-diffusion sample_euler_ancestral, eta = 1), following diffusers v0.29.2
// scheduling_euler_ancestral_discrete.py. Noise is drawn on every step, the last included (where
// sigma_up = 0), as diffusers does, so an injected per-step noise sequence lines up with its run.

import { ops, type Tensor } from '@cnx/tensor';
import { normalLike, type Scheduler, type StepOptions, type StepResult } from './scheduler.js';
import { ConfigReader, MAX_SCHEDULER_TIMESTEPS, type SchedulerConfigJson } from './scheduler_config.js';
import { readNoiseScheduleConfig, type NoiseScheduleConfig, type TimestepSpacing } from './noise_schedule.js';
import { toFloat32 } from './numpy_compat.js';
import { KDiffusionScheduler } from './sigma_scheduler.js';
import { checkNumInferenceSteps, interpSigmas, spacedTimesteps } from './timestep_tables.js';

export interface EulerAncestralConfig extends NoiseScheduleConfig {
  predictionType: 'epsilon' | 'v_prediction';
  timestepSpacing: TimestepSpacing;
  stepsOffset: number;
}

const NAME = 'EulerAncestralDiscreteScheduler' as const;

export class EulerAncestralDiscreteScheduler extends KDiffusionScheduler implements Scheduler {
  readonly className = NAME;
  readonly order = 1;
  readonly config: EulerAncestralConfig;

  constructor(json: SchedulerConfigJson = {}) {
    const r = new ConfigReader(json, NAME);
    const config: EulerAncestralConfig = {
      ...readNoiseScheduleConfig(r, { rescale: true }),
      // diffusers raises NotImplementedError for 'sample' here.
      predictionType: r.oneOf('prediction_type', ['epsilon', 'v_prediction'] as const, 'epsilon'),
      timestepSpacing: r.oneOf('timestep_spacing', ['leading', 'linspace', 'trailing'] as const, 'linspace'),
      stepsOffset: r.int('steps_offset', 0, 0, MAX_SCHEDULER_TIMESTEPS),
    };
    super(config, NAME);
    this.config = config;
  }

  setTimesteps(n: number): void {
    checkNumInferenceSteps(this.className, n, this.numTrainTimesteps);
    this.numInferenceSteps = n;
    const c = this.config;
    this.timesteps = toFloat32(spacedTimesteps(c.timestepSpacing, c.numTrainTimesteps, n, c.stepsOffset, false));
    this.sigmas = [...interpSigmas(this.timesteps, this.trainSigmas), 0];
    this.resetStepIndex();
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, opts: StepOptions = {}): StepResult {
    if (this.numInferenceSteps === undefined) throw new Error(`${this.className}.step: call setTimesteps() first`);
    const i = this.currentIndex(t);
    const sigma = this.sigmas[i]!;
    const x0 = this.config.predictionType === 'epsilon'
      ? ops.linearCombination([[sample, 1], [modelOutput, -sigma]])
      : ops.linearCombination([[modelOutput, -sigma / Math.sqrt(sigma * sigma + 1)], [sample, 1 / (sigma * sigma + 1)]]);
    const sigmaTo = this.sigmas[i + 1]!;
    const sigmaUp = Math.sqrt(sigmaTo * sigmaTo * (sigma * sigma - sigmaTo * sigmaTo) / (sigma * sigma));
    const sigmaDown = Math.sqrt(sigmaTo * sigmaTo - sigmaUp * sigmaUp);
    // x + (x - x0)/sigma * (sigma_down - sigma) + sigma_up * z
    const dt = sigmaDown - sigma;
    const z = normalLike(modelOutput, opts.generator, this.className + '.step');
    const prevSample = ops.linearCombination([[sample, 1 + dt / sigma], [x0, -dt / sigma], [z, sigmaUp]]);
    z.dispose();
    this.stepIndex = i + 1;
    return { prevSample, predOriginalSample: x0 };
  }

  dispose(): void {}
}
