// The benchmark's measurement loop (bench/src/step_timing.ts) driven by a fake clock and fake
// configurations whose steps "take" chosen times: round-robin order, warm-up rounds excluded from the
// samples, the prefix timed once on its own, timesteps, medians, overheads and GFLOP/s computed from
// known numbers, GPU figures only where every step has a GPU time.

import { CpuBackend } from '@cnx/tensor';
import { describe, expect, it } from 'vitest';
import type { StepRunner } from '../src/sd15_step.js';
import { HostPeak, latencyFigures, timeRoundRobin, timestepAt, type Timed } from '../src/step_timing.js';

const backend = new CpuBackend();

/** A clock that only moves when a fake step advances it. */
function fakeClock() {
  let now = 1000;
  return { clock: () => now, advance: (ms: number) => { now += ms; } };
}

/** A configuration whose k-th step takes costs[k] ms and whose prefix takes prefixMs; logs its calls. */
function fakeRunner(id: string, costs: number[], log: string[], advance: (ms: number) => void, prefixMs?: number): StepRunner {
  let k = 0;
  return {
    controlParams: 0,
    ...(prefixMs !== undefined ? { prepare: () => { log.push(`${id}:prepare`); advance(prefixMs); } } : {}),
    step: (t: number) => {
      log.push(`${id}@${t}`);
      advance(costs[k++]!);
    },
    dispose: () => {},
  };
}

describe('timeRoundRobin', () => {
  it('runs one step of every configuration per round, excludes warm-up rounds, times the prefix once', async () => {
    const { clock, advance } = fakeClock();
    const log: string[] = [];
    // Warm-up steps are slow (JIT, compiles): if they leaked into the samples the medians would show it.
    const runners = new Map<string, StepRunner>([
      ['base', fakeRunner('base', [500, 400, 10, 12, 11], log, advance)],
      ['ctrl', fakeRunner('ctrl', [900, 800, 13, 14, 15], log, advance, 77)],
    ]);
    const timed = await timeRoundRobin(runners, backend, { warmup: 2, steps: 3, clock });
    expect(log).toEqual([
      'ctrl:prepare',
      `base@${timestepAt(0)}`, `ctrl@${timestepAt(0)}`, // warm-up round 1
      `base@${timestepAt(1)}`, `ctrl@${timestepAt(1)}`, // warm-up round 2
      `base@${timestepAt(2)}`, `ctrl@${timestepAt(2)}`,
      `base@${timestepAt(3)}`, `ctrl@${timestepAt(3)}`,
      `base@${timestepAt(4)}`, `ctrl@${timestepAt(4)}`,
    ]);
    expect(timed.get('base')!.samples).toEqual([10, 12, 11]);
    expect(timed.get('ctrl')!.samples).toEqual([13, 14, 15]);
    expect(timed.get('ctrl')!.prefixMs).toBe(77);
    expect(timed.get('base')!.prefixMs).toBeUndefined();
    expect(timed.get('base')!.gpuSamples).toEqual([]); // the CPU backend has no GPU timer
  });

  it('with no warm-up every round is timed; timesteps walk a 20-step schedule', async () => {
    const { clock, advance } = fakeClock();
    const log: string[] = [];
    const timed = await timeRoundRobin(new Map([['base', fakeRunner('base', [5, 6], log, advance)]]), backend, { warmup: 0, steps: 2, clock });
    expect(timed.get('base')!.samples).toEqual([5, 6]);
    expect([0, 1, 19, 20, 21].map(timestepAt)).toEqual([999, 949, 49, 999, 949]);
  });

  it('a failing step stops the loop with its error', async () => {
    const runners = new Map<string, StepRunner>([['base', { controlParams: 0, step: () => { throw new Error('boom'); }, dispose: () => {} }]]);
    await expect(timeRoundRobin(runners, backend, { warmup: 1, steps: 1 })).rejects.toThrow('boom');
  });
});

describe('latencyFigures', () => {
  const timed = (samples: number[], gpuSamples: number[] = []): Timed => ({ samples, gpuSamples, stepWorking: 0, host: new HostPeak() });

  it('median latency, overhead over the base median, GFLOP/s = FLOPs per step / median', () => {
    const base = timed([100, 300, 200]); // median 200 ms
    const f = latencyFigures(timed([260, 250, 1000, 240]), base, 5e9); // median 255 ms
    expect(f.latencyMs).toMatchObject({ n: 4, median: 255, min: 240, max: 1000 });
    expect(f.overheadPct).toBeCloseTo(27.5, 12);
    expect(f.achievedGflops).toBeCloseTo(5e9 / 0.255 / 1e9, 12); // 19.6 GFLOP/s
    expect(f.gpuMs).toBeUndefined();
    expect(latencyFigures(base, base, 1).overheadPct).toBe(0);
  });

  it('GPU figures only where every step of the configuration and of the base has a GPU time', () => {
    const base = timed([10, 10], [8, 6]); // GPU median 7
    const f = latencyFigures(timed([11, 13], [9, 8.4]), base, 1e9);
    expect(f.gpuMs!.median).toBeCloseTo(8.7, 12);
    expect(f.gpuOverheadPct).toBeCloseTo((100 * 1.7) / 7, 12);
    expect(latencyFigures(timed([11, 13], [9]), base, 1e9).gpuMs).toBeUndefined();
    expect(latencyFigures(timed([11, 13], [9, 9]), timed([10, 10]), 1e9).gpuOverheadPct).toBeUndefined();
  });
});
