// `npm run bench`: the measured version of ControlNeXt's efficiency claim. For each configuration
// (bench/src/variants.ts) one CFG denoising step of SD1.5 with random weights is timed over several
// steps after warm-up; the table goes to stdout, progress to stderr, and a JSON record, an SVG chart of
// the overheads and latest.md to the results folder. Run `node bench/dist/main.js --help`.

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBackend } from '@cnx/kernels';
import type { Backend } from '@cnx/tensor';
import { HELP, parseBenchOptions, type BenchOptions } from './bench_options.js';
import type { BenchRecord, VariantResult } from './bench_record.js';
import { runEnvironment } from './environment.js';
import { preflight } from './preflight.js';
import { Progress } from './progress.js';
import { overheadChartSvg } from './report/overhead_chart.js';
import { describeRun, markdownTable, terminalTable } from './report/table.js';
import { buildRunner, buildUnet, disposeInputs, makeInputs, unavailableReason, type StepRunner } from './sd15_step.js';
import { sampleStats } from './stats.js';
import { latentOf, stepCost, VARIANTS, type Geometry, type VariantId } from './variants.js';

const RESULTS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'results');

/** Timesteps of the timed steps: spread over the schedule like a 20-step sampler (values do not change the cost). */
function timestepAt(i: number): number {
  return Math.max(1, 999 - 50 * (i % 20));
}

class HostPeak {
  rss = 0;
  heap = 0;
  sample(): void {
    const m = process.memoryUsage();
    this.rss = Math.max(this.rss, m.rss);
    this.heap = Math.max(this.heap, m.heapUsed);
  }
}

async function timeVariant(id: VariantId, runner: StepRunner, backend: Backend, o: BenchOptions, progress: Progress): Promise<{
  samples: number[]; prefixMs?: number; liveAtStart: number; peak: number; host: HostPeak;
}> {
  const label = VARIANTS[id].label;
  const host = new HostPeak();
  let prefixMs: number | undefined;
  if (runner.prepare) {
    progress.update(`${id}: prefix (once per generation)`);
    const t0 = performance.now();
    runner.prepare();
    await backend.sync();
    prefixMs = performance.now() - t0;
  }
  for (let i = 0; i < o.warmup; i++) {
    progress.update(`${id}: warm-up ${i + 1}/${o.warmup}`);
    runner.step(timestepAt(i));
    await backend.sync();
    host.sample();
  }
  const liveAtStart = backend.memory().liveBytes;
  backend.resetPeak();
  const samples: number[] = [];
  for (let i = 0; i < o.steps; i++) {
    progress.update(`${id}: step ${i + 1}/${o.steps}${samples.length ? ` (last ${(samples[samples.length - 1]! / 1000).toFixed(2)} s)` : ''}`);
    const t0 = performance.now();
    runner.step(timestepAt(o.warmup + i));
    await backend.sync();
    samples.push(performance.now() - t0);
    host.sample();
  }
  const peak = backend.memory().peakBytes;
  progress.log(`${label}: median ${(sampleStats(samples).median / 1000).toFixed(3)} s/step`);
  return { samples, ...(prefixMs !== undefined ? { prefixMs } : {}), liveAtStart, peak, host };
}

async function main(): Promise<void> {
  const parsed = parseBenchOptions(process.argv.slice(2));
  if (parsed === 'help') {
    process.stdout.write(HELP);
    return;
  }
  const o = parsed;
  const g: Geometry = { resolution: o.resolution, images: o.batch };
  const progress = new Progress();
  const notes: string[] = [];

  progress.update(`creating the ${o.backend} backend`);
  const backend = await createBackend(o.backend, o.adapter !== undefined ? { adapter: o.adapter } : {});
  try {
    progress.log(`backend: ${backend.description.split('\n')[0]}`);
    const ids: VariantId[] = [];
    for (const id of o.variants) {
      const why = await unavailableReason(id);
      if (why) {
        notes.push(`${id} skipped: ${why}`);
        progress.log(`skipping ${id}: ${why}`);
      } else ids.push(id);
    }
    const pre = await preflight(backend, g, ids, o.steps, o.warmup, o.force);
    pre.warnings.forEach((w) => progress.log(`warning: ${w}`));
    progress.log(`pre-flight: largest tensor ${(pre.largestTensorBytes / 2 ** 20).toFixed(0)} MiB (${pre.largestTensorName}), ` +
      `weights up to ${(pre.weightBytes / 2 ** 30).toFixed(2)} GiB` +
      (pre.estimatedSeconds !== undefined ? `, ~${pre.calibrationGflops!.toFixed(2)} GFLOP/s measured, estimated ${(pre.estimatedSeconds / 60).toFixed(1)} min` : ''));

    progress.update('building the SD1.5 UNet (random weights)');
    const tb = performance.now();
    const unet = buildUnet(backend, o.seed);
    const inputs = makeInputs(backend, g, o.seed);
    await backend.sync();
    const buildSeconds = (performance.now() - tb) / 1000;
    progress.log(`UNet built: ${(unet.numParameters() / 1e6).toFixed(1)} M parameters in ${buildSeconds.toFixed(1)} s`);

    const results: VariantResult[] = [];
    let baseMedian = NaN;
    for (const [k, id] of ids.entries()) {
      progress.update(`[${k + 1}/${ids.length}] ${id}: building`);
      const liveBefore = backend.memory().liveBytes;
      let runner: StepRunner | undefined;
      let timed: Awaited<ReturnType<typeof timeVariant>>;
      let controlWeightBytes = 0;
      try {
        runner = await buildRunner(id, backend, unet, inputs, g, o.seed);
        await backend.sync();
        controlWeightBytes = backend.memory().liveBytes - liveBefore;
        timed = await timeVariant(id, runner, backend, o, progress);
      } catch (e) {
        // One configuration failing (an op missing on a backend, say) must not lose the others.
        if (id === 'base') throw e;
        const msg = `${id} failed: ${e instanceof Error ? e.message : String(e)}`;
        notes.push(msg);
        progress.log(msg);
        continue;
      } finally {
        runner?.dispose();
      }
      const stats = sampleStats(timed.samples);
      if (id === 'base') baseMedian = stats.median;
      const cost = stepCost(id, g);
      const base = stepCost('base', g);
      results.push({
        id,
        label: VARIANTS[id].label,
        latencyMs: stats,
        samplesMs: timed.samples,
        ...(timed.prefixMs !== undefined ? { prefixMs: timed.prefixMs } : {}),
        overheadPct: (100 * (stats.median - baseMedian)) / baseMedian,
        stepFlops: cost.stepFlops,
        controlFlops: cost.controlFlops,
        prefixFlops: cost.prefixFlops,
        otherFlops: cost.otherFlops,
        flopOverheadPct: (100 * (cost.stepFlops - base.stepFlops)) / base.stepFlops,
        achievedGflops: cost.stepFlops / (stats.median * 1e6),
        addedParams: runner!.controlParams,
        trainableParams: cost.trainableParams,
        memory: {
          liveAtStartBytes: timed.liveAtStart,
          backendPeakBytes: timed.peak,
          stepWorkingBytes: timed.peak - timed.liveAtStart,
          controlWeightBytes,
          hostPeakRssBytes: timed.host.rss,
          hostPeakHeapBytes: timed.host.heap,
        },
      });
      if (runner!.controlParams !== 0 && runner!.controlParams !== cost.addedParams) {
        notes.push(`${id}: the model has ${runner!.controlParams} control parameters, the cost model counts ${cost.addedParams}`);
      }
    }
    disposeInputs(inputs);
    unet.dispose();
    progress.done();

    if (o.backend === 'cpu') notes.push('CPU: wall time per step; ops are synchronous, so no extra sync is needed.');
    else notes.push('WebGPU: wall time per step up to backend.sync() (queue drained); GPU timestamp queries are not used yet.');
    const record: BenchRecord = {
      tool: 'controlnext-ts bench',
      environment: runEnvironment(),
      backend: { name: backend.name, description: backend.description, ...(o.adapter ? { adapter: o.adapter } : {}),
        timing: o.backend === 'cpu' ? 'wall clock' : 'wall clock with queue sync' },
      model: 'UNet2DConditionModel (runwayml/stable-diffusion-v1-5 config), random weights',
      resolution: o.resolution,
      latent: latentOf(g),
      images: o.batch,
      unetBatch: 2 * o.batch,
      steps: o.steps,
      warmup: o.warmup,
      dtype: o.dtype,
      seed: o.seed,
      buildSeconds,
      variants: results,
      notes,
    };
    const out = o.out === 'bench/results' ? RESULTS_DIR : resolve(o.out);
    mkdirSync(out, { recursive: true });
    const stem = `${o.backend}-${o.resolution[0] === o.resolution[1] ? o.resolution[0] : o.resolution.join('x')}`;
    writeFileSync(join(out, `${stem}.json`), JSON.stringify(record, null, 2) + '\n');
    writeFileSync(join(out, `${stem}.svg`), overheadChartSvg(record));
    const md = `# Latest benchmark run\n\n${describeRun(record).split('\n').map((l) => `${l}  `).join('\n')}\n\n${markdownTable(record)}\n\n` +
      `![overheads](${stem}.svg)\n\n${notes.map((n) => `- ${n}`).join('\n')}\n`;
    writeFileSync(join(out, 'latest.md'), md);

    console.log(describeRun(record));
    console.log('');
    console.log(terminalTable(record));
    if (notes.length) console.log(`\n${notes.map((n) => `note: ${n}`).join('\n')}`);
    console.log(`\nwrote ${join(out, `${stem}.json`)}, ${stem}.svg, latest.md`);
  } finally {
    backend.destroy();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`\nbench: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
