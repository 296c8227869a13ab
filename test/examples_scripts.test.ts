// The runnable example scripts for the three uses of the project (examples/README.md): research import
// (research_import.js), benchmark (benchmark_step.js), a new control type (new_control_type.js). Each
// runs as a user would run it, as a Node program in a fresh folder, on the tiny random model it writes
// itself (small sizes, the wasm backend), and must exit 0 having written what it says.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readImage } from '@cnx/controlnext';
import { REPO_ROOT } from './harness/golden_root.js';

const dist = join(REPO_ROOT, 'examples', 'dist');
const work = mkdtempSync(join(tmpdir(), 'cnx-example-scripts-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function run(script: string, ...args: string[]): string {
  const r = spawnSync(process.execPath, [join(dist, script), '--steps', '2', '--size', '64', '--out', work, ...args], { cwd: work, encoding: 'utf8', timeout: 240_000 });
  expect(r.status, `${script} exited ${r.status ?? r.signal}\n${r.stdout}\n${r.stderr}`).toBe(0);
  expect(r.stderr).toMatch(/tiny, RANDOM weights/);
  return r.stdout;
}

describe('example scripts', () => {
  it('research_import: per-step effect of the control on the noise prediction, and both images', () => {
    const out = run('research_import.js');
    expect(out).toMatch(/control_effect\.csv: /);
    const rows = readFileSync(join(work, 'control_effect.csv'), 'utf8').trim().split('\n');
    expect(rows[0]).toBe('step,rel_rms_noise_pred_change');
    expect(rows).toHaveLength(3);
    for (const r of rows.slice(1)) expect(Number(r.split(',')[1])).toBeGreaterThan(0); // the control changes the prediction
    expect(readImage(join(work, 'scale1.png')).shape).toEqual([64, 64, 3]);
  }, 300_000);

  it('benchmark_step: medians with and without ControlNeXt, overhead and spread', () => {
    const out = run('benchmark_step.js', '--rounds', '1');
    expect(out).toMatch(/base +\d+\.\d ms\/step \(spread/);
    expect(out).toMatch(/\+ ControlNeXt \d+\.\d ms\/step \(spread [\d.]+ %\), overhead [+-]\d+\.\d %/);
  }, 300_000);

  it('new_control_type: the scribble type registered from code makes a stroke map that drives a generation', () => {
    const out = run('new_control_type.js');
    expect(out).toMatch(/control types: .*scribble; wrote scribble_map\.png, scribble_out\.png/);
    const map = readImage(join(work, 'scribble_map.png'));
    let strokes = 0;
    for (let i = 0; i < map.data.length; i += 3) if (Number(map.data[i]) > 0.5) strokes++;
    expect(strokes).toBeGreaterThan(50); // the square's and the disc's outlines
    expect(strokes).toBeLessThan(64 * 64 / 2);
    expect(existsSync(join(work, 'scribble_out.png'))).toBe(true);
  }, 300_000);
});
