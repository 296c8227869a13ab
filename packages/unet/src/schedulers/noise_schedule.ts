// The training noise schedule every diffusers discrete scheduler builds in __init__ (v0.29.2:
// scheduling_ddim.py, scheduling_euler_discrete.py, scheduling_dpmsolver_multistep.py, ...):
// betas from `beta_schedule` (or `trained_betas`), alphas_cumprod = cumprod(1 - betas), optionally
// rescaled to zero terminal SNR. Computed in float64 on the host (diffusers uses float32 tensors; the
// difference, ~1e-7 relative, is far inside every golden tolerance).

import { ConfigReader, MAX_SCHEDULER_TIMESTEPS } from './scheduler_config.js';
import { linspace } from './numpy_compat.js';

export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';
export type TimestepSpacing = 'leading' | 'linspace' | 'trailing';

/** The keys shared by every scheduler class here; defaults are diffusers' (identical across classes). */
export interface NoiseScheduleConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: BetaSchedule;
  trainedBetas: number[] | null;
  rescaleBetasZeroSnr: boolean;
}

export function readNoiseScheduleConfig(r: ConfigReader, opts: { rescale: boolean }): NoiseScheduleConfig {
  return {
    numTrainTimesteps: r.int('num_train_timesteps', 1000, 2, MAX_SCHEDULER_TIMESTEPS), // 1 gave NaN Karras sigmas
    // Betas are variances of a step's noise: in [0, 1) (a beta of 1 makes alphas_cumprod 0 and sigma infinite).
    betaStart: r.number('beta_start', 0.0001, { min: 0, max: 0.999 }),
    betaEnd: r.number('beta_end', 0.02, { min: 0, max: 0.999 }),
    betaSchedule: r.oneOf('beta_schedule', ['linear', 'scaled_linear', 'squaredcos_cap_v2'] as const, 'linear'),
    trainedBetas: r.numberArrayOrNull('trained_betas', { min: 0, max: 0.999 }),
    // PNDM has no rescale_betas_zero_snr key in v0.29.2: it is ignored there like any unknown key.
    rescaleBetasZeroSnr: opts.rescale ? r.bool('rescale_betas_zero_snr', false) : false,
  };
}

/** diffusers betas_for_alpha_bar with the cosine alpha_bar (GLIDE), max_beta 0.999. */
function cosineBetas(n: number): number[] {
  const alphaBar = (t: number) => Math.cos((t + 0.008) / 1.008 * Math.PI / 2) ** 2;
  return Array.from({ length: n }, (_, i) => Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), 0.999));
}

/** diffusers rescale_zero_terminal_snr (arXiv 2305.08891, Algorithm 1). */
function rescaleZeroTerminalSnr(betas: number[]): number[] {
  let acc = 1;
  const sqrtBar = betas.map((b) => Math.sqrt(acc *= 1 - b));
  const s0 = sqrtBar[0]!, sT = sqrtBar[sqrtBar.length - 1]!;
  const bar = sqrtBar.map((v) => ((v - sT) * (s0 / (s0 - sT))) ** 2);
  return bar.map((v, i) => 1 - (i === 0 ? v : v / bar[i - 1]!));
}

export function makeBetas(c: NoiseScheduleConfig, className: string): number[] {
  let betas: number[];
  if (c.trainedBetas) {
    if (c.trainedBetas.length !== c.numTrainTimesteps) {
      throw new Error(`${className} config: "trained_betas" has ${c.trainedBetas.length} values, expected num_train_timesteps = ${c.numTrainTimesteps}`);
    }
    betas = [...c.trainedBetas];
  } else if (c.betaSchedule === 'linear') {
    betas = linspace(c.betaStart, c.betaEnd, c.numTrainTimesteps);
  } else if (c.betaSchedule === 'scaled_linear') {
    // "very specific to the latent diffusion model": linear in sqrt(beta).
    betas = linspace(Math.sqrt(c.betaStart), Math.sqrt(c.betaEnd), c.numTrainTimesteps).map((b) => b * b);
  } else {
    betas = cosineBetas(c.numTrainTimesteps);
  }
  return c.rescaleBetasZeroSnr ? rescaleZeroTerminalSnr(betas) : betas;
}

export function cumprodAlphas(betas: readonly number[]): Float64Array {
  const out = new Float64Array(betas.length);
  let acc = 1;
  betas.forEach((b, i) => { out[i] = acc *= 1 - b; });
  return out;
}

/** sigma_t = sqrt((1 - alphabar_t) / alphabar_t), the noise level of the k-diffusion parameterisation. */
export function sigmasFromAlphasCumprod(ac: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: ac.length }, (_, i) => Math.sqrt((1 - ac[i]!) / ac[i]!));
}

/** (alpha_t, sigma_t) of the VP process for a k-diffusion sigma: alpha = 1/sqrt(sigma^2+1), sigma_t = sigma*alpha. */
export function sigmaToAlphaSigma(sigma: number): { alpha: number; sigmaT: number } {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  return { alpha, sigmaT: sigma * alpha };
}

/** log-SNR lambda = log(alpha_t) - log(sigma_t); +Infinity at sigma = 0. */
export function lambdaOf(sigma: number): number {
  const { alpha, sigmaT } = sigmaToAlphaSigma(sigma);
  return Math.log(alpha) - Math.log(sigmaT);
}
