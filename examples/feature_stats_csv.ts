// Research task: record, at every denoising step, the mean and standard deviation of the denoiser feature
// at the ControlNeXt injection site and of the control map, and write them as CSV. One file, public API:
// generate()'s onStepEnd asks for the named step tensors 'inject.sample_before' (the feature at the
// variant's site, before injection) and 'control' (the control module's output map).
//
//   node examples/dist/feature_stats_csv.js stats.csv      # the tiny random pipeline, 4 steps
//
// test/examples.test.ts runs it and checks the numbers against the captured tensors.

import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { CpuBackend, type Backend, type Tensor } from '@cnx/tensor';
import { tinyPipeline, type ControllableDiffusionPipeline, type GenerateOptions } from '@cnx/controlnext';

export interface FeatureStatsRow {
  step: number;
  timestep: number;
  featureMean: number;
  featureStd: number;
  controlMean: number;
  controlStd: number;
}

/** Mean and unbiased std of all values, in float64. */
export function meanStd(v: Float32Array): [number, number] {
  let m = 0;
  for (const x of v) m += x;
  m /= v.length;
  let ss = 0;
  for (const x of v) ss += (x - m) ** 2;
  return [m, Math.sqrt(ss / Math.max(v.length - 1, 1))];
}

export const CSV_HEADER = 'step,timestep,feature_mean,feature_std,control_mean,control_std';

export function toCsv(rows: readonly FeatureStatsRow[]): string {
  const line = (r: FeatureStatsRow) => [r.step, r.timestep, r.featureMean, r.featureStd, r.controlMean, r.controlStd].join(',');
  return [CSV_HEADER, ...rows.map(line)].join('\n') + '\n';
}

/** Run `generate(opts)` on a ControlNeXt pipeline and collect the per-step statistics. */
export async function featureStats(pipeline: ControllableDiffusionPipeline, opts: GenerateOptions): Promise<{ rows: FeatureStatsRow[]; images: Tensor; latents: Tensor }> {
  const rows: FeatureStatsRow[] = [];
  const { images, latents } = await pipeline.generate({
    ...opts,
    stepTensors: ['inject.sample_before', 'control'],
    async onStepEnd(state, t) {
      const [featureMean, featureStd] = meanStd(await t['inject.sample_before']!.data());
      const [controlMean, controlStd] = meanStd(await t['control']!.data());
      rows.push({ step: state.index, timestep: state.timestep, featureMean, featureStd, controlMean, controlStd });
    },
  });
  return { rows, images, latents };
}

/** The tiny random pipeline's statistics for `steps` steps, as CSV. */
export async function tinyFeatureStatsCsv(backend: Backend, steps = 4): Promise<string> {
  const pipe = tinyPipeline(backend, { seed: 1 });
  const image = backend.fromRaw(Float32Array.from({ length: 3 * 32 * 32 }, (_, i) => ((i * 7) % 13) / 12), [1, 3, 32, 32]);
  try {
    const { rows, images, latents } = await featureStats(pipe, { prompt: 'a house', controlImage: image, numInferenceSteps: steps, seed: 0 });
    images.dispose();
    latents.dispose();
    return toCsv(rows);
  } finally {
    image.dispose();
    pipe.dispose();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const out = process.argv[2] ?? 'feature_stats.csv';
  const backend = new CpuBackend();
  writeFileSync(out, await tinyFeatureStatsCsv(backend));
  backend.destroy();
  console.log(`wrote ${out}`);
}
