// Timestep and sigma tables of set_timesteps(), per diffusers v0.29.2. `timestep_spacing` is the
// choice of Table 2 of "Common Diffusion Noise Schedules and Sample Steps are Flawed" (arXiv 2305.08891):
// 'linspace' spreads the steps over [0, T-1], 'leading' takes multiples of T // n from 0 (+ steps_offset),
// 'trailing' takes multiples of T / n back from T (- 1).

import { arange, interp, linspace, roundHalfEven } from './numpy_compat.js';
import type { TimestepSpacing } from './noise_schedule.js';

/** num_inference_steps must be an integer in [1, num_train_timesteps] (diffusers raises above T). */
export function checkNumInferenceSteps(className: string, n: number, numTrain: number): void {
  if (!Number.isInteger(n) || n < 1 || n > numTrain) {
    throw new Error(`${className}.setTimesteps: num_inference_steps must be an integer in [1, ${numTrain}] ` +
      `(num_train_timesteps), found ${n}`);
  }
}

/**
 * DDIM / Euler style: n timesteps, descending. `round` false keeps the fractional 'linspace' values
 * (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler); the others round them (np.round).
 */
export function spacedTimesteps(spacing: TimestepSpacing, numTrain: number, n: number, stepsOffset: number, round: boolean): number[] {
  switch (spacing) {
    case 'linspace': {
      const t = linspace(0, numTrain - 1, n).reverse();
      return round ? t.map(roundHalfEven) : t;
    }
    case 'leading': {
      const ratio = Math.floor(numTrain / n);
      return arange(0, n, 1).map((i) => roundHalfEven(i * ratio)).reverse().map((t) => t + stepsOffset);
    }
    case 'trailing':
      return arange(numTrain, 0, -numTrain / n).map((t) => roundHalfEven(t) - 1);
  }
}

/**
 * DPM-Solver / UniPC style: n + 1 points with the last (t = 0 side) dropped, so that the final step
 * goes from a small t to sigma = 0. `lastTimestep` is num_train_timesteps less the steps clipped by
 * lambda_min_clipped.
 */
export function multistepTimesteps(spacing: TimestepSpacing, numTrain: number, lastTimestep: number, n: number, stepsOffset: number): number[] {
  switch (spacing) {
    case 'linspace':
      return linspace(0, lastTimestep - 1, n + 1).map(roundHalfEven).reverse().slice(0, -1);
    case 'leading': {
      const ratio = Math.floor(lastTimestep / (n + 1));
      return arange(0, n + 1, 1).map((i) => roundHalfEven(i * ratio)).reverse().slice(0, -1).map((t) => t + stepsOffset);
    }
    case 'trailing':
      return arange(lastTimestep, 0, -numTrain / n).map((t) => roundHalfEven(t) - 1);
  }
}

/** sigmas at (possibly fractional) timesteps, np.interp over the training sigma table. */
export function interpSigmas(timesteps: readonly number[], trainSigmas: Float64Array): number[] {
  const xp = Float64Array.from({ length: trainSigmas.length }, (_, i) => i);
  return timesteps.map((t) => interp(t, xp, trainSigmas));
}

/**
 * Karras et al. 2022 (arXiv 2206.00364) eq. 5 noise levels, rho = 7, from sigma_max = in_sigmas[0]
 * to sigma_min = in_sigmas[last] unless the config overrides them (diffusers _convert_to_karras).
 */
export function karrasSigmas(inSigmas: readonly number[], n: number, sigmaMin: number | null = null, sigmaMax: number | null = null): number[] {
  const lo = sigmaMin ?? inSigmas[inSigmas.length - 1]!;
  const hi = sigmaMax ?? inSigmas[0]!;
  const rho = 7;
  const minInv = lo ** (1 / rho), maxInv = hi ** (1 / rho);
  return linspace(0, 1, n).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** Lu et al. (DPM-Solver++) uniform-lambda schedule: lambdas linear between the ends (diffusers _convert_to_lu). */
export function luLambdas(inLambdas: readonly number[], n: number): number[] {
  const lo = inLambdas[inLambdas.length - 1]!, hi = inLambdas[0]!;
  return linspace(0, 1, n).map((r) => hi + r * (lo - hi));
}

/**
 * The fractional training timestep of a sigma: piecewise-linear in log sigma between the two
 * neighbouring training sigmas (diffusers _sigma_to_t).
 */
export function sigmaToT(sigma: number, logSigmas: Float64Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  // Index of the last training log-sigma <= logSigma (0 if none), clipped so high = low + 1 exists.
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i]! >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low]!, hi = logSigmas[low + 1]!;
  const w = Math.min(Math.max((lo - logSigma) / (lo - hi), 0), 1);
  return (1 - w) * low + w * (low + 1);
}
