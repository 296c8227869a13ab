// `npm run bench`: the measured version of ControlNeXt's efficiency claim. For each configuration
// (bench/src/variants.ts) one CFG denoising step of SD1.5 with random weights is timed over several
// steps after warm-up; the table goes to stdout, progress to stderr, and a JSON record, an SVG chart of
// the overheads and latest.md to a new run folder under bench/runs/ (or --out DIR: bench/results is the
// committed one). The record holds the machine's load before and after; warnings say when an overhead is
// within the samples' spread or the machine was busy. Run `node bench/dist/main.js --help`.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createBackend, WebgpuBackend } from '@cnx/kernels';
import type { Backend } from '@cnx/tensor';
import { BenchUsageError, HELP, parseBenchOptions, type BenchOptions } from './bench_options.js';
import type { BenchRecord, VariantResult } from './bench_record.js';
import { runEnvironment } from './environment.js';
import { loadSnapshot, loadWarnings, machineCpu, type MachineLoad } from './machine_load.js';
import { compactTable } from './report/compact_table.js';
import { resolveOutFolder } from './run_folder.js';
import { spreadWarnings } from './spread_warnings.js';
import { preflight } from './preflight.js';
import { Progress } from './progress.js';
import { overheadChartSvg } from './report/overhead_chart.js';
import { describeRun, markdownTable, terminalTable } from './report/table.js';
import { BENCH_MODELS } from './bench_model.js';
import type { StepRunner } from './sd15_step.js';
import { sampleStats } from './stats.js';
import { latencyFigures, timeRoundRobin, type Timed } from './step_timing.js';
import { runTrainBench, trainSummary, writeTrainRecord } from './train_bench.js';
import { latentOf, type Geometry } from './variants.js';

/** Run one step of each configuration until one throws; its id, or undefined if none does. */
async function firstFailing(runners: Map<string, StepRunner>, backend: Backend): Promise<string | undefined> {
  for (const [id, r] of runners) {
    try {
      r.step(999);
      await backend.sync();
    } catch {
      return id;
    }
  }
  return undefined;
}

async function main(): Promise<void> {
  const parsed = parseBenchOptions(process.argv.slice(2));
  if (parsed === 'help') {
    process.stdout.write(HELP);
    return;
  }
  const o = parsed;
  if (o.train) return trainMain(o);
  const model = BENCH_MODELS[o.model];
  const loadBefore = loadSnapshot();
  const g: Geometry = { resolution: o.resolution, images: o.batch };
  const progress = new Progress();
  const notes: string[] = [];

  progress.update(`creating the ${o.backend} backend`);
  const backend = await createBackend(o.backend, {
    ...(o.adapter !== undefined ? { adapter: o.adapter } : {}),
    ...(o.dtype === 'f16' ? { weightDtype: 'f16' as const, compute: 'f16' as const } : {}),
  });
  if (o.dtype === 'f16' && backend.weightDtype !== 'f16') {
    notes.push(`--dtype f16: the ${backend.name} backend does not take the weightDtype option; its weights are f32`);
  }
  if (backend instanceof WebgpuBackend && backend.computeNote) notes.push(backend.computeNote);
  try {
    progress.log(`backend: ${backend.description.split('\n')[0]}`);
    const ids: string[] = [];
    for (const id of o.variants) {
      const why = await model.unavailableReason(id);
      if (why) {
        notes.push(`${id} skipped: ${why}`);
        progress.log(`skipping ${id}: ${why}`);
      } else ids.push(id);
    }
    const pre = await preflight(backend, g, ids, o.steps, o.warmup, o.force, model);
    pre.warnings.forEach((w) => progress.log(`warning: ${w}`));
    progress.log(`pre-flight: largest tensor ${(pre.largestTensorBytes / 2 ** 20).toFixed(0)} MiB (${pre.largestTensorName}), ` +
      `weights up to ${(pre.weightBytes / 2 ** 30).toFixed(2)} GiB` +
      (pre.estimatedSeconds !== undefined ? `, ~${pre.calibrationGflops!.toFixed(2)} GFLOP/s measured, estimated ${(pre.estimatedSeconds / 60).toFixed(1)} min` : ''));

    progress.update(`building the ${model.title} UNet (random weights)`);
    const tb = performance.now();
    const setUp = model.setUp(backend, g, o.seed);
    await backend.sync();
    const buildSeconds = (performance.now() - tb) / 1000;
    progress.log(`UNet built: ${(setUp.unetParams() / 1e6).toFixed(1)} M parameters in ${buildSeconds.toFixed(1)} s`);

    // Build every configuration first (all stay in memory: UNet + ControlNet ~4.8 GB f32), then time
    // them round-robin. A configuration that fails to build or run is recorded and left out.
    const unetBytes = backend.memory().liveBytes;
    const runners = new Map<string, StepRunner>();
    const controlBytes = new Map<string, number>();
    for (const [k, id] of ids.entries()) {
      progress.update(`[${k + 1}/${ids.length}] ${id}: building`);
      const before = backend.memory().liveBytes;
      try {
        const r = await setUp.runner(id);
        await backend.sync();
        runners.set(id, r);
        controlBytes.set(id, backend.memory().liveBytes - before);
      } catch (e) {
        if (id === 'base') throw e;
        const msg = `${id} failed to build: ${e instanceof Error ? e.message : String(e)}`;
        notes.push(msg);
        progress.log(msg);
      }
    }
    let timedAll: Map<string, Timed>;
    for (;;) {
      try {
        timedAll = await timeRoundRobin(runners, backend, { warmup: o.warmup, steps: o.steps, onProgress: (m) => progress.update(m) });
        for (const [id, t] of timedAll) {
          const gpu = t.gpuSamples.length ? `, GPU ${(sampleStats(t.gpuSamples).median / 1000).toFixed(3)} s/step` : '';
          progress.log(`${model.label(id)}: median ${(sampleStats(t.samples).median / 1000).toFixed(3)} s/step${gpu}`);
        }
        break;
      } catch (e) {
        // Find the configuration that fails, drop it, and time the rest again.
        const bad = await firstFailing(runners, backend);
        if (!bad || bad === 'base') throw e;
        const msg = `${bad} failed: ${e instanceof Error ? e.message : String(e)}`;
        notes.push(msg);
        progress.log(msg);
        runners.get(bad)!.dispose();
        runners.delete(bad);
      }
    }
    const base = model.stepCost('base', g);
    const baseTimed = timedAll.get('base')!;
    const results: VariantResult[] = [];
    let gpuTimed = false;
    for (const [id, runner] of runners) {
      const timed = timedAll.get(id)!;
      const cost = model.stepCost(id, g);
      const fig = latencyFigures(timed, baseTimed, cost.stepFlops);
      if (id === 'base') gpuTimed = fig.gpuMs !== undefined;
      const controlWeightBytes = controlBytes.get(id) ?? 0;
      results.push({
        id,
        label: model.label(id),
        latencyMs: fig.latencyMs,
        samplesMs: timed.samples,
        ...(timed.prefixMs !== undefined ? { prefixMs: timed.prefixMs } : {}),
        overheadPct: fig.overheadPct,
        ...(fig.gpuMs ? {
          gpuMs: fig.gpuMs,
          gpuSamplesMs: timed.gpuSamples,
          gpuOverheadPct: fig.gpuOverheadPct!,
          ...(timed.prefixGpuMs !== undefined ? { prefixGpuMs: timed.prefixGpuMs } : {}),
        } : {}),
        stepFlops: cost.stepFlops,
        controlFlops: cost.controlFlops,
        prefixFlops: cost.prefixFlops,
        otherFlops: cost.otherFlops,
        flopOverheadPct: (100 * (cost.stepFlops - base.stepFlops)) / base.stepFlops,
        achievedGflops: fig.achievedGflops,
        addedParams: runner.controlParams,
        trainableParams: cost.trainableParams,
        memory: {
          liveAtStartBytes: unetBytes + controlWeightBytes,
          backendPeakBytes: unetBytes + controlWeightBytes + timed.stepWorking,
          stepWorkingBytes: timed.stepWorking,
          controlWeightBytes,
          hostPeakRssBytes: timed.host.rss,
          hostPeakHeapBytes: timed.host.heap,
        },
      });
      if (runner.controlParams !== 0 && runner.controlParams !== cost.addedParams) {
        notes.push(`${id}: the model has ${runner.controlParams} control parameters, the cost model counts ${cost.addedParams}`);
      }
    }
    for (const r of runners.values()) r.dispose();
    setUp.dispose();
    progress.done();

    if (o.backend !== 'webgpu') notes.push(`${o.backend === 'wasm' ? 'CPU fast path (wasm)' : 'CPU'}: wall time per step; ops are synchronous, so no extra sync is needed.`);
    else if (gpuTimed) {
      notes.push('WebGPU: wall time per step up to backend.sync() (queue drained); "GPU ms/step" sums the execution time of ' +
        'the step\'s compute passes from timestamp queries (copies, clears, uploads and gaps between passes are not in it); ' +
        '"overhead" is from wall time, "GPU overhead" from GPU time.');
    } else notes.push(`WebGPU: wall time per step up to backend.sync() (queue drained); no GPU time: the device lacks 'timestamp-query'.`);
    const machine: MachineLoad = { ...machineCpu(), before: loadBefore, after: loadSnapshot() };
    const baseResult = results.find((r) => r.id === 'base')!;
    const warnings = [
      ...spreadWarnings(baseResult, results.filter((r) => r.id !== 'base')),
      ...loadWarnings(machine, o.backend === 'webgpu' ? 1 : machine.cores),
    ];
    const record: BenchRecord = {
      tool: 'controlnext-ts bench',
      environment: runEnvironment(),
      backend: { name: backend.name, description: backend.description, ...(o.adapter ? { adapter: o.adapter } : {}),
        timing: o.backend !== 'webgpu' ? 'wall clock' : gpuTimed ? 'wall clock with queue sync; GPU time from timestamp queries' : 'wall clock with queue sync' },
      model: model.description,
      architecture: model.title,
      resolution: o.resolution,
      latent: latentOf(g),
      images: o.batch,
      unetBatch: 2 * o.batch,
      steps: o.steps,
      warmup: o.warmup,
      dtype: o.dtype,
      precision: precisionOf(backend),
      seed: o.seed,
      buildSeconds,
      variants: results,
      notes,
      machine,
      warnings,
    };
    const stem = `${model.filePrefix}${o.backend}-${o.resolution[0] === o.resolution[1] ? o.resolution[0] : o.resolution.join('x')}${o.dtype === 'f32' ? '' : `-${o.dtype}`}`;
    const out = resolveOutFolder(o.out, stem);
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, `${stem}.json`), JSON.stringify(record, null, 2) + '\n');
    writeFileSync(join(out, `${stem}.svg`), overheadChartSvg(record));
    const md = `# Latest benchmark run\n\n${describeRun(record).split('\n').map((l) => `${l}  `).join('\n')}\n\n${markdownTable(record)}\n\n` +
      `![overheads](${stem}.svg)\n\n${[...warnings.map((w) => `**warning:** ${w}`), ...notes].map((n) => `- ${n}`).join('\n')}\n`;
    writeFileSync(join(out, 'latest.md'), md);

    console.log(describeRun(record));
    console.log('');
    console.log(o.wide ? terminalTable(record) : compactTable(record));
    if (notes.length) console.log(`\n${notes.map((n) => `note: ${n}`).join('\n')}`);
    if (warnings.length) process.stderr.write(`\n${warnings.map((w) => `WARNING: ${w}`).join('\n')}\n`);
    console.log(`\nwrote ${join(out, `${stem}.json`)}, ${stem}.svg, latest.md`);
  } finally {
    backend.destroy();
  }
}

/** --train: time the training step, print the summary, write the record. */
async function trainMain(o: BenchOptions): Promise<void> {
  const progress = new Progress();
  const record = await runTrainBench(o, (m) => progress.update(m));
  progress.done();
  console.log(trainSummary(record));
  if (record.notes.length) console.log(`\n${record.notes.map((n) => `note: ${n}`).join('\n')}`);
  if (record.warnings.length) process.stderr.write(`\n${record.warnings.map((w) => `WARNING: ${w}`).join('\n')}\n`);
  console.log(`\nwrote ${writeTrainRecord(record, o.out)}`);
}

main().catch((e: unknown) => {
  if (e instanceof BenchUsageError) {
    process.stderr.write(`bench: error: ${e.message}\n(see npm run bench -- --help)\n`);
    process.exit(2);
  }
  process.stderr.write(`\nbench: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

/** The record's precision entry: weight storage, the compute in effect and the device's features. */
function precisionOf(backend: Backend): NonNullable<BenchRecord['precision']> {
  if (!(backend instanceof WebgpuBackend)) {
    return { weightDtype: backend.weightDtype ?? 'f32', compute: backend.name === 'cpu' ? 'f64 reference' : 'f32' };
  }
  const r = backend.adapterInfo;
  return {
    weightDtype: backend.weightDtype, compute: backend.computeDtype, ...(backend.computeNote ? { note: backend.computeNote } : {}),
    features: r.features, adapterFeatures: r.adapterFeatures, instanceOptions: r.instanceOptions,
  };
}
