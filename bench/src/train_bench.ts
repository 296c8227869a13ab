// `npm run bench -- --train`: one ControlNeXt training step (train_step.ts) of the SD1.5 UNet with the
// light module, timed by phase over several steps after warm-up, with its analytic FLOPs
// (training_cost.ts), memory and trainable parameter counts. Shares the inference bench's backend
// creation, timing, machine-load record and output folder rules (main.ts calls runTrainBench and
// writeTrainRecord; the record goes to a new run folder unless --out names one).

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createBackend, WebgpuBackend } from '@cnx/kernels';
import type { BenchOptions } from './bench_options.js';
import type { TrainBenchRecord } from './bench_record.js';
import { runEnvironment } from './environment.js';
import { loadSnapshot, loadWarnings, machineCpu } from './machine_load.js';
import { resolveOutFolder } from './run_folder.js';
import { sampleStats } from './stats.js';
import { HostPeak, formatSeconds, type Clock } from './step_timing.js';
import { TRAIN_ADAMW, TRAIN_LR, buildTrainStep } from './train_step.js';
import { trainingStepCost } from './training_cost.js';
import { latentOf, type Geometry } from './variants.js';

export type TrainBenchOptions = Pick<BenchOptions, 'backend' | 'adapter' | 'resolution' | 'steps' | 'warmup' | 'batch' | 'seed'>;

/** Build, warm up, time `o.steps` training steps; the record (nothing is written). */
export async function runTrainBench(o: TrainBenchOptions, progress: (msg: string) => void = () => {}, clock?: Clock): Promise<TrainBenchRecord> {
  const loadBefore = loadSnapshot();
  const g: Geometry = { resolution: o.resolution, images: o.batch };
  const notes: string[] = [];
  progress(`creating the ${o.backend} backend`);
  const backend = await createBackend(o.backend, o.adapter !== undefined ? { adapter: o.adapter } : {});
  if (backend instanceof WebgpuBackend && backend.computeNote) notes.push(backend.computeNote);
  try {
    progress('building the SD1.5 UNet + light ControlNeXt module (random weights) and the fused AdamW');
    const tb = performance.now();
    const train = buildTrainStep(backend, g, o.seed);
    await backend.sync();
    const buildSeconds = (performance.now() - tb) / 1000;
    const cost = trainingStepCost(g);
    const samples = { step: [] as number[], forward: [] as number[], backward: [] as number[], optimizer: [] as number[] };
    const gpu = { forward: [] as number[], backward: [] as number[], optimizer: [] as number[] };
    const host = new HostPeak();
    let liveAtStart = 0, peak = 0;
    const t0 = performance.now();
    for (let k = 0; k < o.warmup + o.steps; k++) {
      const warm = k < o.warmup;
      const eta = k > 0 ? `, ETA ${formatSeconds(((performance.now() - t0) / k) * (o.warmup + o.steps - k) / 1000)}` : '';
      progress(`training step ${k + 1}/${o.warmup + o.steps}${warm ? ' (warm-up)' : ''}${eta}`);
      const live = backend.memory().liveBytes;
      backend.resetPeak();
      const p = await train.step(k, clock);
      if (warm) continue;
      // Live bytes at a step's start are the same every step after the first (the optimizer test checks it).
      liveAtStart = live;
      peak = Math.max(peak, backend.memory().peakBytes);
      host.sample();
      samples.forward.push(p.forwardMs);
      samples.backward.push(p.backwardMs);
      samples.optimizer.push(p.optimizerMs);
      samples.step.push(p.forwardMs + p.backwardMs + p.optimizerMs);
      if (p.gpuMs) (['forward', 'backward', 'optimizer'] as const).forEach((q) => gpu[q].push(p.gpuMs![q]));
    }
    const trainable = train.params.module + train.params.unetToOut;
    if (trainable !== cost.trainableParams) {
      notes.push(`the models have ${trainable} trainable parameters, the cost model counts ${cost.trainableParams}`);
    }
    const description = backend.description;
    train.dispose();

    const stepMs = sampleStats(samples.step), forwardMs = sampleStats(samples.forward), backwardMs = sampleStats(samples.backward);
    const gflops = (flops: number, ms: number) => flops / (ms * 1e6); // FLOPs / (ms * 1e-3 s/ms) / 1e9
    if (o.backend !== 'webgpu') notes.push(`${o.backend === 'wasm' ? 'CPU fast path (wasm)' : 'CPU'}: wall time per phase; ops are synchronous, so no extra sync is needed.`);
    else notes.push('WebGPU: wall time per phase up to backend.sync() (queue drained after each phase, which a trainer need not do).');
    const machine = { ...machineCpu(), before: loadBefore, after: loadSnapshot() };
    return {
      tool: 'controlnext-ts bench --train',
      environment: runEnvironment(),
      backend: { name: backend.name, description, ...(o.adapter ? { adapter: o.adapter } : {}),
        timing: o.backend !== 'webgpu' ? 'wall clock per phase' : 'wall clock per phase with queue sync' },
      model: 'UNet2DConditionModel (runwayml/stable-diffusion-v1-5 config) + ControlNeXt light module (SD1.5-Training) injected after ' +
        'down_blocks[0], random weights; trained: the module and every UNet to_out; MSE to the noise; fused AdamW',
      resolution: o.resolution,
      latent: latentOf(g),
      batch: o.batch,
      steps: o.steps,
      warmup: o.warmup,
      seed: o.seed,
      buildSeconds,
      optimizer: {
        name: 'AdamW', fused: true, betas: [TRAIN_ADAMW.betas[0], TRAIN_ADAMW.betas[1]], eps: TRAIN_ADAMW.eps, weightDecay: TRAIN_ADAMW.weightDecay,
        groups: [
          { what: 'ControlNeXt light module (all)', lr: 10 * TRAIN_LR, params: train.params.module },
          { what: 'UNet parameters named *to_out*', lr: TRAIN_LR, params: train.params.unetToOut },
        ],
      },
      trainableParams: { module: train.params.module, unetToOut: train.params.unetToOut, total: trainable, costModel: cost.trainableParams },
      stepMs, forwardMs, backwardMs, optimizerMs: sampleStats(samples.optimizer),
      samplesMs: samples,
      ...(gpu.forward.length === samples.forward.length && gpu.forward.length > 0 ? {
        gpuMs: { forward: sampleStats(gpu.forward).median, backward: sampleStats(gpu.backward).median, optimizer: sampleStats(gpu.optimizer).median },
      } : {}),
      flops: {
        forward: { matmul: cost.forward.matmulFlops, other: cost.forward.otherFlops },
        backward: { matmul: cost.backward.matmulFlops, other: cost.backward.otherFlops },
        optimizer: cost.optimizerFlops,
      },
      achievedGflops: {
        step: gflops(cost.forward.matmulFlops + cost.backward.matmulFlops, stepMs.median),
        forward: gflops(cost.forward.matmulFlops, forwardMs.median),
        backward: gflops(cost.backward.matmulFlops, backwardMs.median),
      },
      memory: {
        liveAtStartBytes: liveAtStart,
        backendPeakBytes: peak,
        stepWorkingBytes: peak - liveAtStart,
        optimizerStateBytes: 2 * 4 * trainable,
        hostPeakRssBytes: host.rss,
        hostPeakHeapBytes: host.heap,
      },
      notes,
      machine,
      warnings: loadWarnings(machine, o.backend === 'webgpu' ? 1 : machine.cores),
    };
  } finally {
    backend.destroy();
  }
}

/** The record's file stem: train-<backend>-<res> (train-wasm-64). */
export function trainStem(r: Pick<TrainBenchRecord, 'backend' | 'resolution'>): string {
  const [H, W] = r.resolution;
  return `train-${r.backend.name}-${H === W ? H : `${H}x${W}`}`;
}

/** Write <out>/train-<backend>-<res>.json (out as the inference bench resolves it: a new run folder by default). */
export function writeTrainRecord(record: TrainBenchRecord, out: string | undefined): string {
  const stem = trainStem(record);
  const dir = resolveOutFolder(out, stem);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${stem}.json`);
  writeFileSync(file, JSON.stringify(record, null, 2) + '\n');
  return file;
}

/** The terminal summary of a training run. */
export function trainSummary(r: TrainBenchRecord): string {
  const G = (f: number) => (f / 1e9).toFixed(2);
  const ms = (s: { median: number; q1: number; q3: number }) => `${s.median.toFixed(1)} ms (IQR ${s.q1.toFixed(1)}-${s.q3.toFixed(1)})`;
  const MiB = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  return [
    `training step, ${r.backend.description.split('\n')[0]}`,
    `SD1.5 UNet + light ControlNeXt, ${r.resolution.join('x')} px (latent ${r.latent.join('x')}), batch ${r.batch}, ${r.steps} timed steps after ${r.warmup} warm-up`,
    `trainable: ${r.trainableParams.total} (module ${r.trainableParams.module} + UNet to_out ${r.trainableParams.unetToOut})`,
    `step      ${ms(r.stepMs)}   ${G(r.flops.forward.matmul + r.flops.backward.matmul)} GFLOP matmul-class  ${r.achievedGflops.step.toFixed(2)} GFLOP/s`,
    `forward   ${ms(r.forwardMs)}   ${G(r.flops.forward.matmul)} GFLOP (+${G(r.flops.forward.other)} other)  ${r.achievedGflops.forward.toFixed(2)} GFLOP/s`,
    `backward  ${ms(r.backwardMs)}   ${G(r.flops.backward.matmul)} GFLOP (+${G(r.flops.backward.other)} other)  ${r.achievedGflops.backward.toFixed(2)} GFLOP/s`,
    `optimizer ${ms(r.optimizerMs)}   ${G(r.flops.optimizer)} GFLOP (AdamW, fused)`,
    ...(r.gpuMs ? [`GPU time: forward ${r.gpuMs.forward.toFixed(1)} ms, backward ${r.gpuMs.backward.toFixed(1)} ms, optimizer ${r.gpuMs.optimizer.toFixed(1)} ms`] : []),
    `memory: ${MiB(r.memory.liveAtStartBytes)} live at a step's start (optimizer moments ${MiB(r.memory.optimizerStateBytes)}), ` +
      `peak ${MiB(r.memory.backendPeakBytes)} (+${MiB(r.memory.stepWorkingBytes)} in the step), host RSS peak ${MiB(r.memory.hostPeakRssBytes)}`,
  ].join('\n');
}
