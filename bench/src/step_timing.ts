// How `npm run bench` times a denoising step (moved out of main.ts so that tests can drive it with a
// fake clock and fake configurations): round-robin rounds over every configuration, warm-up rounds
// untimed, each step timed by the wall clock up to the backend's queue drain (and by timestamp queries
// where the backend has a GPU timer), and the per-configuration figures the report shows: median
// latency, overhead over the base configuration's median, and achieved GFLOP/s = analytic FLOPs per
// step / median latency.

import { WebgpuBackend } from '@cnx/kernels';
import type { Backend } from '@cnx/tensor';
import type { StepRunner } from './sd15_step.js';
import { sampleStats, type SampleStats } from './stats.js';

/** Milliseconds from an arbitrary origin (performance.now by default; tests pass a fake one). */
export type Clock = () => number;

export class HostPeak {
  rss = 0;
  heap = 0;
  sample(): void {
    const m = process.memoryUsage();
    this.rss = Math.max(this.rss, m.rss);
    this.heap = Math.max(this.heap, m.heapUsed);
  }
}

export interface Timed {
  samples: number[];
  /** GPU time per step (timestamp queries), where the backend has them; parallel to samples. */
  gpuSamples: number[];
  prefixMs?: number;
  prefixGpuMs?: number;
  /** Largest (backend peak - live at step start) over the timed steps: one step's activations. */
  stepWorking: number;
  host: HostPeak;
}

/** The backend's GPU timer where it has one (WebGPU with 'timestamp-query'), else undefined. */
function gpuTimerOf(backend: Backend): WebgpuBackend | undefined {
  return backend instanceof WebgpuBackend && backend.hasGpuTimer ? backend : undefined;
}

/**
 * Run `work` and sync, timed by the wall clock and, where the backend has a GPU timer, by timestamp
 * queries (the summed execution time of its compute passes). Reading the GPU time back happens after
 * the wall time is taken. A failing `work` stops the timer before the error propagates.
 */
export async function measure(backend: Backend, work: () => void, clock: Clock = () => performance.now()): Promise<{ wallMs: number; gpuMs?: number }> {
  const timer = gpuTimerOf(backend);
  const t0 = clock();
  timer?.startGpuTimer();
  try {
    work();
    await backend.sync();
  } catch (e) {
    await timer?.stopGpuTimer().catch(() => undefined); // the work's error is the one to report
    throw e;
  }
  const wallMs = clock() - t0;
  const gpuMs = await timer?.stopGpuTimer();
  return gpuMs !== undefined ? { wallMs, gpuMs } : { wallMs };
}

/** One step of `runner`, timed up to the backend's queue drain; tracks its working memory. */
async function timedStep(runner: StepRunner, backend: Backend, t: number, into: Timed | undefined, clock: Clock): Promise<void> {
  const live = backend.memory().liveBytes;
  backend.resetPeak();
  const { wallMs: dt, gpuMs } = await measure(backend, () => runner.step(t), clock);
  if (into) {
    into.samples.push(dt);
    if (gpuMs !== undefined) into.gpuSamples.push(gpuMs);
    into.stepWorking = Math.max(into.stepWorking, backend.memory().peakBytes - live);
    into.host.sample();
  }
}

/** Seconds as "1m05s" / "12s". */
export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const r = Math.round(s);
  return r >= 60 ? `${Math.floor(r / 60)}m${String(r % 60).padStart(2, '0')}s` : `${r}s`;
}

/** Timesteps of the timed steps: spread over the schedule like a 20-step sampler (values do not change the cost). */
export function timestepAt(round: number): number {
  return Math.max(1, 999 - 50 * (round % 20));
}

export interface RoundRobinOptions {
  warmup: number;
  steps: number;
  /** Progress lines (the bench passes its stderr progress). */
  onProgress?: (msg: string) => void;
  clock?: Clock;
}

/**
 * Round-robin timing: every round runs one step of every configuration, so slow drift of the machine
 * (JIT tiers, heap growth, clocks, other load) spreads over all configurations instead of biasing
 * whichever ran first. The first `warmup` rounds are untimed; then `steps` rounds give `steps` samples
 * per configuration. Each configuration's prepare() (its once-per-generation prefix) runs once, timed
 * on its own, before the rounds.
 */
export async function timeRoundRobin(runners: ReadonlyMap<string, StepRunner>, backend: Backend, o: RoundRobinOptions): Promise<Map<string, Timed>> {
  const clock = o.clock ?? (() => performance.now());
  const progress = o.onProgress ?? (() => {});
  const out = new Map<string, Timed>();
  for (const [id, r] of runners) {
    const timed: Timed = { samples: [], gpuSamples: [], stepWorking: 0, host: new HostPeak() };
    if (r.prepare) {
      progress(`${id}: prefix (once per generation)`);
      const prefix = await measure(backend, () => r.prepare!(), clock);
      timed.prefixMs = prefix.wallMs;
      if (prefix.gpuMs !== undefined) timed.prefixGpuMs = prefix.gpuMs;
    }
    out.set(id, timed);
  }
  const rounds = o.warmup + o.steps;
  // ETA: the mean time of the steps so far times the steps left (warm-up steps are slower, so early
  // estimates run high and then settle).
  const total = rounds * runners.size;
  const tRounds = clock();
  let done = 0;
  for (let round = 0; round < rounds; round++) {
    const warm = round < o.warmup;
    for (const [id, r] of runners) {
      const eta = done > 0 ? `, ETA ${formatSeconds(((clock() - tRounds) / done) * (total - done) / 1000)}` : '';
      progress(`round ${round + 1}/${rounds}${warm ? ' (warm-up)' : ''}: ${id} (step ${done + 1}/${total}${eta})`);
      await timedStep(r, backend, timestepAt(round), warm ? undefined : out.get(id)!, clock);
      done++;
    }
  }
  return out;
}

/** The latency figures of one configuration against the base configuration's. */
export interface LatencyFigures {
  latencyMs: SampleStats;
  /** (median - base median) / base median, in %. */
  overheadPct: number;
  /** Analytic FLOPs per step / median wall time. */
  achievedGflops: number;
  gpuMs?: SampleStats;
  gpuOverheadPct?: number;
}

/**
 * Medians, overheads and GFLOP/s of `timed` against `base` (both from timeRoundRobin). GPU figures only
 * where every step of this configuration and of the base has a GPU time (the timer is per backend, so
 * it is all or none).
 */
export function latencyFigures(timed: Timed, base: Timed, stepFlops: number): LatencyFigures {
  const stats = sampleStats(timed.samples);
  const baseMedian = sampleStats(base.samples).median;
  const figures: LatencyFigures = {
    latencyMs: stats,
    overheadPct: (100 * (stats.median - baseMedian)) / baseMedian,
    achievedGflops: stepFlops / (stats.median * 1e6), // FLOPs / (ms * 1e-3 s/ms) / 1e9
  };
  const gpuComplete = (t: Timed) => t.gpuSamples.length > 0 && t.gpuSamples.length === t.samples.length;
  if (gpuComplete(timed) && gpuComplete(base)) {
    const gpu = sampleStats(timed.gpuSamples);
    const baseGpuMedian = sampleStats(base.gpuSamples).median;
    figures.gpuMs = gpu;
    figures.gpuOverheadPct = (100 * (gpu.median - baseGpuMedian)) / baseGpuMedian;
  }
  return figures;
}
