// Benchmark use: the cost of one denoising step with ControlNeXt against the same pipeline without it, on
// YOUR model folder and backend, through the public API (`npm run bench` does this for the SD1.5
// architecture with random weights and the baselines; this is the few-line version for a real folder).
// One pipeline is loaded with its ControlNeXt module; a second shares every weight and drops the control.
// Each generation's first step is a warm-up (JIT, pipeline compilation); the others are timed up to the
// backend's queue drain, the two pipelines alternate, and the medians, the overhead and the spread are
// printed, with a warning when the overhead is within the spread.
//
//   node examples/dist/benchmark_step.js [--model DIR --controlnext FILE] [--backend wasm|cpu|webgpu]
//        [--steps N] [--size PX] [--rounds R]
//
// Without --model it runs on the tiny random model. test/examples_scripts.test.ts runs it.

import { pathToFileURL } from 'node:url';
import { ControllableDiffusionPipeline, type DiffusionPipeline } from '@cnx/controlnext';
import type { Backend } from '@cnx/tensor';
import { exampleArgs, openExample } from './example_model.js';

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };

/** Per-step wall times (ms) of one generation, first step excluded. */
async function stepTimes(pipeline: DiffusionPipeline, backend: Backend, size: number, steps: number): Promise<number[]> {
  const control = pipeline.components.control
    ? backend.fromRaw(Float32Array.from({ length: 3 * size * size }, (_, i) => ((i * 37) % 11) / 10), [1, 3, size, size]) : undefined;
  const times: number[] = [];
  let t = performance.now();
  const { images, latents } = await pipeline.generate({
    prompt: 'a cozy room', numInferenceSteps: steps + 1, seed: 1, height: size, width: size, controlImage: control,
    onStepEnd: async (s) => {
      await backend.sync();
      const now = performance.now();
      if (s.index > 0) times.push(now - t);
      t = now;
    },
  });
  images.dispose();
  latents.dispose();
  control?.dispose();
  return times;
}

export async function main(argv: string[]): Promise<{ baseMs: number; controlMs: number; overheadPct: number }> {
  const a = await exampleArgs(argv, { steps: 3, size: 64 }, { rounds: { type: 'string' } });
  const rounds = Number(a.values.rounds ?? 2);
  const { backend, pipeline } = await openExample(a);
  if (!(pipeline instanceof ControllableDiffusionPipeline)) throw new Error('this example times SD 1.x/2.x folders (the SD1.5 ControlNeXt overhead); the folder is SDXL');
  const base = new ControllableDiffusionPipeline({ ...pipeline.components, control: undefined }); // same weights, no control
  const samples = { base: [] as number[], control: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    samples.base.push(...await stepTimes(base, backend, a.size, a.steps));
    samples.control.push(...await stepTimes(pipeline, backend, a.size, a.steps));
  }
  const baseMs = median(samples.base), controlMs = median(samples.control);
  const overheadPct = (100 * (controlMs - baseMs)) / baseMs;
  const spread = (xs: number[]) => (100 * (Math.max(...xs) - Math.min(...xs))) / median(xs);
  const worst = Math.max(spread(samples.base), spread(samples.control));
  console.log(`${a.size}x${a.size}, CFG, ${samples.base.length} timed steps each on ${backend.name}:`);
  console.log(`  base        ${baseMs.toFixed(1)} ms/step (spread ${spread(samples.base).toFixed(1)} %)`);
  console.log(`  + ControlNeXt ${controlMs.toFixed(1)} ms/step (spread ${spread(samples.control).toFixed(1)} %), overhead ${overheadPct >= 0 ? '+' : ''}${overheadPct.toFixed(1)} %`);
  if (Math.abs(overheadPct) <= worst) console.log(`  warning: the overhead is within the spread of the samples (${worst.toFixed(1)} %): more --rounds, a quieter machine`);
  pipeline.dispose(); // owns every weight; `base` only borrowed them
  backend.destroy();
  return { baseMs, controlMs, overheadPct };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main(process.argv.slice(2));
