// The scheduler Stable Video Diffusion samples with: diffusers' EulerDiscreteScheduler
// (schedulers/euler.ts) built from SVD-xt's scheduler/scheduler_config.json (stabilityai
// stable-video-diffusion-img2vid-xt; the ControlNeXt-SVD run scripts load it with from_pretrained):
//   v-prediction, Karras sigmas (rho 7) from sigma_max 700 down to sigma_min 0.002, then 0;
//   continuous timesteps c_noise = 0.25 ln(sigma) (the UNet and the control module embed these);
//   init_noise_sigma = sqrt(700^2 + 1) ('leading' spacing); model input x / sqrt(sigma^2 + 1).
// The golden case sched_euler_svd checks the class on exactly this configuration.

import { EulerDiscreteScheduler } from './euler.js';
import type { SchedulerConfigJson } from './scheduler_config.js';

/** SVD-xt's scheduler_config.json (diffusers 0.29.2 after from_config). */
export const SVD_XT_SCHEDULER_CONFIG: SchedulerConfigJson = Object.freeze({
  _class_name: 'EulerDiscreteScheduler',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  final_sigmas_type: 'zero',
  interpolation_type: 'linear',
  num_train_timesteps: 1000,
  prediction_type: 'v_prediction',
  rescale_betas_zero_snr: false,
  set_alpha_to_one: false,
  sigma_max: 700.0,
  sigma_min: 0.002,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: 'leading',
  timestep_type: 'continuous',
  trained_betas: null,
  use_karras_sigmas: true,
});

/**
 * Euler with diffusers' `scheduler._step_index = None`, which the ControlNeXt-SVD pipelines do before every
 * frame window: each window's step re-locates the current timestep in the schedule instead of advancing.
 */
export class SvdEulerScheduler extends EulerDiscreteScheduler {
  /** Forget the running step index (the next scaleModelInput / step finds it from t). */
  forgetStepIndex(): void {
    this.stepIndex = undefined;
  }
}

/**
 * The SVD sampler: Euler over SVD-xt's configuration, with a model folder's scheduler_config.json
 * (when given) taking precedence key by key. The configuration must stay continuous-time
 * v-prediction: the SVD UNet was trained on c_noise = 0.25 ln(sigma), and an integer-timestep config
 * would feed it values it has never seen.
 */
export function createSvdScheduler(config: SchedulerConfigJson = {}): SvdEulerScheduler {
  const cls = config['_class_name'];
  if (cls !== undefined && cls !== 'EulerDiscreteScheduler') {
    throw new Error(`SVD scheduler: the SVD pipelines sample with EulerDiscreteScheduler, the scheduler config names ${JSON.stringify(cls)}`);
  }
  const s = new SvdEulerScheduler({ ...SVD_XT_SCHEDULER_CONFIG, ...config });
  if (s.config.predictionType !== 'v_prediction' || s.config.timestepType !== 'continuous') {
    throw new Error(`SVD scheduler: expected prediction_type "v_prediction" and timestep_type "continuous" (SVD-xt), ` +
      `found "${s.config.predictionType}" and "${s.config.timestepType}"`);
  }
  return s;
}
