// The convergence experiment (issue 12): the ControlNeXt paper's claim that the light module with cross
// normalisation converges in ~400-1000 steps where ControlNet (zero convolution) needs ten times more,
// reproduced at a scale two CPU cores can run:
//   1. a tiny text-to-image UNet is trained from scratch on the synthetic shapes set (base_model.ts) on
//      pixel-grid latents (pixel_latents.ts: a fixed, non-learned codec, no VAE);
//   2. on the frozen base, the light ControlNeXt module is trained by ControlNeXtTrainer (the SD1.5-Training
//      recipe: module at 10x lr plus the UNet's attention to_out) with injection 'cross_norm' and with
//      'zero_conv', same data, seeds and budget; seed k fixes the module's initial weights, the batch order
//      and the noise/timesteps of both arms alike;
//   3. every evalEvery steps (and at 0 and the end) the held-out set (shapes seed 1: never trained on) is
//      generated with DDIM from fixed noise and each image's shape IoU against its control mask is taken.
// Everything is a pure function of the options; the wall times and the machine load are recorded beside.

import { CLIPTextModel, RandomGenerator, type UNet2DConditionModel } from '@cnx/unet';
import { RandomWeights, noGrad, type Backend, type Tensor } from '@cnx/tensor';
import {
  ClipPromptEncoder, ControlNeXt, ControlNeXtLightModule, ControlNeXtTrainer, SHAPE_COLOUR_NAMES,
  SHAPE_KINDS, TINY_LIGHT_CONTROLNEXT_STRUCTURE, TrainingDataCache, mixSeed, shapeIoU, shapePrompt, shapeSample,
  shapesExampleSource, tinyTextConfig, tinyTokenizer, trainingNoiseSchedule, type ShapeDatasetOptions, type ShapeSample,
  type TrainingInjection, type TrainingNoiseSchedule,
} from '@cnx/controlnext';
import { createBaseUnet, hostWeights, setWeights, trainBaseModel, type BaseTrainingRow, type HostWeights } from './base_model.js';
import { TRAINING_SCHEDULER_CONFIG, crossNormInjector, generateLatents, measureFidelity, zeroConvInjector, type ControlInjector } from './controlled_sampling.js';
import type { ConvergenceOptions } from './convergence_options.js';
import { LATENT_CHANNELS, PIXELS_PER_LATENT, decodePixelLatents, pixelLatentEncoder } from './pixel_latents.js';
import { recogniseShape } from './shape_recognition.js';

export const CONVERGENCE_FORMAT = 'cnx.convergence_experiment.v1';
export const ARMS: readonly TrainingInjection[] = ['cross_norm', 'zero_conv'];
/** Radius range of the shapes (fractions of the image): large enough to be drawn on the 16 x 16 pixel grid of 64 px images. */
export const SHAPE_RADIUS_RANGE = [0.25, 0.45] as const;
const TRAIN_DATASET_SEED = 0, HELD_OUT_DATASET_SEED = 1;
const TEXT_ENCODER_SEED = 17, EVAL_NOISE_SEED = 23, BASE_SEED = 0;

export interface EvalPoint {
  step: number;
  meanIoU: number;
  /** Per held-out sample. */
  ious: number[];
  /**
   * The same generations with the held-out controls shifted by one (sample k gets sample k+1's control),
   * scored against sample k's own mask: what the model scores when the control carries no information about
   * the target. meanIoU - shuffledMeanIoU is the part of the fidelity the control itself buys, separate from
   * the base model drifting (the recipe also trains the UNet's to_out).
   */
  shuffledMeanIoU: number;
  shuffledIous: number[];
  ms: number;
}

export interface ArmRun {
  seed: number;
  evals: EvalPoint[];
  /** Training loss of every step. */
  losses: number[];
  trainMsPerStep: number;
  wallS: number;
}

export interface BaseModelReport {
  trainedHere: boolean;
  steps: number;
  wallS: number;
  msPerStep?: number;
  /** Mean loss of the first and last 50 steps. */
  lossFirst50?: number;
  lossLast50?: number;
  /** Prompt-only generations of every (shape, colour) prompt: recognised colour and shape (shape_recognition.ts). */
  grid: { prompts: string[]; colourAccuracy: number; shapeAccuracy: number; shapeAccuracyGivenColour: number; meanFit: number; recognised: Array<{ colour?: string; shape?: string; fit: number }> };
  /** Held-out set, prompt only (no control): the IoU a model gets without using the control (position is random). */
  noControlIoU: { mean: number; ious: number[] };
}

export interface ConvergenceResults {
  format: string;
  command: string;
  options: ConvergenceOptions;
  backend: string;
  machine: { cpu: string; cores: number; loadBefore: number[]; loadAfter: number[]; loadSamples: Array<{ at: string; phase: string; load: number[] }> };
  data: {
    imageSize: number; latentShape: number[]; control: string; radiusRange: readonly number[]; trainExamples: number; trainDatasetSeed: number;
    heldOut: { datasetSeed: number; count: number; prompts: string[] };
    /** IoU of decode(encode(target)) against the mask: the best any model can score through the codec. */
    ceilingIoU: { mean: number; min: number; ious: number[] };
    /** recogniseShape on decode(encode(target)) of the held-out set: the recogniser's own accuracy through the codec. */
    ceilingShapeAccuracy: number;
  };
  recipe: { baseLr: number; baseBatch: number; controlLr: number; moduleLr: number; controlBatch: number; unetTrainable: string; schedule: string; sampler: string; controlParameters: Record<string, { control: number; unet: number }> };
  base: BaseModelReport;
  arms: Record<string, ArmRun[]>;
  evalSteps: number[];
  wall: { totalS: number; baseS: number; armsS: number };
}

export interface ExperimentArtifacts {
  results: ConvergenceResults;
  baseLog: BaseTrainingRow[];
  baseWeights: HostWeights;
  /** Images for the report: held-out controls/targets, prompt-only base images, final images of seed 0 per arm, base prompt grid. */
  images: { heldOut: ShapeSample[]; noControl: Uint8Array[]; finalBySeed0: Record<string, Uint8Array[]>; baseGrid: Uint8Array[] };
}

export interface ExperimentHooks {
  log?: (line: string) => void;
  /** The command line recorded in the results. */
  command?: string;
  /** Base weights to use instead of training (--base-from, read by the caller). */
  baseWeights?: HostWeights;
  cpu?: { cpu: string; cores: number };
  loadavg?: () => number[];
}

/** The eval steps: 0, every evalEvery, and the last step. */
export function evalSchedule(steps: number, every: number): number[] {
  const out: number[] = [];
  for (let s = 0; s < steps; s += every) out.push(s);
  out.push(steps);
  return out;
}

/** [B, 3, S, S] in [0, 1] from the samples' control bytes (ToTensor). */
function controlTensor(backend: Backend, samples: readonly ShapeSample[]): Tensor {
  const S = samples[0]!.size, hw = S * S;
  const out = new Float32Array(samples.length * 3 * hw);
  samples.forEach((s, b) => { for (let i = 0; i < hw; i++) for (let c = 0; c < 3; c++) out[(b * 3 + c) * hw + i] = s.control[3 * i + c]! / 255; });
  return backend.fromRaw(out, [samples.length, 3, S, S]);
}

/** [B, 3, S, S] in [-1, 1] from the samples' target bytes (ToTensor, Normalize(0.5, 0.5)). */
function targetTensor(backend: Backend, samples: readonly ShapeSample[]): Tensor {
  const S = samples[0]!.size, hw = S * S;
  const out = new Float32Array(samples.length * 3 * hw);
  samples.forEach((s, b) => { for (let i = 0; i < hw; i++) for (let c = 0; c < 3; c++) out[(b * 3 + c) * hw + i] = s.target[3 * i + c]! / 127.5 - 1; });
  return backend.fromRaw(out, [samples.length, 3, S, S]);
}

const mean = (v: readonly number[]) => v.reduce((a, b) => a + b, 0) / Math.max(1, v.length);

export async function runConvergenceExperiment(backend: Backend, o: ConvergenceOptions, hooks: ExperimentHooks = {}): Promise<ExperimentArtifacts> {
  const log = hooks.log ?? (() => {});
  const loadavg = hooks.loadavg ?? (() => [0, 0, 0]);
  const loadSamples: ConvergenceResults['machine']['loadSamples'] = [];
  const sampleLoad = (phase: string) => loadSamples.push({ at: new Date().toISOString(), phase, load: loadavg() });
  const loadBefore = loadavg();
  const tStart = performance.now();
  const S = o.size, h = S / PIXELS_PER_LATENT;
  const schedule: TrainingNoiseSchedule = trainingNoiseSchedule(TRAINING_SCHEDULER_CONFIG);
  const dataset: ShapeDatasetOptions = { size: S, seed: TRAIN_DATASET_SEED, control: o.control, radiusRange: SHAPE_RADIUS_RANGE };

  // Frozen prompt encoder (random tiny CLIP) and the held-out set.
  const tokenizer = tinyTokenizer();
  const textEncoder = new ClipPromptEncoder(tokenizer, new CLIPTextModel(tinyTextConfig(tokenizer), new RandomWeights({ seed: TEXT_ENCODER_SEED }), backend));
  const heldOut = Array.from({ length: o.evalSamples }, (_, i) => shapeSample(i, { ...dataset, seed: HELD_OUT_DATASET_SEED }));
  const K = heldOut.length;
  const latentShape = [K, LATENT_CHANNELS, h, h];
  const evalEhs = noGrad(() => textEncoder.encode(heldOut.map((s) => s.prompt)));
  const evalControl = controlTensor(backend, heldOut);
  const evalControlShuffled = controlTensor(backend, heldOut.map((_, k) => heldOut[(k + 1) % K]!));
  const evalNoise = new RandomGenerator(mixSeed(EVAL_NOISE_SEED, K)).normal(K * LATENT_CHANNELS * h * h);

  // The codec's ceiling on the held-out set.
  const targets = targetTensor(backend, heldOut);
  const enc = noGrad(() => pixelLatentEncoder.encode(targets));
  const codecImages = decodePixelLatents(await enc.mean.data(), K, h);
  for (const t of [targets, enc.mean, enc.logvar, enc.std]) t.dispose();
  const ceilingIous = codecImages.map((rgb, k) => shapeIoU({ rgb, height: S, width: S }, heldOut[k]!).iou);
  const ceilingShapeAccuracy = mean(codecImages.map((rgb, k) => (recogniseShape(rgb, S, heldOut[k]!.backgroundRgb).shape === heldOut[k]!.shape ? 1 : 0)));
  log(`codec ceiling IoU on the held-out set: ${mean(ceilingIous).toFixed(3)}; shape recogniser accuracy through the codec: ${ceilingShapeAccuracy.toFixed(2)}`);

  const cache = (seed: number, batchSize: number) => TrainingDataCache.build(shapesExampleSource(o.trainExamples, dataset), {
    backend, vae: pixelLatentEncoder, textEncoder, resolution: S, batchSize, seed, latents: 'mean', encodeBatchSize: 64,
  });

  // 1. The base model.
  sampleLoad('base start');
  const tBase = performance.now();
  const unet: UNet2DConditionModel = createBaseUnet(backend, h, hooks.baseWeights);
  let baseLog: BaseTrainingRow[] = [];
  if (!hooks.baseWeights) {
    const data = await cache(BASE_SEED, o.baseBatch);
    const recent: number[] = [];
    log(`base model: training all ${unet.numParameters()} UNet parameters for ${o.baseSteps} steps (batch ${o.baseBatch}, lr ${o.baseLr})`);
    baseLog = await trainBaseModel(unet, data, schedule, {
      steps: o.baseSteps, learningRate: o.baseLr, seed: BASE_SEED,
      onStep: (r) => {
        recent.push(r.loss);
        if (recent.length > 100) recent.shift();
        if ((r.step + 1) % 100 === 0 || r.step + 1 === o.baseSteps) {
          log(`base step ${r.step + 1}/${o.baseSteps}: loss ${r.loss.toFixed(4)} (mean of the last ${recent.length} ${mean(recent).toFixed(4)}), ${r.elapsed_s.toFixed(0)} s`);
        }
      },
    });
  }
  const baseWeights = hooks.baseWeights ?? await hostWeights(unet);
  const baseTrainS = (performance.now() - tBase) / 1000;

  // Base-model checks: prompt-only grid of every (shape, colour), and the held-out set without control.
  const gridPrompts = SHAPE_KINDS.flatMap((shape) => SHAPE_COLOUR_NAMES.map((colour) => ({ shape, colour, prompt: shapePrompt(colour, shape) })));
  const gridEhs = noGrad(() => textEncoder.encode(gridPrompts.map((p) => p.prompt)));
  const gridLatents = await generateLatents(unet, gridEhs, new RandomGenerator(mixSeed(EVAL_NOISE_SEED, 1, gridPrompts.length)).normal(gridPrompts.length * LATENT_CHANNELS * h * h), [gridPrompts.length, LATENT_CHANNELS, h, h], o.ddimSteps);
  gridEhs.dispose();
  const baseGrid = decodePixelLatents(gridLatents, gridPrompts.length, h);
  const recognised = baseGrid.map((rgb) => recogniseShape(rgb, S, [0, 0, 0]));
  const colourHits = recognised.map((r, i) => r.colour === gridPrompts[i]!.colour);
  const shapeHits = recognised.map((r, i) => r.shape === gridPrompts[i]!.shape);
  const noControl = await measureFidelity(unet, evalEhs, evalNoise, heldOut, latentShape, o.ddimSteps);
  const lossWindow = (rows: BaseTrainingRow[]) => mean(rows.map((r) => r.loss));
  const base: BaseModelReport = {
    trainedHere: !hooks.baseWeights, steps: hooks.baseWeights ? 0 : o.baseSteps, wallS: (performance.now() - tBase) / 1000,
    ...(baseLog.length ? { msPerStep: (baseTrainS * 1000) / baseLog.length, lossFirst50: lossWindow(baseLog.slice(0, 50)), lossLast50: lossWindow(baseLog.slice(-50)) } : {}),
    grid: {
      prompts: gridPrompts.map((p) => p.prompt),
      colourAccuracy: mean(colourHits.map(Number)), shapeAccuracy: mean(shapeHits.map(Number)),
      shapeAccuracyGivenColour: colourHits.some(Boolean) ? mean(shapeHits.filter((_, i) => colourHits[i]).map(Number)) : 0,
      meanFit: mean(recognised.map((r) => r.fit)),
      recognised: recognised.map((r) => ({ ...(r.colour ? { colour: r.colour } : {}), ...(r.shape ? { shape: r.shape } : {}), fit: r.fit })),
    },
    noControlIoU: { mean: noControl.mean, ious: noControl.ious },
  };
  log(`base model: prompt-only grid colour accuracy ${base.grid.colourAccuracy.toFixed(2)}, shape accuracy ${base.grid.shapeAccuracy.toFixed(2)} (chance 0.125 / 0.2); held-out IoU without control ${noControl.mean.toFixed(3)}`);
  sampleLoad('base done');

  // 2-3. The control arms.
  const tArms = performance.now();
  const evalSteps = evalSchedule(o.steps, o.evalEvery);
  const arms: Record<string, ArmRun[]> = { cross_norm: [], zero_conv: [] };
  const finalBySeed0: Record<string, Uint8Array[]> = {};
  const controlParameters: Record<string, { control: number; unet: number }> = {};
  for (let seed = 0; seed < o.seeds; seed++) {
    const data = await cache(seed, o.batch);
    for (const injection of ARMS) {
      const tRun = performance.now();
      setWeights(unet, baseWeights);
      const module = new ControlNeXtLightModule(new RandomWeights({ seed: 1000 + seed }), backend, TINY_LIGHT_CONTROLNEXT_STRUCTURE);
      const cnx = new ControlNeXt('sd15_training', module, backend);
      const trainer = await ControlNeXtTrainer.create({ unet, controlnext: cnx, schedule, learningRate: o.lr, injection, seed });
      controlParameters[injection] = trainer.parameterCounts();
      const injector = (control: Tensor): ControlInjector => {
        if (injection === 'cross_norm') return crossNormInjector(cnx, control);
        const p = (k: string) => trainer.parameters().find((x) => x.owner === 'zero_conv' && x.key === k)!.tensor;
        return zeroConvInjector(cnx, control, p('weight'), p('bias'));
      };
      const run: ArmRun = { seed, evals: [], losses: [], trainMsPerStep: 0, wallS: 0 };
      let trainMs = 0;
      const evaluate = async (step: number, last: boolean) => {
        const te = performance.now();
        const f = await measureFidelity(unet, evalEhs, evalNoise, heldOut, latentShape, o.ddimSteps, injector(evalControl));
        const g = await measureFidelity(unet, evalEhs, evalNoise, heldOut, latentShape, o.ddimSteps, injector(evalControlShuffled));
        run.evals.push({ step, meanIoU: f.mean, ious: f.ious, shuffledMeanIoU: g.mean, shuffledIous: g.ious, ms: performance.now() - te });
        if (last && seed === 0) finalBySeed0[injection] = f.images;
        log(`${injection} seed ${seed} step ${step}: held-out IoU ${f.mean.toFixed(3)} (shifted controls ${g.mean.toFixed(3)})${run.losses.length ? `, loss (last ${Math.min(o.evalEvery, run.losses.length)}) ${mean(run.losses.slice(-o.evalEvery)).toFixed(4)}` : ''}`);
      };
      try {
        for (let step = 0; step < o.steps; step++) {
          if (evalSteps.includes(step)) await evaluate(step, false);
          const batch = data.batch(step);
          const ts = performance.now();
          try {
            const r = await trainer.trainStep(batch);
            run.losses.push(r.loss);
          } finally {
            batch.latents.dispose(); batch.encoderHiddenStates.dispose(); batch.controlImage.dispose();
          }
          trainMs += performance.now() - ts;
        }
        await evaluate(o.steps, true);
      } finally {
        trainer.dispose();
        cnx.dispose();
      }
      run.trainMsPerStep = trainMs / o.steps;
      run.wallS = (performance.now() - tRun) / 1000;
      arms[injection]!.push(run);
      sampleLoad(`${injection} seed ${seed} done`);
    }
  }
  const armsS = (performance.now() - tArms) / 1000;
  evalEhs.dispose(); evalControl.dispose(); evalControlShuffled.dispose();
  textEncoder.dispose();
  unet.dispose();

  const results: ConvergenceResults = {
    format: CONVERGENCE_FORMAT,
    command: hooks.command ?? '',
    options: o,
    backend: backend.description,
    machine: { ...(hooks.cpu ?? { cpu: 'unknown', cores: 0 }), loadBefore, loadAfter: loadavg(), loadSamples },
    data: {
      imageSize: S, latentShape: [LATENT_CHANNELS, h, h], control: o.control, radiusRange: SHAPE_RADIUS_RANGE, trainExamples: o.trainExamples, trainDatasetSeed: TRAIN_DATASET_SEED,
      heldOut: { datasetSeed: HELD_OUT_DATASET_SEED, count: K, prompts: heldOut.map((s) => s.prompt) },
      ceilingIoU: { mean: mean(ceilingIous), min: Math.min(...ceilingIous), ious: ceilingIous },
      ceilingShapeAccuracy,
    },
    recipe: {
      baseLr: o.baseLr, baseBatch: o.baseBatch, controlLr: o.lr, moduleLr: o.lr * 10, controlBatch: o.batch, unetTrainable: 'to_out',
      schedule: 'SD1.5 scaled_linear, 1000 steps, v_prediction', sampler: `DDIM ${o.ddimSteps} steps, eta 0, predicted x0 clipped to [-1, 1], no classifier-free guidance`, controlParameters,
    },
    base, arms, evalSteps,
    wall: { totalS: (performance.now() - tStart) / 1000, baseS: base.wallS, armsS },
  };
  return { results, baseLog, baseWeights, images: { heldOut, noControl: noControl.images, finalBySeed0, baseGrid } };
}
