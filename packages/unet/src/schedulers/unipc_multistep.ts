// UniPCMultistepScheduler: the unified predictor-corrector of Zhao et al. (arXiv 2302.04867),
// following diffusers v0.29.2 scheduling_unipc_multistep.py. Each step first corrects the previous
// prediction with the new model output (UniC), then predicts the next sample (UniP). The ControlNeXt
// SD1.5 pipeline's default: bh2, order 2, predict_x0.

import { ops, type Tensor } from '@cnx/tensor';
import { hold, retain, type Scheduler, type StepResult } from './scheduler.js';
import { ConfigReader, MAX_SCHEDULER_TIMESTEPS, type SchedulerConfigJson } from './scheduler_config.js';
import {
  readNoiseScheduleConfig, sigmaToAlphaSigma, type NoiseScheduleConfig, type PredictionType, type TimestepSpacing,
} from './noise_schedule.js';
import { convertModelOutput } from './model_output.js';
import { roundHalfEven } from './numpy_compat.js';
import { MultistepSigmaScheduler } from './sigma_scheduler.js';
import { checkNumInferenceSteps, interpSigmas, karrasSigmas, multistepTimesteps, sigmaToT } from './timestep_tables.js';

export interface UniPCConfig extends NoiseScheduleConfig {
  solverOrder: number;
  predictionType: PredictionType;
  predictX0: boolean;
  solverType: 'bh1' | 'bh2';
  lowerOrderFinal: boolean;
  /** Step indices after which the corrector is skipped. */
  disableCorrector: number[];
  useKarrasSigmas: boolean;
  timestepSpacing: TimestepSpacing;
  stepsOffset: number;
  finalSigmasType: 'zero' | 'sigma_min';
}

/** Solve the small dense system A x = b (Gaussian elimination with partial pivoting). */
function solve(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((row, i) => [...row, b[i]!]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r]![c]!) > Math.abs(M[p]![c]!)) p = r;
    [M[c], M[p]] = [M[p]!, M[c]!];
    for (let r = c + 1; r < n; r++) {
      const f = M[r]![c]! / M[c]![c]!;
      for (let k = c; k <= n; k++) M[r]![k]! -= f * M[c]![k]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r]![n]!;
    for (let k = r + 1; k < n; k++) s -= M[r]![k]! * x[k]!;
    x[r] = s / M[r]![r]!;
  }
  return x;
}

const NAME = 'UniPCMultistepScheduler' as const;

export class UniPCMultistepScheduler extends MultistepSigmaScheduler implements Scheduler {
  readonly className = NAME;
  readonly config: UniPCConfig;
  /** Converted model outputs of the last `solverOrder` steps, oldest first. */
  private modelOutputs: (Tensor | undefined)[];
  private lowerOrderNums = 0;
  private lastSample: Tensor | undefined;
  private thisOrder = 1;

  constructor(json: SchedulerConfigJson = {}) {
    const r = new ConfigReader(json, NAME);
    r.unsupported('thresholding', (v) => v === false, 'dynamic thresholding is for pixel-space models');
    r.unsupported('solver_p', () => false, 'an external solver_p scheduler cannot be given in a config file');
    const dc = r.numberArrayOrNull('disable_corrector', { min: 0, max: MAX_SCHEDULER_TIMESTEPS }) ?? [];
    const config: UniPCConfig = {
      ...readNoiseScheduleConfig(r, { rescale: true }),
      solverOrder: r.int('solver_order', 2, 1, 8),
      predictionType: r.oneOf('prediction_type', ['epsilon', 'v_prediction', 'sample'] as const, 'epsilon'),
      predictX0: r.bool('predict_x0', true),
      // diffusers registers DPM-Solver's solver types as bh2.
      solverType: r.oneOf('solver_type', ['bh1', 'bh2'] as const, 'bh2', { midpoint: 'bh2', heun: 'bh2', logrho: 'bh2' }),
      lowerOrderFinal: r.bool('lower_order_final', true),
      disableCorrector: dc,
      useKarrasSigmas: r.bool('use_karras_sigmas', false),
      timestepSpacing: r.oneOf('timestep_spacing', ['leading', 'linspace', 'trailing'] as const, 'linspace'),
      stepsOffset: r.int('steps_offset', 0, 0, MAX_SCHEDULER_TIMESTEPS),
      finalSigmasType: r.oneOf('final_sigmas_type', ['zero', 'sigma_min'] as const, 'zero'),
    };
    super(config, NAME);
    this.config = config;
    this.modelOutputs = new Array(this.config.solverOrder).fill(undefined);
  }

  setTimesteps(n: number): void {
    checkNumInferenceSteps(this.className, n, this.numTrainTimesteps);
    const c = this.config, T = c.numTrainTimesteps;
    let timesteps = multistepTimesteps(c.timestepSpacing, T, T, n, c.stepsOffset);
    let sigmas: number[];
    let last: number;
    if (c.useKarrasSigmas) {
      const logSigmas = this.trainSigmas.map(Math.log);
      sigmas = karrasSigmas([...this.trainSigmas].reverse(), n);
      timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, logSigmas)));
      last = c.finalSigmasType === 'zero' ? 0 : sigmas[sigmas.length - 1]!;
    } else {
      sigmas = interpSigmas(timesteps, this.trainSigmas);
      last = c.finalSigmasType === 'zero' ? 0 : this.trainSigmas[0]!;
    }
    this.timesteps = timesteps;
    this.sigmas = [...sigmas, last];
    this.numInferenceSteps = timesteps.length;
    this.resetState();
    this.resetStepIndex();
  }

  private resetState(): void {
    this.modelOutputs.forEach((m) => m?.dispose());
    this.modelOutputs = new Array(this.config.solverOrder).fill(undefined);
    this.lastSample?.dispose();
    this.lastSample = undefined;
    this.lowerOrderNums = 0;
    this.thisOrder = 1;
  }

  private lambdaAt(i: number): number {
    const { alpha, sigmaT } = sigmaToAlphaSigma(this.sigmas[i]!);
    return Math.log(alpha) - Math.log(sigmaT);
  }

  /**
   * The phi-function coefficients shared by UniP and UniC for a step of log-SNR length h:
   * hh = -h (x0 prediction) or h, h_phi_1 = expm1(hh), B(h) (bh1: hh, bh2: expm1(hh)), and the
   * right-hand side b_i = h_phi_{i+1} * i! / B(h) of the order conditions.
   */
  private phi(h: number, order: number): { hh: number; hPhi1: number; Bh: number; b: number[] } {
    const hh = this.config.predictX0 ? -h : h;
    const hPhi1 = Math.expm1(hh);
    let hPhiK = hPhi1 / hh - 1;
    let factorial = 1;
    const Bh = this.config.solverType === 'bh1' ? hh : Math.expm1(hh);
    const b: number[] = [];
    for (let i = 1; i <= order; i++) {
      b.push(hPhiK * factorial / Bh);
      factorial *= i + 1;
      hPhiK = hPhiK / hh - 1 / factorial;
    }
    return { hh, hPhi1, Bh, b };
  }

  /** The common first-order part: sigma_t/sigma_s0 x - alpha_t h_phi_1 m0 (or its epsilon form). */
  private baseTerms(x: Tensor, m0: Tensor, iT: number, iS: number, hPhi1: number): { terms: [Tensor, number][]; gain: number } {
    const { alpha: aT, sigmaT: sT } = sigmaToAlphaSigma(this.sigmas[iT]!);
    const { alpha: aS, sigmaT: sS } = sigmaToAlphaSigma(this.sigmas[iS]!);
    return this.config.predictX0
      ? { terms: [[x, sT / sS], [m0, -aT * hPhi1]], gain: aT }
      : { terms: [[x, aT / aS], [m0, -sT * hPhi1]], gain: sT };
  }

  /** UniP (multistep_uni_p_bh_update): predict x at step i+1 from the history. */
  private predictor(sample: Tensor, i: number, order: number): Tensor {
    const hist = this.modelOutputs;
    const m0 = hist[hist.length - 1]!;
    const l0 = this.lambdaAt(i);
    const h = this.lambdaAt(i + 1) - l0;
    const rks: number[] = [];
    const d1s: { mi: Tensor; rk: number }[] = [];
    for (let k = 1; k < order; k++) {
      const rk = (this.lambdaAt(i - k) - l0) / h;
      rks.push(rk);
      d1s.push({ mi: hist[hist.length - 1 - k]!, rk });
    }
    rks.push(1);
    const { hPhi1, Bh, b } = this.phi(h, order);
    const { terms, gain } = this.baseTerms(sample, m0, i + 1, i, hPhi1);
    if (d1s.length > 0) {
      // rhos_p: 0.5 for order 2, else solve R[:-1, :-1] rho = b[:-1] with R[p][k] = rks[k]^p.
      const rhos = order === 2 ? [0.5] : solve(
        Array.from({ length: order - 1 }, (_, p) => rks.slice(0, order - 1).map((r) => r ** p)), b.slice(0, order - 1));
      // x_t -= gain * B(h) * sum_k rho_k (m_k - m0) / r_k
      d1s.forEach(({ mi, rk }, k) => {
        const w = -gain * Bh * rhos[k]! / rk;
        terms.push([mi, w], [m0, -w]);
      });
    }
    return ops.linearCombination(terms);
  }

  /** UniC (multistep_uni_c_bh_update): correct the sample at step i with the new model output. */
  private corrector(thisModelOutput: Tensor, lastSample: Tensor, i: number, order: number): Tensor {
    const hist = this.modelOutputs;
    const m0 = hist[hist.length - 1]!;
    const l0 = this.lambdaAt(i - 1);
    const h = this.lambdaAt(i) - l0;
    const rks: number[] = [];
    const d1s: { mi: Tensor; rk: number }[] = [];
    for (let k = 1; k < order; k++) {
      const rk = (this.lambdaAt(i - (k + 1)) - l0) / h;
      rks.push(rk);
      d1s.push({ mi: hist[hist.length - 1 - k]!, rk });
    }
    rks.push(1);
    const { hPhi1, Bh, b } = this.phi(h, order);
    const rhos = order === 1 ? [0.5] : solve(Array.from({ length: order }, (_, p) => rks.map((r) => r ** p)), b);
    const { terms, gain } = this.baseTerms(lastSample, m0, i, i - 1, hPhi1);
    d1s.forEach(({ mi, rk }, k) => {
      const w = -gain * Bh * rhos[k]! / rk;
      terms.push([mi, w], [m0, -w]);
    });
    // + rho_last * (model_t - m0)
    const wLast = -gain * Bh * rhos[rhos.length - 1]!;
    terms.push([thisModelOutput, wLast], [m0, -wLast]);
    return ops.linearCombination(terms);
  }

  step(modelOutput: Tensor, t: number, sample: Tensor): StepResult {
    if (this.numInferenceSteps === undefined) throw new Error(`${this.className}.step: call setTimesteps() first`);
    const c = this.config;
    const i = this.currentIndex(t);
    const useCorrector = i > 0 && !c.disableCorrector.includes(i - 1) && this.lastSample !== undefined;
    const converted = convertModelOutput(modelOutput, sample, this.sigmas[i]!, c.predictionType, c.predictX0);
    let x = sample;
    if (useCorrector) x = this.corrector(converted, this.lastSample!, i, this.thisOrder);

    this.modelOutputs.shift()?.dispose();
    this.modelOutputs.push(hold(converted));

    const order = c.lowerOrderFinal ? Math.min(c.solverOrder, this.timesteps.length - i) : c.solverOrder;
    this.thisOrder = Math.min(order, this.lowerOrderNums + 1); // warm-up of the multistep history
    this.lastSample?.dispose();
    this.lastSample = x === sample ? retain(sample) : hold(x);
    const prevSample = this.predictor(x, i, this.thisOrder);
    if (this.lowerOrderNums < c.solverOrder) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return { prevSample };
  }

  dispose(): void {
    this.resetState();
  }
}
