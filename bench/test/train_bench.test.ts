// `npm run bench -- --train` at its smallest size (64x64 pixels, 8x8 latents, batch 1, one timed step
// after the CLI's one warm-up step) on the CPU reference: the record's fields are sane, the trainable
// parameter count is the module's plus the UNet to_out's counted independently (the cost model's module walk and a hand count of
// SD1.5's attention output projections), and the training cost model's conventions hold on their own.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { TrainBenchRecord } from '../src/bench_record.js';
import { parseBenchOptions } from '../src/bench_options.js';
import { CostLedger, controlnextTrainingCost, SD15_TRAINING_STRUCTURE, summarize } from '../src/flops.js';
import { trainStem } from '../src/train_bench.js';
import { backwardCost, trainingStepCost, unetTrainingRules, type BackwardRules } from '../src/training_cost.js';
import { unetLedger } from '../src/variants.js';

/**
 * SD1.5's to_out parameters by hand: every transformer block has attn1.to_out.0 and attn2.to_out.0, each a
 * C x C weight plus a C bias. Blocks per width (unet/config.json, layers_per_block 2, up blocks 3 layers):
 * 320: down 2 + up 3; 640: down 2 + up 3; 1280: down 2 + mid 1 + up 3.
 */
const MAIN = join(import.meta.dirname, '..', 'dist', 'main.js');

const SD15_TO_OUT = 2 * (5 * (320 * 320 + 320) + 5 * (640 * 640 + 640) + 6 * (1280 * 1280 + 1280));

describe('training cost model (training_cost.ts)', () => {
  it('everything trained and every input needing its gradient: backward matmul FLOPs are exactly 2x the forward products (bias adds go to other)', () => {
    const L = unetLedger({ resolution: [64, 64], images: 1 });
    const all: BackwardRules = { trainable: () => true, inputGrad: () => true, keysNeedGrad: () => true };
    const f = summarize(L);
    // dX and dW each cost the forward's products; the bias gradient is a sum over the same outputs (other).
    expect(backwardCost(L, all).matmulFlops).toBe(2 * f.matmulFlops - L.entries.reduce((s, e) => s + (e.biasFlops ?? 0), 0) * 2);
  });

  it('a linear: dX and dW each 2 M K N, the bias gradient M N; none before the first trained entry', () => {
    const L = new CostLedger(1);
    L.linear('a.to_q', 4, 8, 16, false); // before the first to_out: no backward at all
    L.linear('a.to_out.0', 4, 16, 16);
    L.linear('b.proj', 4, 16, 32);
    const c = backwardCost(L, unetTrainingRules(L));
    // to_out: its input gradient is not needed (nothing trained upstream of it) but its weight's is: 2*4*16*16;
    // b.proj: frozen, input gradient only: 2*4*16*32.
    expect(c.matmulFlops).toBe(2 * 4 * 16 * 16 + 2 * 4 * 16 * 32);
    expect(c.otherFlops).toBe(4 * 16); // to_out's bias gradient
  });

  it('SD1.5 + light module: trainable parameters = module + to_out; backward between the input-gradient-only and the 2x bound', () => {
    const c = trainingStepCost({ resolution: [64, 64], images: 1 });
    expect(c.unetToOutParams).toBe(SD15_TO_OUT);
    const module = controlnextTrainingCost(SD15_TRAINING_STRUCTURE, { batch: 1, featureBatch: 1, image: [64, 64], feature: [320, 4, 4] });
    expect(c.moduleParams).toBe(summarize(module).params);
    // Most UNet weights are frozen: their products run backward once (dX), not twice.
    expect(c.backward.matmulFlops).toBeGreaterThan(0.5 * c.forward.matmulFlops);
    expect(c.backward.matmulFlops).toBeLessThan(2 * c.forward.matmulFlops);
  });
});

describe('npm run bench -- --train (CPU, 64x64, one step)', () => {
  it('parses --train and refuses what does not apply to it', () => {
    const o = parseBenchOptions(['--train', '--backend', 'cpu']);
    expect(o !== 'help' && o.train && o.backend === 'cpu' && o.resolution[0] === 64).toBe(true);
    expect(() => parseBenchOptions(['--train', '--model', 'sdxl'])).toThrow(/--train: only --model sd15/);
    expect(() => parseBenchOptions(['--train', '--dtype', 'f16'])).toThrow(/--train: training runs in f32/);
  });

  it('a record with sane timings, FLOPs, memory and parameter counts', async () => {
    // In a child process: a CPU training step holds the event loop for tens of seconds, longer than
    // vitest's worker RPC tolerates. The CLI keeps its one warm-up step; the record has the one timed step.
    const out = mkdtempSync(join(tmpdir(), 'cnx-train-bench-'));
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [MAIN, '--train', '--backend', 'cpu', '--steps', '1', '--out', out], { timeout: 840_000 });
      expect(stdout).toMatch(/trainable: \d+ \(module \d+ \+ UNet to_out \d+\)/);
      const r = JSON.parse(readFileSync(join(out, 'train-cpu-64.json'), 'utf8')) as TrainBenchRecord;
      checkRecord(r);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 900_000);
});

function checkRecord(r: TrainBenchRecord): void {
  expect(trainStem(r)).toBe('train-cpu-64');
  expect(r.latent).toEqual([8, 8]);
  for (const s of [r.stepMs, r.forwardMs, r.backwardMs, r.optimizerMs]) {
    expect(s.n).toBe(1);
    expect(Number.isFinite(s.median) && s.median > 0).toBe(true);
  }
  expect(r.stepMs.median).toBeCloseTo(r.forwardMs.median + r.backwardMs.median + r.optimizerMs.median, 6);
  expect(r.flops.forward.matmul).toBeGreaterThan(0);
  expect(r.flops.backward.matmul).toBeGreaterThan(0.5 * r.flops.forward.matmul);
  expect(r.flops.optimizer).toBe(14 * r.trainableParams.total);
  expect(r.achievedGflops.step).toBeCloseTo((r.flops.forward.matmul + r.flops.backward.matmul) / (r.stepMs.median * 1e6), 9);
  // Counted from the models' tensors by the bench; independently by the cost model and by hand.
  expect(r.trainableParams.unetToOut).toBe(SD15_TO_OUT);
  const module = controlnextTrainingCost(SD15_TRAINING_STRUCTURE, { batch: 1, featureBatch: 1, image: [64, 64], feature: [320, 4, 4] });
  expect(r.trainableParams.module).toBe(summarize(module).params);
  expect(r.trainableParams.total).toBe(r.trainableParams.module + r.trainableParams.unetToOut);
  expect(r.optimizer.groups.map((g) => g.params)).toEqual([r.trainableParams.module, r.trainableParams.unetToOut]);
  // Memory: weights (f32 SD1.5, 859.5 M parameters) + the optimizer's two moments live; the step adds its tape.
  expect(r.memory.optimizerStateBytes).toBe(8 * r.trainableParams.total);
  expect(r.memory.liveAtStartBytes).toBeGreaterThan(4 * 859_520_964 + r.memory.optimizerStateBytes);
  expect(r.memory.stepWorkingBytes).toBeGreaterThan(0);
  expect(r.memory.backendPeakBytes).toBe(r.memory.liveAtStartBytes + r.memory.stepWorkingBytes);
  expect(r.notes.filter((n) => n.includes('cost model counts'))).toEqual([]);
}
