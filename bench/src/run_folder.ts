// Where a benchmark run writes its results. By default a new run folder under bench/runs/ (ignored by git):
// `bench/runs/<date>T<time>-<backend>-<resolution>/`, so that a default `npm run bench` never overwrites
// the committed results the READMEs quote and leaves `git status` clean. The committed results in
// bench/results/ are written only when asked for with `--out bench/results` (or any folder).

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The bench package folder (this file is bench/dist/run_folder.js). */
export const BENCH_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The committed results (written only with --out). */
export const RESULTS_DIR = join(BENCH_DIR, 'results');
/** Parent of the default run folders (git-ignored). */
export const RUNS_DIR = join(BENCH_DIR, 'runs');

/** A run folder name: 2026-12-07T05-03-11-wasm-64 (local-time independent: UTC), unique with a suffix if taken. */
export function defaultRunFolder(stem: string, now = new Date(), root = RUNS_DIR): string {
  const stamp = now.toISOString().replace(/\.\d+Z$/, '').replace(/:/g, '-');
  let dir = join(root, `${stamp}-${stem}`);
  for (let k = 2; existsSync(dir); k++) dir = join(root, `${stamp}-${stem}-${k}`);
  return dir;
}

/**
 * The output folder of a run: `--out DIR` as given ('bench/results' means the committed results folder,
 * wherever the command runs from), else a new run folder.
 */
export function resolveOutFolder(out: string | undefined, stem: string): string {
  if (out === undefined) return defaultRunFolder(stem);
  return out === 'bench/results' ? RESULTS_DIR : resolve(out);
}
