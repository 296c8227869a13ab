// DPMSolverMultistepScheduler: DPM-Solver (Lu et al., arXiv 2206.00927) and DPM-Solver++
// (arXiv 2211.01095) multistep, orders 1-3, midpoint/heun second-order forms, and the SDE variants,
// following diffusers v0.29.2 scheduling_dpmsolver_multistep.py. `DPM++ 2M` is algorithm_type
// 'dpmsolver++', solver_order 2; `DPM++ 2M Karras` adds use_karras_sigmas.
//
// Notation: sigma is the k-diffusion noise level, alpha_t = 1/sqrt(sigma^2+1), sigma_t = sigma*alpha_t,
// lambda = log(alpha_t / sigma_t); h = lambda_next - lambda_cur.

import { ops, type Tensor } from '@cnx/tensor';
import { hold, normalLike, type Scheduler, type StepOptions, type StepResult } from './scheduler.js';
import { ConfigReader, MAX_SCHEDULER_TIMESTEPS, type SchedulerConfigJson } from './scheduler_config.js';
import {
  lambdaOf, readNoiseScheduleConfig, sigmaToAlphaSigma, type NoiseScheduleConfig, type PredictionType, type TimestepSpacing,
} from './noise_schedule.js';
import { convertModelOutput } from './model_output.js';
import { roundHalfEven } from './numpy_compat.js';
import { MultistepSigmaScheduler } from './sigma_scheduler.js';
import {
  checkNumInferenceSteps, interpSigmas, karrasSigmas, luLambdas, multistepTimesteps, sigmaToT,
} from './timestep_tables.js';

export type DpmAlgorithm = 'dpmsolver' | 'dpmsolver++' | 'sde-dpmsolver' | 'sde-dpmsolver++';

export interface DPMSolverConfig extends NoiseScheduleConfig {
  solverOrder: number;
  predictionType: PredictionType;
  algorithmType: DpmAlgorithm;
  solverType: 'midpoint' | 'heun';
  lowerOrderFinal: boolean;
  eulerAtFinal: boolean;
  useKarrasSigmas: boolean;
  useLuLambdas: boolean;
  finalSigmasType: 'zero' | 'sigma_min';
  lambdaMinClipped: number;
  timestepSpacing: TimestepSpacing;
  stepsOffset: number;
}

const NAME = 'DPMSolverMultistepScheduler' as const;

export class DPMSolverMultistepScheduler extends MultistepSigmaScheduler implements Scheduler {
  readonly className = NAME;
  readonly config: DPMSolverConfig;
  /** Converted model outputs of the last `solverOrder` steps, oldest first. */
  private modelOutputs: (Tensor | undefined)[];
  private lowerOrderNums = 0;

  constructor(json: SchedulerConfigJson = {}) {
    const r = new ConfigReader(json, NAME);
    r.unsupported('thresholding', (v) => v === false, 'dynamic thresholding is for pixel-space models');
    r.unsupported('variance_type', () => false, 'learned-variance models are not Stable Diffusion models');
    const c: DPMSolverConfig = {
      ...readNoiseScheduleConfig(r, { rescale: true }),
      solverOrder: r.int('solver_order', 2, 1, 3),
      predictionType: r.oneOf('prediction_type', ['epsilon', 'v_prediction', 'sample'] as const, 'epsilon'),
      // diffusers registers 'deis' as dpmsolver++ and the DEIS/UniPC solver types as midpoint.
      algorithmType: r.oneOf('algorithm_type', ['dpmsolver', 'dpmsolver++', 'sde-dpmsolver', 'sde-dpmsolver++'] as const,
        'dpmsolver++', { deis: 'dpmsolver++' }),
      solverType: r.oneOf('solver_type', ['midpoint', 'heun'] as const, 'midpoint', { logrho: 'midpoint', bh1: 'midpoint', bh2: 'midpoint' }),
      lowerOrderFinal: r.bool('lower_order_final', true),
      eulerAtFinal: r.bool('euler_at_final', false),
      useKarrasSigmas: r.bool('use_karras_sigmas', false),
      useLuLambdas: r.bool('use_lu_lambdas', false),
      finalSigmasType: r.oneOf('final_sigmas_type', ['zero', 'sigma_min'] as const, 'zero'),
      lambdaMinClipped: r.number('lambda_min_clipped', -Infinity, { infinite: true }),
      timestepSpacing: r.oneOf('timestep_spacing', ['leading', 'linspace', 'trailing'] as const, 'linspace'),
      stepsOffset: r.int('steps_offset', 0, 0, MAX_SCHEDULER_TIMESTEPS),
    };
    if ((c.algorithmType === 'dpmsolver' || c.algorithmType === 'sde-dpmsolver') && c.finalSigmasType === 'zero') {
      throw new Error(`${NAME} config: final_sigmas_type "zero" is not supported for algorithm_type "${c.algorithmType}"; choose "sigma_min"`);
    }
    super(c, NAME);
    this.config = c;
    this.modelOutputs = new Array(c.solverOrder).fill(undefined);
  }

  setTimesteps(n: number): void {
    checkNumInferenceSteps(this.className, n, this.numTrainTimesteps);
    const c = this.config;
    // Clip the high-noise end where lambda < lambda_min_clipped (torch.searchsorted on flipped lambdas).
    const T = c.numTrainTimesteps;
    let clipped = 0;
    for (let t = T - 1; t >= 0 && lambdaOf(this.trainSigmas[t]!) < c.lambdaMinClipped; t--) clipped++;
    const lastTimestep = T - clipped;
    let timesteps = multistepTimesteps(c.timestepSpacing, T, lastTimestep, n, c.stepsOffset);
    const logSigmas = this.trainSigmas.map(Math.log);
    let sigmas: number[];
    if (c.useKarrasSigmas) {
      sigmas = karrasSigmas([...this.trainSigmas].reverse(), n);
      timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, logSigmas)));
    } else if (c.useLuLambdas) {
      sigmas = luLambdas([...logSigmas].reverse(), n).map(Math.exp);
      timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, logSigmas)));
    } else {
      sigmas = interpSigmas(timesteps, this.trainSigmas);
    }
    const last = c.finalSigmasType === 'zero' ? 0 : this.trainSigmas[0]!;
    this.timesteps = timesteps;
    this.sigmas = [...sigmas, last];
    this.numInferenceSteps = timesteps.length;
    this.resetHistory();
    this.resetStepIndex();
  }

  private resetHistory(): void {
    this.modelOutputs.forEach((m) => m?.dispose());
    this.modelOutputs = new Array(this.config.solverOrder).fill(undefined);
    this.lowerOrderNums = 0;
  }

  /** The solver's working quantity: x0 for the ++ algorithms, epsilon otherwise. */
  private get dataPrediction(): boolean {
    return this.config.algorithmType === 'dpmsolver++' || this.config.algorithmType === 'sde-dpmsolver++';
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, opts: StepOptions = {}): StepResult {
    if (this.numInferenceSteps === undefined) throw new Error(`${this.className}.step: call setTimesteps() first`);
    const c = this.config;
    const i = this.currentIndex(t);
    const n = this.timesteps.length;
    // Lower orders at the end improve stability for few steps (and are required with a zero final sigma).
    const lowerOrderFinal = i === n - 1 && (c.eulerAtFinal || (c.lowerOrderFinal && n < 15) || c.finalSigmasType === 'zero');
    const lowerOrderSecond = i === n - 2 && c.lowerOrderFinal && n < 15;

    const m = convertModelOutput(modelOutput, sample, this.sigmas[i]!, c.predictionType, this.dataPrediction);
    this.modelOutputs.shift()?.dispose();
    this.modelOutputs.push(hold(m));

    const sde = c.algorithmType === 'sde-dpmsolver' || c.algorithmType === 'sde-dpmsolver++';
    const noise = sde ? normalLike(modelOutput, opts.generator, `${this.className}.step (${c.algorithmType})`) : undefined;
    let order: number;
    if (c.solverOrder === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) order = 1;
    else if (c.solverOrder === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) order = 2;
    else order = 3;
    const prevSample = ops.linearCombination(this.updateTerms(order, i, sample, noise));
    noise?.dispose();
    if (this.lowerOrderNums < c.solverOrder) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return { prevSample };
  }

  /** The update x_{t} = sum_k w_k * tensor_k of the order-1/2/3 multistep formulas. */
  private updateTerms(order: number, i: number, sample: Tensor, noise: Tensor | undefined): [Tensor, number][] {
    const c = this.config;
    const hist = this.modelOutputs;
    const m0 = hist[hist.length - 1]!, m1 = hist[hist.length - 2], m2 = hist[hist.length - 3];
    const { alpha: aT, sigmaT: sT } = sigmaToAlphaSigma(this.sigmas[i + 1]!);
    const { alpha: a0, sigmaT: s0 } = sigmaToAlphaSigma(this.sigmas[i]!);
    const lT = Math.log(aT) - Math.log(sT), l0 = Math.log(a0) - Math.log(s0);
    const h = lT - l0;
    const plus = this.dataPrediction;
    const sde = noise !== undefined;
    const emh = Math.exp(-h), eh = Math.exp(h);

    // D terms as combinations of the history: D0 = m0, D1, D2 (diffusers' finite differences).
    let d1: [Tensor, number][] = [];
    let d2: [Tensor, number][] = [];
    if (order >= 2) {
      const { alpha: a1, sigmaT: s1 } = sigmaToAlphaSigma(this.sigmas[i - 1]!);
      const h0 = l0 - (Math.log(a1) - Math.log(s1));
      const r0 = h0 / h;
      if (order === 2) {
        d1 = [[m0, 1 / r0], [m1!, -1 / r0]];
      } else {
        const { alpha: a2, sigmaT: s2 } = sigmaToAlphaSigma(this.sigmas[i - 2]!);
        const h1 = (Math.log(a1) - Math.log(s1)) - (Math.log(a2) - Math.log(s2));
        const r1 = h1 / h;
        // D1_0 = (m0 - m1)/r0, D1_1 = (m1 - m2)/r1; D1 = D1_0 + r0/(r0+r1) (D1_0 - D1_1); D2 = (D1_0 - D1_1)/(r0+r1)
        const k = r0 / (r0 + r1);
        const d10 = [1 / r0, -1 / r0, 0], d11 = [0, 1 / r1, -1 / r1];
        const w1 = d10.map((v, j) => v + k * (v - d11[j]!));
        const w2 = d10.map((v, j) => (v - d11[j]!) / (r0 + r1));
        d1 = [[m0, w1[0]!], [m1!, w1[1]!], [m2!, w1[2]!]];
        d2 = [[m0, w2[0]!], [m1!, w2[1]!], [m2!, w2[2]!]];
      }
    }
    const scaled = (terms: [Tensor, number][], s: number): [Tensor, number][] => terms.map(([x, w]) => [x, w * s]);

    if (order === 1) {
      if (c.algorithmType === 'dpmsolver++') return [[sample, sT / s0], [m0, -aT * (emh - 1)]];
      if (c.algorithmType === 'dpmsolver') return [[sample, aT / a0], [m0, -sT * (eh - 1)]];
      if (c.algorithmType === 'sde-dpmsolver++') {
        return [[sample, (sT / s0) * emh], [m0, aT * (1 - Math.exp(-2 * h))], [noise!, sT * Math.sqrt(1 - Math.exp(-2 * h))]];
      }
      return [[sample, aT / a0], [m0, -2 * sT * (eh - 1)], [noise!, sT * Math.sqrt(Math.exp(2 * h) - 1)]];
    }
    if (order === 2) {
      const mid = c.solverType === 'midpoint';
      if (!sde && plus) {
        return [[sample, sT / s0], [m0, -aT * (emh - 1)],
          ...scaled(d1, mid ? -0.5 * aT * (emh - 1) : aT * ((emh - 1) / h + 1))];
      }
      if (!sde) {
        return [[sample, aT / a0], [m0, -sT * (eh - 1)],
          ...scaled(d1, mid ? -0.5 * sT * (eh - 1) : -sT * ((eh - 1) / h - 1))];
      }
      const z = Math.exp(-2 * h);
      if (plus) {
        return [[sample, (sT / s0) * emh], [m0, aT * (1 - z)],
          ...scaled(d1, mid ? 0.5 * aT * (1 - z) : aT * ((1 - z) / (-2 * h) + 1)),
          [noise!, sT * Math.sqrt(1 - z)]];
      }
      return [[sample, aT / a0], [m0, -2 * sT * (eh - 1)],
        ...scaled(d1, mid ? -sT * (eh - 1) : -2 * sT * ((eh - 1) / h - 1)),
        [noise!, sT * Math.sqrt(Math.exp(2 * h) - 1)]];
    }
    // order 3 (ODE forms only in diffusers)
    if (sde) throw new Error(`${this.className}: third-order updates are not defined for ${c.algorithmType}`);
    if (plus) {
      return [[sample, sT / s0], [m0, -aT * (emh - 1)],
        ...scaled(d1, aT * ((emh - 1) / h + 1)), ...scaled(d2, -aT * ((emh - 1 + h) / (h * h) - 0.5))];
    }
    return [[sample, aT / a0], [m0, -sT * (eh - 1)],
      ...scaled(d1, -sT * ((eh - 1) / h - 1)), ...scaled(d2, -sT * ((eh - 1 - h) / (h * h) - 0.5))];
  }

  dispose(): void {
    this.resetHistory();
  }
}
