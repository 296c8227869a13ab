// PNDMScheduler: pseudo numerical methods for diffusion models (Liu et al., arXiv 2202.09778),
// following diffusers v0.29.2 scheduling_pndm.py. With skip_prk_steps (Stable Diffusion's setting) it
// is PLMS: a linear multistep method over the last four noise estimates, started with a repeated
// first timestep; otherwise the first three steps run a pseudo Runge-Kutta warm-up (4 calls each).

import { ops, type Tensor } from '@cnx/tensor';
import { hold, retain, type Scheduler, type StepResult } from './scheduler.js';
import { ConfigReader, MAX_SCHEDULER_TIMESTEPS, type SchedulerConfigJson } from './scheduler_config.js';
import { AlphaCumprodScheduler } from './alpha_scheduler.js';
import { readNoiseScheduleConfig, type NoiseScheduleConfig, type TimestepSpacing } from './noise_schedule.js';
import { arange, linspace, roundHalfEven } from './numpy_compat.js';
import { checkNumInferenceSteps } from './timestep_tables.js';

export interface PNDMConfig extends NoiseScheduleConfig {
  skipPrkSteps: boolean;
  setAlphaToOne: boolean;
  predictionType: 'epsilon' | 'v_prediction';
  timestepSpacing: TimestepSpacing;
  stepsOffset: number;
}

/** Linear multistep (Adams-Bashforth) weights over the newest-first noise history, by history length. */
const PLMS_WEIGHTS: Readonly<Record<number, readonly number[]>> = {
  2: [3 / 2, -1 / 2],
  3: [23 / 12, -16 / 12, 5 / 12],
  4: [55 / 24, -59 / 24, 37 / 24, -9 / 24],
};

const NAME = 'PNDMScheduler' as const;

export class PNDMScheduler extends AlphaCumprodScheduler implements Scheduler {
  readonly className = NAME;
  readonly pndmOrder = 4;
  readonly config: PNDMConfig;
  prkTimesteps: number[] = [];
  plmsTimesteps: number[] = [];
  /** Raw model outputs, oldest first (diffusers `ets`, at most 4 used). */
  private ets: Tensor[] = [];
  private counter = 0;
  private curSample: Tensor | undefined;
  /** Runge-Kutta accumulator (PRK warm-up only). */
  private curModelOutput: Tensor | undefined;

  constructor(json: SchedulerConfigJson = {}) {
    const r = new ConfigReader(json, NAME);
    const config: PNDMConfig = {
      ...readNoiseScheduleConfig(r, { rescale: false }),
      skipPrkSteps: r.bool('skip_prk_steps', false),
      setAlphaToOne: r.bool('set_alpha_to_one', false),
      predictionType: r.oneOf('prediction_type', ['epsilon', 'v_prediction'] as const, 'epsilon'),
      timestepSpacing: r.oneOf('timestep_spacing', ['leading', 'linspace', 'trailing'] as const, 'leading'),
      stepsOffset: r.int('steps_offset', 0, 0, MAX_SCHEDULER_TIMESTEPS),
    };
    super(config, NAME);
    this.config = config;
  }

  setTimesteps(n: number): void {
    checkNumInferenceSteps(this.className, n, this.numTrainTimesteps);
    this.numInferenceSteps = n;
    const T = this.numTrainTimesteps, c = this.config;
    // Ascending base timesteps.
    let base: number[];
    if (c.timestepSpacing === 'linspace') base = linspace(0, T - 1, n).map(roundHalfEven);
    else if (c.timestepSpacing === 'leading') base = arange(0, n, 1).map((i) => roundHalfEven(i * Math.floor(T / n)) + c.stepsOffset);
    else base = arange(T, 0, -T / n).map(roundHalfEven).reverse().map((t) => t - 1);

    if (c.skipPrkSteps) {
      // PLMS needs a warm-up pair: the second-to-last (lowest noise... in ascending order, i.e. first
      // step) timestep is repeated: [..., t_{n-2}, t_{n-2}, t_{n-1}] reversed.
      this.prkTimesteps = [];
      this.plmsTimesteps = [...base.slice(0, -1), ...base.slice(-2, -1), ...base.slice(-1)].reverse();
    } else {
      const half = Math.floor(Math.floor(T / n) / 2);
      const lastFour = base.slice(-this.pndmOrder);
      const prk = lastFour.flatMap((t) => [t, t]).map((t, j) => t + (j % 2 === 0 ? 0 : half));
      // prk[:-1].repeat(2)[1:-1], reversed
      this.prkTimesteps = prk.slice(0, -1).flatMap((t) => [t, t]).slice(1, -1).reverse();
      this.plmsTimesteps = base.slice(0, -3).reverse();
    }
    this.timesteps = [...this.prkTimesteps, ...this.plmsTimesteps];
    this.resetState();
  }

  private resetState(): void {
    this.ets.forEach((e) => e.dispose());
    this.ets = [];
    this.curSample?.dispose();
    this.curSample = undefined;
    this.curModelOutput?.dispose();
    this.curModelOutput = undefined;
    this.counter = 0;
  }

  setBeginIndex(_index: number): void {
    // PNDM's state machine is driven by its call counter, not by a schedule index.
  }

  private get stride(): number {
    return Math.floor(this.numTrainTimesteps / this.numInferenceSteps!);
  }

  step(modelOutput: Tensor, t: number, sample: Tensor): StepResult {
    if (this.numInferenceSteps === undefined) throw new Error(`${this.className}.step: call setTimesteps() first`);
    return this.counter < this.prkTimesteps.length && !this.config.skipPrkSteps
      ? this.stepPrk(modelOutput, t, sample)
      : this.stepPlms(modelOutput, t, sample);
  }

  /** Pseudo Runge-Kutta warm-up: four calls per step, combined with weights 1/6, 1/3, 1/3, 1/6. */
  private stepPrk(modelOutput: Tensor, t: number, sample: Tensor): StepResult {
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(this.stride / 2);
    const prevT = t - diffToPrev;
    const t0 = this.prkTimesteps[Math.floor(this.counter / 4) * 4]!;
    let eps: Tensor;
    const phase = this.counter % 4;
    if (phase === 0) {
      this.curModelOutput = hold(ops.affine(modelOutput, 1 / 6));
      this.ets.push(retain(modelOutput));
      this.curSample?.dispose();
      this.curSample = retain(sample);
      eps = modelOutput.reshape(modelOutput.shape);
    } else if (phase === 1 || phase === 2) {
      const acc = ops.linearCombination([[this.curModelOutput!, 1], [modelOutput, 1 / 3]]);
      this.curModelOutput!.dispose();
      this.curModelOutput = hold(acc);
      eps = modelOutput.reshape(modelOutput.shape);
    } else {
      eps = ops.linearCombination([[this.curModelOutput!, 1], [modelOutput, 1 / 6]]);
      this.curModelOutput!.dispose();
      this.curModelOutput = undefined;
    }
    const prevSample = this.prevSample(this.curSample ?? sample, t0, prevT, eps);
    eps.dispose();
    this.counter++;
    return { prevSample };
  }

  private stepPlms(modelOutput: Tensor, t: number, sample: Tensor): StepResult {
    if (!this.config.skipPrkSteps && this.ets.length < 3) {
      throw new Error(`${this.className}: PLMS steps need 3 PRK warm-up steps first (${this.ets.length} done); run the full schedule or set skip_prk_steps`);
    }
    let prevT = t - this.stride;
    let tCur = t;
    if (this.counter !== 1) {
      while (this.ets.length > 3) this.ets.shift()!.dispose();
      this.ets.push(retain(modelOutput));
    } else {
      // The repeated first timestep: the second call re-evaluates at t + stride from the stored sample.
      prevT = t;
      tCur = t + this.stride;
    }
    const e = this.ets;
    let eps: Tensor;
    let x = sample;
    if (e.length === 1 && this.counter === 0) {
      eps = modelOutput.reshape(modelOutput.shape);
      this.curSample = retain(sample);
    } else if (e.length === 1 && this.counter === 1) {
      eps = ops.linearCombination([[modelOutput, 0.5], [e[0]!, 0.5]]);
      x = this.curSample!;
    } else {
      const w = PLMS_WEIGHTS[e.length]!;
      eps = ops.linearCombination(w.map((wk, k) => [e[e.length - 1 - k]!, wk] as [Tensor, number]));
    }
    const prevSample = this.prevSample(x, tCur, prevT, eps);
    eps.dispose();
    if (x === this.curSample && this.counter === 1) {
      this.curSample.dispose();
      this.curSample = undefined;
    }
    this.counter++;
    return { prevSample };
  }

  /** Eq. (9) of the PNDM paper: the transfer from x_t to x_{t-delta} given the noise estimate. */
  private prevSample(sample: Tensor, t: number, prevT: number, eps: Tensor): Tensor {
    const aT = this.alphaAt(t);
    const aPrev = this.alphaPrev(prevT);
    const bT = 1 - aT, bPrev = 1 - aPrev;
    const sampleCoeff = Math.sqrt(aPrev / aT);
    const denom = aT * Math.sqrt(bPrev) + Math.sqrt(aT * bT * aPrev);
    const k = -(aPrev - aT) / denom;
    if (this.config.predictionType === 'v_prediction') {
      // eps = sqrt(abar) v + sqrt(1 - abar) x
      return ops.linearCombination([[sample, sampleCoeff + k * Math.sqrt(bT)], [eps, k * Math.sqrt(aT)]]);
    }
    return ops.linearCombination([[sample, sampleCoeff], [eps, k]]);
  }

  dispose(): void {
    this.resetState();
  }
}
