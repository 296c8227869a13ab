#!/usr/bin/env node
// npm run golden -- <case-dir> [<case-dir> ...] [--backend cpu|wasm|webgpu|all] [--adapter NAME] [--weight-dtype f32|f16] [--compute f32|f16]
// Runs every case on every chosen backend, prints per-tensor errors and tolerances, ends with
// "N passed, N failed" and exits non-zero on any failure or unknown runner kind. --weight-dtype f16 stores
// the models' weights in f16 (tolerances then include the f16 weight-rounding allowance, run_case.ts);
// --compute f16 runs the f16-operand kernels where the WebGPU device has shader-f16.

import { existsSync, statSync } from 'node:fs';
import { backendNames, compileProgressPrinter, createBackend, watchCompiles } from '@cnx/kernels';
import type { Backend } from '@cnx/tensor';
import { runCase, type CaseResult } from './run_case.js';

function usage(msg?: string): never {
  if (msg) console.error(`golden: ${msg}`);
  console.error('usage: npm run golden -- <case-dir> [<case-dir> ...] [--backend cpu|wasm|webgpu|all] [--adapter NAME] [--weight-dtype f32|f16] [--compute f32|f16] [--quiet]');
  process.exit(2);
}

function fmt(x: number): string {
  return Number.isNaN(x) ? 'NaN' : x.toExponential(2);
}

function printResult(r: CaseResult, quiet: boolean): void {
  if (r.notApplicable) {
    console.log(`N/A  ${r.caseName} [${r.runner}] on ${r.backend}: not run (${r.notApplicable})`);
    return;
  }
  const head = `${r.ok ? 'PASS' : 'FAIL'} ${r.caseName} [${r.runner}] on ${r.backend} (${r.seconds.toFixed(1)} s)`;
  console.log(head);
  if (r.error) console.log(`  error: ${r.error.split('\n').slice(0, 6).join('\n    ')}`);
  for (const p of r.replayed) console.log(`  --   ${p.name}: not compared (replayed as an input): ${p.note}`);
  for (const k of r.checks) {
    if (quiet && k.ok) continue;
    console.log(`  ${k.ok ? 'ok  ' : 'BAD '} ${k.name}: max_abs ${fmt(k.maxAbs)} (tol ${fmt(k.tol.max_abs)}), rel_l2 ${fmt(k.relL2)} (tol ${fmt(k.tol.rel_l2)})` +
      (k.message ? `\n       ${k.message}` : ''));
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const dirs: string[] = [];
  let which = 'cpu';
  let adapter: string | undefined;
  let quiet = false;
  let weightDtype: 'f32' | 'f16' = 'f32';
  let compute: 'f32' | 'f16' = 'f32';
  const precision = (flag: string, v: string | undefined): 'f32' | 'f16' =>
    v === 'f32' || v === 'f16' ? v : usage(`${flag} must be f32 or f16, found '${v ?? ''}'`);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--backend') which = argv[++i] ?? usage('--backend needs a value');
    else if (a.startsWith('--backend=')) which = a.slice(10);
    else if (a === '--adapter') adapter = argv[++i] ?? usage('--adapter needs a value');
    else if (a === '--quiet') quiet = true;
    else if (a === '--weight-dtype') weightDtype = precision(a, argv[++i]);
    else if (a === '--compute') compute = precision(a, argv[++i]);
    else if (a === '--help' || a === '-h') usage();
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else if (existsSync(a) && !statSync(a).isDirectory()) console.log(`# skipping ${a}: a file, not a case folder`);
    else dirs.push(a);
  }
  if (dirs.length === 0) usage('no case folders given');
  const known = backendNames();
  const names: string[] = which === 'all' ? ['cpu', 'wasm', 'webgpu'] : known.includes(which) ? [which] : usage(`--backend must be one of ${known.join(', ')} or all, found '${which}'`);
  let passed = 0, failed = 0, notApplicable = 0;
  for (const name of names) {
    let backend: Backend;
    try {
      backend = await createBackend(name, { adapter, weightDtype, compute });
    } catch (e) {
      console.log(`FAIL backend ${name}: ${e instanceof Error ? e.message : e}`);
      failed += dirs.length;
      continue;
    }
    console.log(`# backend: ${backend.description}`);
    // Shaders compile for minutes on software adapters: progress on stderr instead of silence.
    const stopCompileProgress = watchCompiles(backend, compileProgressPrinter(process.stderr));
    try {
      for (const d of dirs) {
        const r = await runCase(d, backend);
        printResult(r, quiet);
        if (r.notApplicable) notApplicable++;
        else if (r.ok) passed++; else failed++;
      }
    } finally {
      stopCompileProgress();
      backend.destroy();
    }
  }
  console.log(`${passed} passed, ${failed} failed${notApplicable ? `, ${notApplicable} not applicable (not run, not counted as passed)` : ''}`);
  process.exitCode = failed > 0 ? 1 : 0;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
