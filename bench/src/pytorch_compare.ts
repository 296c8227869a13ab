// `node bench/dist/pytorch_compare.js`: the fast CPU backend against PyTorch's CPU UNet step, on the same
// machine, thread count and step, measured in one run (issue 16's comparison). Not part of CI: it needs
// a PyTorch (bench/pytorch/README in bench/README.md: a python3.11 venv with the local torch wheel).
//
// For each resolution: bench/pytorch/unet_step.py times PyTorch's SD1.5 UNet CFG step (1 warm-up +
// --steps, median), then this process times ours on --backend (default wasm) the same way, both on
// --threads threads. Besides wall time, each side reports its process CPU time per step (all threads):
// on a machine shared with other work the wall-time ratio depends on how each runtime copes with lost
// time slices (OpenMP's barriers suffer most), while the CPU-time ratio is the work each needs. Prints
// the table and writes bench/results/pytorch-cpu-<backend>-<threads>t-<resolutions>.json.
//
//   --resolution 128,256   pixel sizes (default 128,256)
//   --threads N            threads for both (default 2)
//   --steps N              timed steps each (default 3)
//   --backend wasm|cpu     ours (default wasm; cpu is the float64 reference, slow)
//   --python PATH          interpreter (default bench/pytorch/.venv/bin/python, else python3)
//   --out DIR              where the JSON goes (default bench/results)
// Bad usage (an unknown flag, a malformed value) prints what was expected and exits with status 2.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CpuBackend, type Backend } from '@cnx/tensor';
import { WasmBackend } from '@cnx/kernels';
import { runEnvironment } from './environment.js';
import { buildRunner, buildUnet, disposeInputs, makeInputs } from './sd15_step.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..', '..');

interface TorchResult {
  implementation: string; torch: string; threads: number; cpu_capability: string; params: number;
  stepSeconds: number[]; medianSeconds: number; cpuSeconds: number[]; medianCpuSeconds: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function runTorch(python: string, resolution: number, threads: number, steps: number): TorchResult {
  const r = spawnSync(python, [join(ROOT, 'bench', 'pytorch', 'unet_step.py'), '--resolution', String(resolution),
    '--threads', String(threads), '--steps', String(steps)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`${python} bench/pytorch/unet_step.py failed (exit ${r.status}); is torch installed? See bench/README.md`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as TorchResult;
}

class UsageError extends Error {}

function positiveInt(flag: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag}: expected a positive integer, found '${v}'`);
  return n;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        resolution: { type: 'string' }, threads: { type: 'string' }, steps: { type: 'string' }, backend: { type: 'string' },
        python: { type: 'string' }, out: { type: 'string' },
      },
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message}; flags: --resolution, --threads, --steps, --backend, --python, --out`);
  }
  const resolutions = (values.resolution ?? '128,256').split(',').map(Number);
  if (resolutions.some((r) => !(r > 0 && r % 64 === 0))) throw new UsageError(`--resolution: expected multiples of 64 pixels, comma-separated, found '${values.resolution}'`);
  const threads = positiveInt('--threads', values.threads, 2), steps = positiveInt('--steps', values.steps, 3);
  const which = values.backend ?? 'wasm';
  if (which !== 'wasm' && which !== 'cpu') throw new UsageError(`--backend: expected wasm or cpu, found '${which}'`);
  const venv = join(ROOT, 'bench', 'pytorch', '.venv', 'bin', 'python');
  const python = values.python ?? (existsSync(venv) ? venv : 'python3');

  const backend: Backend = which === 'cpu' ? new CpuBackend() : await WasmBackend.create({ threads });
  if (which === 'cpu') process.env.CNX_CPU_THREADS = String(threads);
  process.stderr.write(`ours: ${backend.description}\nbuilding the SD1.5 UNet (random weights)\n`);
  const unet = buildUnet(backend, 0);
  const rows: Record<string, unknown>[] = [];
  for (const res of resolutions) {
    process.stderr.write(`PyTorch, ${res}x${res}, ${threads} threads\n`);
    const torch = runTorch(python, res, threads, steps);
    const g = { resolution: [res, res] as const, images: 1 };
    const inputs = makeInputs(backend, g, 0);
    const runner = await buildRunner('base', backend, unet, inputs, g, 0);
    const ours: number[] = [], oursCpu: number[] = [];
    for (let i = 0; i < steps + 1; i++) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      runner.step(500 - i);
      await backend.sync();
      const s = (performance.now() - t0) / 1000;
      const c = process.cpuUsage(c0);
      process.stderr.write(`ours step ${i + 1}/${steps + 1}: ${s.toFixed(3)} s${i === 0 ? ' (warm-up)' : ''}\n`);
      if (i > 0) { ours.push(s); oursCpu.push((c.user + c.system) / 1e6); }
    }
    runner.dispose();
    disposeInputs(inputs);
    const m = median(ours), mc = median(oursCpu);
    rows.push({
      resolution: res, torch, oursSeconds: ours, oursMedianSeconds: m, ratio: m / torch.medianSeconds,
      oursCpuSeconds: oursCpu, oursMedianCpuSeconds: mc, cpuRatio: mc / torch.medianCpuSeconds, loadAverage: loadavg(),
    });
  }
  const env = runEnvironment();
  console.log(`SD1.5 UNet step with CFG (batch 2), random weights, ${threads} threads each; ours: ${backend.description}`);
  const first = rows[0]!.torch as TorchResult;
  console.log(`PyTorch ${first.torch} (${first.implementation}, CPU capability ${first.cpu_capability})`);
  console.log('wall: median seconds per step; CPU: median process CPU seconds per step (all threads), the work each needs');
  console.log('resolution  PyTorch wall  ours wall  ours/PyTorch  PyTorch CPU  ours CPU  ours/PyTorch CPU  load average');
  for (const r of rows) {
    const t = r.torch as TorchResult;
    const f = (x: unknown, w: number, d = 3) => (x as number).toFixed(d).padStart(w);
    console.log(`${String(r.resolution).padStart(10)}  ${f(t.medianSeconds, 12)}  ${f(r.oursMedianSeconds, 9)}  ${f(r.ratio, 12, 2)}  ` +
      `${f(t.medianCpuSeconds, 11)}  ${f(r.oursMedianCpuSeconds, 8)}  ${f(r.cpuRatio, 16, 2)}  ${(r.loadAverage as number[]).map((x) => x.toFixed(1)).join(' ')}`);
  }
  const out = values.out !== undefined ? resolve(values.out) : join(ROOT, 'bench', 'results');
  mkdirSync(out, { recursive: true });
  const file = join(out, `pytorch-cpu-${which}-${threads}t-${resolutions.join('-')}.json`);
  writeFileSync(file, JSON.stringify({ environment: env, backend: backend.description, threads, steps, rows }, null, 2) + '\n');
  console.log(`wrote ${file}`);
  unet.dispose?.();
  backend.destroy();
}

await main().catch((e: unknown) => {
  if (!(e instanceof UsageError)) throw e;
  console.error(`pytorch_compare: ${e.message}`);
  process.exit(2);
});
