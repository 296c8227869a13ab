// The golden machinery itself: that the comparator and `npm run golden` FAIL when they should. Each
// failure mode is planted in a copy of a real case (op_softmax, sched_euler_ancestral) in a temporary
// folder: a wrong value, a NaN produced, a NaN in the reference, a listed output the runner does not
// produce, a wrong shape, an unknown runner kind, a case with nothing to check; and the command's
// per-case lines, closing line "N passed, N failed" and exit codes (0, 1, 2 for usage errors).

import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { compareArrays, runCase, type CaseResult } from '@cnx/golden';
import { CpuBackend, SafetensorsFile, writeSafetensors, type SafetensorsEntry } from '@cnx/tensor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';

const GOLDEN = GOLDEN_ROOT;
const cpu = new CpuBackend();
let root = '';
beforeAll(() => { root = mkdtempSync(join(tmpdir(), 'golden-checks-')); });
afterAll(() => { rmSync(root, { recursive: true, force: true }); });

/** Every io tensor of a golden case as f32 entries. */
function ioOf(name: string): Record<string, SafetensorsEntry> {
  const f = SafetensorsFile.open(join(GOLDEN, name, 'io.safetensors'));
  const out: Record<string, SafetensorsEntry> = {};
  for (const k of f.keys()) {
    const { shape, data } = f.readFloat32(k);
    out[k] = { dtype: 'F32', shape, data };
  }
  f.close();
  return out;
}

/**
 * A copy of golden case `name` under `label`, with case.json and the io tensors changed by `edit`
 * (model folders are copied as they are: only scheduler/ is needed here).
 */
function plantedCase(name: string, label: string, edit: (json: Record<string, any>, io: Record<string, SafetensorsEntry>) => void): string {
  const dir = join(root, label);
  mkdirSync(dir, { recursive: true });
  const json = JSON.parse(readFileSync(join(GOLDEN, name, 'case.json'), 'utf8')) as Record<string, any>;
  const io = ioOf(name);
  edit(json, io);
  writeFileSync(join(dir, 'case.json'), JSON.stringify(json));
  writeSafetensors(join(dir, 'io.safetensors'), io);
  for (const m of Object.values((json.models ?? {}) as Record<string, { path: string }>)) {
    mkdirSync(join(dir, m.path), { recursive: true });
    for (const f of ['scheduler_config.json']) {
      try { copyFileSync(join(GOLDEN, name, m.path, f), join(dir, m.path, f)); } catch { /* not a scheduler folder */ }
    }
  }
  return dir;
}

const f32 = (e: SafetensorsEntry) => e.data as Float32Array;
const bump = (e: SafetensorsEntry, i: number, by: number) => { f32(e)[i] = f32(e)[i]! + by; };

function failedChecks(r: CaseResult): string[] {
  return r.checks.filter((k) => !k.ok).map((k) => `${k.name}: ${k.message ?? ''}`);
}

describe('compareArrays', () => {
  it('measures max abs and relative L2 error and lists the first mismatches', () => {
    const ref = new Float32Array([1, 2, 3, 4]);
    const c = compareArrays(new Float32Array([1, 2.5, 3, 3]), ref, 0.1);
    expect(c.maxAbs).toBe(1);
    expect(c.relL2).toBeCloseTo(Math.sqrt((0.25 + 1) / 30), 12);
    expect(c.firstBad).toEqual([{ index: 1, got: 2.5, ref: 2 }, { index: 3, got: 3, ref: 4 }]);
    expect(c.nanCount).toBe(0);
    expect(compareArrays(ref, ref, 0)).toEqual({ maxAbs: 0, relL2: 0, firstBad: [], nanCount: 0 });
  });

  it('never passes a NaN, on either side (NaN against NaN included); equal infinities match', () => {
    for (const [got, ref] of [[NaN, 1], [1, NaN], [NaN, NaN], [Infinity, -Infinity], [Infinity, 1]] as const) {
      const c = compareArrays(new Float32Array([0, got]), new Float32Array([0, ref]), 1e30);
      expect(c.nanCount + (Number.isFinite(c.maxAbs) ? 0 : 1), `${got} vs ${ref}`).toBeGreaterThan(0);
      expect(c.firstBad.map((b) => b.index), `${got} vs ${ref}`).toEqual([1]);
    }
    expect(compareArrays(new Float32Array([Infinity, -Infinity]), new Float32Array([Infinity, -Infinity]), 0))
      .toEqual({ maxAbs: 0, relL2: 0, firstBad: [], nanCount: 0 });
  });

  it('refuses arrays of different lengths (extra values were ignored before)', () => {
    expect(() => compareArrays(new Float32Array(5), new Float32Array(4), 1)).toThrow('compareArrays: 5 values produced, 4 expected');
  });
});

describe('runCase fails what it should (planted in copies of op_softmax)', () => {
  it('passes the unchanged copy (the control)', async () => {
    const r = await runCase(plantedCase('op_softmax', 'control', () => {}), cpu);
    expect(r.error).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(r.checks.map((k) => k.name)).toEqual(['normal.y', 'large.y']);
  });

  it('a wrong value: fails naming the tensor, the multi-index, got and ref', async () => {
    const r = await runCase(plantedCase('op_softmax', 'wrong_value', (_, io) => { bump(io['normal.y']!, 3 * 77 + 5, 1e-3); }), cpu);
    expect(r.ok).toBe(false);
    expect(failedChecks(r)).toEqual([expect.stringMatching(/^normal\.y: first mismatches: \[0,3,5\] got [\d.e-]+ ref [\d.e-]+$/)]);
  });

  it('a NaN produced (NaN input) fails, and so does a NaN in the reference, even where both are NaN', async () => {
    const produced = await runCase(plantedCase('op_softmax', 'nan_out', (_, io) => { f32(io['large.x']!)[7] = NaN; }), cpu);
    expect(produced.ok).toBe(false);
    expect(failedChecks(produced)).toEqual([expect.stringMatching(/^large\.y: 64 NaN mismatches; first mismatches: \[0,0\] got NaN ref/)]);
    const both = await runCase(plantedCase('op_softmax', 'nan_both', (_, io) => {
      f32(io['large.x']!)[7] = NaN;
      f32(io['large.y']!).fill(NaN, 0, 64);
    }), cpu);
    expect(both.ok).toBe(false);
    expect(failedChecks(both)).toEqual([expect.stringMatching(/^large\.y: 64 NaN mismatches/)]);
  });

  it('a listed output the runner does not produce fails', async () => {
    const r = await runCase(plantedCase('op_softmax', 'missing', (json, io) => {
      json.outputs['extra.y'] = [2, 64];
      io['extra.y'] = io['large.y']!;
    }), cpu);
    expect(r.ok).toBe(false);
    expect(failedChecks(r)).toEqual(['extra.y: not produced by the runner']);
  });

  it('a wrong shape fails even when the element count matches', async () => {
    const r = await runCase(plantedCase('op_softmax', 'shape', (_, io) => { io['normal.y'] = { ...io['normal.y']!, shape: [21, 77] } as SafetensorsEntry; }), cpu);
    expect(r.ok).toBe(false);
    expect(failedChecks(r)).toEqual(['normal.y: shape [3, 7, 77], expected [21, 77]']);
  });

  it('an unknown runner kind fails naming it and the known kinds', async () => {
    const r = await runCase(plantedCase('op_softmax', 'unknown', (json) => { json.runner = 'op_softmax_v2'; }), cpu);
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/unknown runner kind 'op_softmax_v2' \(known: .*op_softmax.*\)/);
  });

  it('a case with nothing to check fails (no vacuous pass)', async () => {
    const r = await runCase(plantedCase('op_softmax', 'empty', (json) => { json.outputs = {}; json.intermediates = {}; }), cpu);
    expect(r.checks).toEqual([]);
    expect(r.ok).toBe(false);
  });
});

describe('scheduler noise is replayed, not compared with itself', () => {
  it('reports noise as replayed (drawn per step as recorded, all used) and checks the samples', async () => {
    const r = await runCase(join(GOLDEN, 'sched_euler_ancestral'), cpu);
    expect(r.error).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(r.checks.map((k) => k.name)).not.toContain('noise');
    expect(r.checks.map((k) => k.name)).toContain('latents');
    expect(r.replayed).toEqual([{ name: 'noise', note: expect.stringMatching(/^\d+ draws of \d+ values, drawn step by step as the reference did and all used$/) }]);
  });

  it('fails when the recorded noise is not what the scheduler draws (a step too many)', async () => {
    const dir = plantedCase('sched_euler_ancestral', 'noise_extra', (_, io) => {
      const n = io.noise!;
      const per = n.shape.slice(1).reduce((a, b) => a * b, 1);
      const data = new Float32Array(f32(n).length + per);
      data.set(f32(n));
      io.noise = { dtype: 'F32', shape: [n.shape[0]! + 1, ...n.shape.slice(1)], data };
    });
    const r = await runCase(dir, cpu);
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/the reference drew noise 21 times, \d+ values each .* EulerAncestralDiscreteScheduler drew 20 times \(\d+ values\), leaving \d+ unused/);
  });
});

describe('npm run golden (packages/golden/dist/cli.js)', () => {
  const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
  const run = async (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 120_000 });
      return { code: 0, stdout, stderr };
    } catch (e) {
      const err = e as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
    }
  };
  const lastLine = (s: string) => s.trim().split('\n').pop();

  it('exits 0 with "N passed, 0 failed" when every case passes', async () => {
    const ok = plantedCase('op_softmax', 'cli_ok', () => {});
    const r = await run(ok, ok, '--backend', 'cpu');
    expect(r.stdout).toMatch(/^PASS op_softmax \[op_softmax\] on cpu/m);
    expect(lastLine(r.stdout)).toBe('2 passed, 0 failed');
    expect(r.code).toBe(0);
  });

  it('exits 1 and counts the failures: a wrong value, an unknown runner kind', async () => {
    const ok = plantedCase('op_softmax', 'cli_ok2', () => {});
    const bad = plantedCase('op_softmax', 'cli_bad', (_, io) => { bump(io['large.y']!, 0, 1); });
    const unknown = plantedCase('op_softmax', 'cli_unknown', (json) => { json.runner = 'no_such_kind'; });
    const r = await run(ok, bad, unknown, '--backend', 'cpu');
    expect(r.stdout).toMatch(/^FAIL op_softmax \[op_softmax\] on cpu .*\n(.*\n)*? {2}BAD {2}large\.y: max_abs/m);
    expect(r.stdout).toMatch(/error: .*unknown runner kind 'no_such_kind'/);
    expect(lastLine(r.stdout)).toBe('1 passed, 2 failed');
    expect(r.code).toBe(1);
  });

  it('exits 2 on usage errors, naming them', async () => {
    const none = await run();
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/golden: no case folders given/);
    const badBackend = await run(join(GOLDEN, 'op_softmax'), '--backend', 'tpu');
    expect(badBackend.code).toBe(2);
    expect(badBackend.stderr).toMatch(/--backend must be one of cpu(, \w+)* or all, found 'tpu'/);
    const badOption = await run('--fast');
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toMatch(/unknown option --fast/);
  });
});
