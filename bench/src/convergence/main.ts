// `npm run experiment:convergence` (node bench/dist/convergence/main.js): runs the convergence experiment
// (convergence_experiment.ts) and writes its files (convergence_report.ts) to --out. Progress on stderr.

import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { WasmBackend, createBackend } from '@cnx/kernels';
import { SafetensorsFile } from '@cnx/tensor';
import type { HostWeights } from './base_model.js';
import { runConvergenceExperiment } from './convergence_experiment.js';
import { CONVERGENCE_HELP, ConvergenceUsageError, parseConvergenceOptions } from './convergence_options.js';
import { summaryMarkdown, writeConvergenceOutputs } from './convergence_report.js';

function readBaseWeights(path: string): HostWeights {
  const st = SafetensorsFile.fromBytes(readFileSync(path), path);
  return new Map(st.keys().map((k) => [k, st.readFloat32(k)]));
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const parsed = parseConvergenceOptions(args);
  if (parsed === 'help') {
    process.stdout.write(CONVERGENCE_HELP);
    return;
  }
  const o = parsed;
  const backend = o.backend === 'wasm' ? await WasmBackend.create({ threads: o.threads }) : await createBackend(o.backend);
  const t0 = Date.now();
  const log = (line: string) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(5)} s] ${line}\n`);
  log(`backend ${backend.description}`);
  const c = cpus();
  const artifacts = await runConvergenceExperiment(backend, o, {
    log, command: ['npm run experiment:convergence', ...(args.length ? ['--', ...args] : [])].join(' '),
    ...(o.baseFrom ? { baseWeights: readBaseWeights(o.baseFrom) } : {}),
    cpu: { cpu: c[0]?.model.trim() ?? 'unknown', cores: c.length }, loadavg: () => loadavg(),
  });
  const dir = resolve(o.out);
  const files = writeConvergenceOutputs(dir, artifacts);
  process.stdout.write(summaryMarkdown(artifacts.results));
  log(`wrote ${files.join(', ')} to ${dir}`);
}

main().catch((e: unknown) => {
  if (e instanceof ConvergenceUsageError) {
    process.stderr.write(`experiment:convergence: ${e.message}\nsee npm run experiment:convergence -- --help\n`);
    process.exit(2);
  }
  process.stderr.write(`experiment:convergence failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
