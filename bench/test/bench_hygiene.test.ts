// Benchmark hygiene (issue 15): a default run writes to a new git-ignored run folder, never over the
// committed results; the record holds the CPU, cores and load averages before and after; an overhead
// inside the samples' spread, and a busy machine, are warned about; at least one warm-up round; a
// narrow default table; progress with an ETA; usage errors exit with 2 naming the flag. The last test
// runs the real benchmark on two configurations for one timed step and checks `git status` is unchanged.

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '@cnx/tensor';
import { BenchUsageError, parseBenchOptions } from '../src/bench_options.js';
import type { BenchRecord } from '../src/bench_record.js';
import { loadWarnings, type MachineLoad } from '../src/machine_load.js';
import { compactTable, shortLabel } from '../src/report/compact_table.js';
import { defaultRunFolder, resolveOutFolder, RESULTS_DIR, RUNS_DIR } from '../src/run_folder.js';
import { relativeSpreadPct, spreadWarnings } from '../src/spread_warnings.js';
import { sampleStats } from '../src/stats.js';
import { timeRoundRobin } from '../src/step_timing.js';
import type { StepRunner } from '../src/sd15_step.js';
import { VARIANT_IDS, VARIANTS } from '../src/variants.js';

const REPO = join(import.meta.dirname, '..', '..');
const MAIN = join(REPO, 'bench', 'dist', 'main.js');

describe('options', () => {
  it('at least one warm-up round; unknown flags and bad values are BenchUsageError', () => {
    expect(() => parseBenchOptions(['--warmup', '0'])).toThrow(BenchUsageError);
    expect(() => parseBenchOptions(['--warmup', '0'])).toThrow(/--warmup: expected an integer >= 1 \(the first round pays JIT/);
    expect(() => parseBenchOptions(['--frobnicate'])).toThrow(BenchUsageError);
    expect(() => parseBenchOptions(['--steps'])).toThrow(BenchUsageError);
    expect(() => parseBenchOptions(['--steps', '0'])).toThrow(/--steps: expected an integer >= 1/);
  });

  it('the CLI exits 2 on usage errors, naming the flag, before building anything', () => {
    for (const [args, msg] of [[['--warmup', '0'], /--warmup/], [['--frobnicate'], /frobnicate/], [['--resolution', '100'], /--resolution/]] as const) {
      const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).toMatch(/see npm run bench -- --help/);
    }
    const help = spawnSync(process.execPath, [MAIN, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/--out DIR .*bench\/runs/);
  });
});

describe('where results go', () => {
  it('a new run folder under bench/runs by default; bench/results only when asked', () => {
    const d = defaultRunFolder('wasm-64', new Date('2026-12-07T05:03:11.123Z'));
    expect(relative(RUNS_DIR, d)).toBe('2026-12-07T05-03-11-wasm-64');
    expect(resolveOutFolder(undefined, 'wasm-64').startsWith(RUNS_DIR)).toBe(true);
    expect(resolveOutFolder('bench/results', 'x')).toBe(RESULTS_DIR);
    const ignored = spawnSync('git', ['check-ignore', '-q', join(RUNS_DIR, 'anything', 'wasm-64.json')], { cwd: REPO });
    expect(ignored.status, 'bench/runs/ must be git-ignored').toBe(0);
  });
});

describe('warnings', () => {
  const v = (id: string, samplesMs: number[], overheadPct: number) => ({ id, label: id, samplesMs, overheadPct });

  it('an overhead within the samples\' spread is not established', () => {
    expect(relativeSpreadPct([100, 110, 90])).toBeCloseTo(20);
    const base = v('base', [100, 102, 101], 0);
    const w = spreadWarnings(base, [v('noisy', [80, 100, 120], -12), v('clear', [140, 141, 140], 40), v('tiny', [101, 101.5, 101], 1)]);
    expect(w).toHaveLength(2);
    expect(w[0]).toMatch(/^noisy: overhead -12\.0 % is within the spread of the samples \(max-min: 40\.0 % of its median, base 2\.0 %, over 3 steps\)/);
    expect(w[1]).toMatch(/^tiny: overhead \+1\.0 %/); // inside the base's own 2 % spread
  });

  it('too few samples for a spread, and a configuration that adds work measured faster than the base', () => {
    const w = spreadWarnings(v('base', [100], 0), [{ ...v('light-opt', [95], -5.7), flopOverheadPct: 4 }]);
    expect(w[0]).toMatch(/^only 1 timed step\(s\) per configuration: the spread cannot show the noise; use --steps 3 or more/);
    expect(w[1]).toMatch(/^light-opt: measured -5\.7 % against the base although it adds 4\.0 % FLOPs: noise, not a speed-up/);
  });

  it('a busy machine before or during the run', () => {
    const m = (before: number, after: number): MachineLoad => ({
      cpu: 'x', cores: 2, before: { loadAverage: [before, 0, 0], at: '' }, after: { loadAverage: [after, 0, 0], at: '' },
    });
    expect(loadWarnings(m(0.2, 2.3), 2)).toEqual([]); // idle before; after: our 2 threads
    expect(loadWarnings(m(1.5, 2.3), 2)[0]).toMatch(/busy before the run: load average 1\.50 on 2 cores/);
    expect(loadWarnings(m(0.2, 4.1), 2)[0]).toMatch(/busy during the run: load average 4\.10 after it/);
  });
});

describe('the narrow table', () => {
  it('fits 100 columns with the standard configurations and spreads shown', () => {
    const mk = (id: (typeof VARIANT_IDS)[number], i: number) => ({
      id, label: VARIANTS[id].label, latencyMs: sampleStats([19806 + i, 20000 + i]), samplesMs: [19806 + i, 20000 + i], overheadPct: 12.3,
      stepFlops: 2.7e10, controlFlops: 0, prefixFlops: 0, otherFlops: 0, flopOverheadPct: 36.6, achievedGflops: 1.3, addedParams: 361_280_000, trainableParams: 0,
      memory: { liveAtStartBytes: 0, backendPeakBytes: 5.5e9, stepWorkingBytes: 0, controlWeightBytes: 0, hostPeakRssBytes: 0, hostPeakHeapBytes: 0 },
    });
    const r = { variants: VARIANT_IDS.map(mk) } as unknown as BenchRecord;
    const lines = compactTable(r).split('\n');
    expect(lines).toHaveLength(2 + VARIANT_IDS.length);
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(100);
    expect(lines[0]).toMatch(/configuration\s+median\/step\s+spread\s+overhead/);
    expect(shortLabel('x', 'a very long label of a configuration added later by someone')).toHaveLength(30);
  });
});

describe('progress', () => {
  it('round-robin progress lines carry the step count and, after the first step, an ETA', async () => {
    let now = 0;
    const runner = (ms: number): StepRunner => ({ controlParams: 0, step: () => { now += ms; }, dispose: () => {} });
    const lines: string[] = [];
    const backend = new CpuBackend();
    await timeRoundRobin(new Map([['base', runner(1000)], ['ctrl', runner(1000)]]), backend, { warmup: 1, steps: 2, clock: () => now, onProgress: (m) => lines.push(m) });
    expect(lines[0]).toBe('round 1/3 (warm-up): base (step 1/6)');
    expect(lines[1]).toBe('round 1/3 (warm-up): ctrl (step 2/6, ETA 5s)');
    expect(lines[5]).toBe('round 3/3: ctrl (step 6/6, ETA 1s)');
    backend.destroy();
  });
});

describe('a default-style run', () => {
  it('writes its own run folder with the machine load and warnings, prints the narrow table, and leaves git status as it was', () => {
    // The bench writes only under bench/ (other test files may run beside this one and touch other paths).
    const status = () => execFileSync('git', ['status', '--porcelain', '--', 'bench'], { cwd: REPO, encoding: 'utf8' });
    const before = status();
    const runsBefore = existsSync(RUNS_DIR) ? new Set(readdirSync(RUNS_DIR)) : new Set<string>();
    const r = spawnSync(process.execPath, [MAIN, '--variants', 'light-opt', '--steps', '1'], { cwd: REPO, encoding: 'utf8', timeout: 600_000 });
    expect(r.status, r.stderr).toBe(0);
    const created = readdirSync(RUNS_DIR).filter((d) => !runsBefore.has(d));
    try {
      expect(created).toHaveLength(1);
      expect(created[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-wasm-64$/);
      const record = JSON.parse(readFileSync(join(RUNS_DIR, created[0]!, 'wasm-64.json'), 'utf8')) as BenchRecord;
      expect(record.warmup).toBe(1);
      expect(record.machine!.cores).toBeGreaterThan(0);
      expect(record.machine!.cpu.length).toBeGreaterThan(0);
      expect(record.machine!.before.loadAverage).toHaveLength(3);
      expect(record.machine!.after.loadAverage).toHaveLength(3);
      expect(record.warnings).toContain('only 1 timed step(s) per configuration: the spread cannot show the noise; use --steps 3 or more');
      expect(r.stderr).toMatch(/WARNING: only 1 timed step/);
      const table = r.stdout.split('\n').filter((l) => /^(configuration|UNet|\+ )/.test(l));
      expect(table.length).toBe(3);
      expect(Math.max(...table.map((l) => l.length))).toBeLessThanOrEqual(100);
      expect(r.stderr).toMatch(/round 2\/2: light-opt \(step 4\/4, ETA/);
      expect(status()).toBe(before);
    } finally {
      for (const d of created) rmSync(join(RUNS_DIR, d), { recursive: true, force: true });
    }
  }, 600_000);
});
