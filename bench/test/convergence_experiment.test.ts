// The convergence experiment (bench/src/convergence) at a toy size on the CPU reference backend: the run's
// result structure (every arm has every seed and eval step, one loss per step, IoU values in [0, 1]), the
// files it writes, the pixel-grid codec (exact round trip on the grid), the eval injectors against the
// trainer's own forward (the zero-conv hook is restated in controlled_sampling.ts, so a drift from
// ControlNeXtTrainer would show here), the shape recogniser on exact shapes, and the option parser.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CpuBackend, RandomWeights, type Tensor } from '@cnx/tensor';
import {
  ControlNeXt, ControlNeXtLightModule, ControlNeXtTrainer, SD15_SCHEDULER_CONFIG, SHAPE_KINDS, TINY_LIGHT_CONTROLNEXT_STRUCTURE,
  shapeSample, trainingNoiseSchedule, type TrainingInjection,
} from '@cnx/controlnext';
import { describe, expect, it } from 'vitest';
import { createBaseUnet } from '../src/convergence/base_model.js';
import { crossNormInjector, predictNoise, zeroConvInjector } from '../src/convergence/controlled_sampling.js';
import { ARMS, evalSchedule, runConvergenceExperiment } from '../src/convergence/convergence_experiment.js';
import { ConvergenceUsageError, DEFAULT_CONVERGENCE_OPTIONS, parseConvergenceOptions, type ConvergenceOptions } from '../src/convergence/convergence_options.js';
import { writeConvergenceOutputs } from '../src/convergence/convergence_report.js';
import { LATENT_CHANNELS, decodePixelLatents, encodePixelLatents } from '../src/convergence/pixel_latents.js';
import { recogniseShape } from '../src/convergence/shape_recognition.js';

describe('convergence experiment', () => {
  it('runs at a toy size and writes a well-formed result', async () => {
    const backend = new CpuBackend();
    const o: ConvergenceOptions = {
      ...DEFAULT_CONVERGENCE_OPTIONS, backend: 'cpu', size: 16, trainExamples: 6, evalSamples: 3, ddimSteps: 2,
      baseSteps: 3, baseBatch: 2, steps: 3, batch: 2, seeds: 1, evalEvery: 2, out: '',
    };
    const a = await runConvergenceExperiment(backend, o, { command: 'test' });
    const r = a.results;
    expect(r.evalSteps).toEqual([0, 2, 3]);
    expect(Object.keys(r.arms).sort()).toEqual([...ARMS].sort());
    for (const arm of ARMS) {
      const runs = r.arms[arm]!;
      expect(runs.map((run) => run.seed)).toEqual([0]);
      for (const run of runs) {
        expect(run.evals.map((e) => e.step)).toEqual(r.evalSteps);
        expect(run.losses).toHaveLength(o.steps);
        run.losses.forEach((l) => expect(Number.isFinite(l) && l > 0).toBe(true));
        for (const e of run.evals) {
          expect(e.ious).toHaveLength(o.evalSamples);
          expect(e.shuffledIous).toHaveLength(o.evalSamples);
          for (const v of [...e.ious, e.meanIoU, ...e.shuffledIous, e.shuffledMeanIoU]) expect(v >= 0 && v <= 1).toBe(true);
          expect(e.meanIoU).toBeCloseTo(e.ious.reduce((s, v) => s + v, 0) / e.ious.length, 12);
        }
      }
    }
    // The zero conv starts at zero: before any step the zero-conv arm IS the base model without control.
    expect(r.arms.zero_conv![0]!.evals[0]!.ious).toEqual(r.base.noControlIoU.ious);
    expect(r.arms.zero_conv![0]!.evals[0]!.shuffledIous).toEqual(r.base.noControlIoU.ious);
    expect(a.baseLog.map((row) => row.step)).toEqual([0, 1, 2]);
    for (const v of [r.data.ceilingIoU.mean, r.base.noControlIoU.mean, r.base.grid.colourAccuracy, r.base.grid.shapeAccuracy]) expect(v >= 0 && v <= 1).toBe(true);
    expect(r.base.grid.prompts).toHaveLength(40);

    const dir = mkdtempSync(join(tmpdir(), 'cnx-convergence-'));
    try {
      const files = writeConvergenceOutputs(dir, a);
      expect(files.sort()).toEqual(['base_loss.svg', 'base_samples.png', 'base_training_log.csv', 'base_unet.safetensors', 'control_gain.svg', 'control_grid.png', 'fidelity.svg', 'loss.svg', 'results.json', 'summary.md']);
      const json = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as typeof r;
      expect(json.format).toBe(r.format);
      expect(json.arms.cross_norm![0]!.evals).toHaveLength(3);
      expect(readFileSync(join(dir, 'fidelity.svg'), 'utf8')).toMatch(/^<svg[\s\S]*cross normalisation[\s\S]*zero convolution[\s\S]*<\/svg>\s*$/);
      expect(readFileSync(join(dir, 'base_training_log.csv'), 'utf8').split('\n')[0]).toBe('step,loss,lr,it_per_s,elapsed_s');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(backend.memory().liveBytes).toBe(0);
  }, 120_000);

  it('the pixel-grid codec: latents are the 4x4-averaged grid folded 2x2 into channels; decode inverts the fold', async () => {
    const backend = new CpuBackend();
    // A 16 x 16 image constant on 4 x 4 blocks: the average pool keeps the block values exactly.
    const S = 16, G = 4;
    const blocks = Array.from({ length: 3 * G * G }, (_, i) => ((i * 37) % 255) / 127.5 - 1);
    const img = new Float32Array(3 * S * S);
    for (let c = 0; c < 3; c++) for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) img[c * S * S + y * S + x] = blocks[c * G * G + Math.floor(y / 4) * G + Math.floor(x / 4)]!;
    const t = backend.fromRaw(img, [1, 3, S, S]);
    const lat = encodePixelLatents(t);
    expect(lat.shape).toEqual([1, LATENT_CHANNELS, 2, 2]);
    const data = await lat.data();
    // Channel c*4 + dy*2 + dx at latent (y, x) is grid pixel (2y + dy, 2x + dx) of colour c.
    for (let c = 0; c < 3; c++) for (let dy = 0; dy < 2; dy++) for (let dx = 0; dx < 2; dx++) for (let y = 0; y < 2; y++) for (let x = 0; x < 2; x++) {
      expect(data[(c * 4 + dy * 2 + dx) * 4 + y * 2 + x]).toBeCloseTo(blocks[c * 16 + (2 * y + dy) * G + 2 * x + dx]!, 6);
    }
    // A constant latent decodes to that colour everywhere; a 4x4-block image decodes to its block value at the
    // corner pixels (clamped edges: the bilinear source there is the corner grid pixel alone).
    const flat = decodePixelLatents(new Float32Array(LATENT_CHANNELS * 4).fill(0.2), 1, 2)[0]!;
    expect(new Set(flat)).toEqual(new Set([Math.round(0.6 * 255)]));
    const [rgb] = decodePixelLatents(data, 1, 2);
    for (let c = 0; c < 3; c++) {
      expect(rgb![c]).toBe(Math.round((blocks[c * 16]! * 0.5 + 0.5) * 255));
      expect(rgb![((S - 1) * S + S - 1) * 3 + c]).toBe(Math.round((blocks[c * 16 + 15]! * 0.5 + 0.5) * 255));
    }
    expect(() => decodePixelLatents(data, 2, 2)).toThrow(/expected 2 x 12 x 2 x 2 = 96 values, found 48/);
    t.dispose(); lat.dispose();
  });

  it.each(ARMS)('the %s eval injector gives the trainer\'s own prediction', async (injection: TrainingInjection) => {
    const backend = new CpuBackend();
    const unet = createBaseUnet(backend, 2, undefined, 3);
    const module = new ControlNeXtLightModule(new RandomWeights({ seed: 4 }), backend, TINY_LIGHT_CONTROLNEXT_STRUCTURE);
    const cnx = new ControlNeXt('sd15_training', module, backend);
    // A non-zero zero conv, so that its injection is tested, not only its initial zeros.
    const trainer = await ControlNeXtTrainer.create({
      unet, controlnext: cnx, schedule: trainingNoiseSchedule(SD15_SCHEDULER_CONFIG), learningRate: 1e-4, injection,
      zeroConvInit: new RandomWeights({ seed: 9 }),
    });
    const B = 2;
    const rnd = (shape: number[], seed: number, lo = -1, hi = 1) => {
      let s = seed;
      return backend.fromRaw(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => { s = (s * 1103515245 + 12345) % 2147483648; return lo + (hi - lo) * (s / 2147483648); }), shape);
    };
    const batch = { latents: rnd([B, LATENT_CHANNELS, 2, 2], 1), encoderHiddenStates: rnd([B, 5, 32], 2), controlImage: rnd([B, 3, 16, 16], 3, 0, 1), noise: rnd([B, LATENT_CHANNELS, 2, 2], 4), timesteps: [17, 640] };
    const r = await trainer.forwardBackward(batch, { keep: true });
    const kept = r.kept!;
    const p = (k: string) => trainer.parameters().find((x) => x.owner === 'zero_conv' && x.key === k)!.tensor;
    const injector = injection === 'cross_norm' ? crossNormInjector(cnx, batch.controlImage) : zeroConvInjector(cnx, batch.controlImage, p('weight'), p('bias'));
    const mine = predictNoise(unet, kept.noisyLatents, r.timesteps, batch.encoderHiddenStates, injector);
    const plain = predictNoise(unet, kept.noisyLatents, r.timesteps, batch.encoderHiddenStates);
    const [a, b, c] = await Promise.all([mine.data(), kept.modelPred.data(), plain.data()]);
    // Same ops in the same order on the float64 reference: equal to rounding.
    a.forEach((v, i) => expect(Math.abs(v - b[i]!)).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(b[i]!))));
    // ... and the control changes the prediction (the comparison above is not vacuous).
    expect(c.some((v, i) => Math.abs(v - b[i]!) > 1e-4)).toBe(true);
    for (const t of [mine, plain, ...Object.values(kept), ...Object.values(batch).filter((x): x is Tensor => !Array.isArray(x))]) t.dispose();
    trainer.dispose();
    cnx.dispose();
    unet.dispose();
  }, 60_000);

  it('the shape recogniser names exact shapes and colours', () => {
    for (let i = 0; i < 40; i++) {
      const s = shapeSample(i, { size: 64, seed: 5, radiusRange: [0.25, 0.45] });
      const got = recogniseShape(s.target, 64, s.backgroundRgb);
      expect(got.colour).toBe(s.colour);
      expect(got.shape, `sample ${i}: a ${s.colour} ${s.shape}`).toBe(s.shape);
    }
    expect(SHAPE_KINDS).toHaveLength(5);
    expect(recogniseShape(new Uint8Array(16 * 16 * 3), 16, [0, 0, 0])).toEqual({ fit: 0, pixels: 0 });
  });

  it('options: defaults, flags, clear errors', () => {
    expect(parseConvergenceOptions([])).toEqual(DEFAULT_CONVERGENCE_OPTIONS);
    const o = parseConvergenceOptions(['--steps', '400', '--seeds', '5', '--eval-every', '50', '--backend', 'webgpu', '--base-steps', '3000', '--out', 'x']);
    expect(o).toMatchObject({ steps: 400, seeds: 5, evalEvery: 50, backend: 'webgpu', baseSteps: 3000, out: 'x' });
    expect(parseConvergenceOptions(['--help'])).toBe('help');
    expect(() => parseConvergenceOptions(['--steps', '0'])).toThrow(ConvergenceUsageError);
    expect(() => parseConvergenceOptions(['--size', '60'])).toThrow(/multiple of 8/);
    expect(() => parseConvergenceOptions(['--backend', 'tpu'])).toThrow(/wasm, cpu or webgpu, found 'tpu'/);
    expect(() => parseConvergenceOptions(['--bogus'])).toThrow(ConvergenceUsageError);
    expect(evalSchedule(10, 4)).toEqual([0, 4, 8, 10]);
    expect(evalSchedule(8, 4)).toEqual([0, 4, 8]);
  });
});
