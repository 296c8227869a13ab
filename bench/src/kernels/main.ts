// `npm run bench:kernels`: time, counted FLOPs and bytes, achieved GFLOP/s and GB/s for each kernel
// family at the SD1.5 512x512 shapes (--full) or small shapes (--small, the default on software
// adapters and on the CPU backend for the non-GEMM families), per backend and adapter. On WebGPU the
// matmul cases also run the naive one-thread-per-output WGSL kernel (packages/kernels/src/matmul_naive.ts)
// and a gpu.js kernel of the same product on the same adapter, reported as ratios to ours. Results go to
// bench/results/kernels-<backend>.json. Timing uses benchmark.js (deferred: each sample ends when the
// backend has drained its queue).

import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createBackend, matmulNaiveKernel, WebgpuBackend } from '@cnx/kernels';
import type { Backend, Tensor } from '@cnx/tensor';
import { runEnvironment } from '../environment.js';
import { resolveOutFolder } from '../run_folder.js';
import { Progress } from '../progress.js';
import { gpuJsMatmul } from './gpujs_matmul.js';
import { fullCases, smallCases, type KernelCase, type KernelFamily } from './kernel_cases.js';

const require = createRequire(import.meta.url);

interface Deferred { resolve(): void }
interface BenchmarkInstance {
  run(): void;
  error?: unknown;
  stats: { mean: number; rme: number; sample: number[] };
}
type BenchmarkCtor = new (name: string, opts: Record<string, unknown>) => BenchmarkInstance;
const Benchmark = require('benchmark') as BenchmarkCtor;

const HELP = `Usage: npm run bench:kernels -- [options]   (or: node bench/dist/kernels/main.js [options])

  --backend cpu|wasm|webgpu|all
                             (default all: webgpu if an adapter exists, the fast CPU backend wasm, cpu)
  --adapter gpu|swiftshader|lavapipe|llvmpipe
  --full | --small           SD1.5 512x512 shapes, or small shapes (default: small on software adapters
                             and for the CPU's non-GEMM families, full on a hardware GPU)
  --families a,b,...         subset of matmul, conv2d, attention, group_norm, layer_norm, softmax,
                             cross_norm, geglu, elementwise, upsample (CPU default: matmul,conv2d at
                             the SD1.5 shapes up to 20 GFLOP per call)
  --max-time S               seconds benchmark.js may spend sampling one case (default 1)
  --out DIR                  results folder (default: a new bench/runs/<date>-kernels/; bench/results is the
                             committed one)
`;

interface Timing { meanMs: number; rmePct: number; samples: number }

/** benchmark.js, deferred: one call of `once` then a queue drain per sample. */
function timeCase(name: string, once: () => void, sync: () => Promise<void>, maxTime: number): Promise<Timing> {
  return new Promise((resolveT, reject) => {
    const b = new Benchmark(name, {
      defer: true, minSamples: 3, maxTime, initCount: 1, delay: 0,
      fn(d: Deferred) { once(); sync().then(() => d.resolve(), reject); },
      onComplete(this: BenchmarkInstance) {
        if (this.error) reject(this.error instanceof Error ? this.error : new Error(String(this.error)));
        else resolveT({ meanMs: this.stats.mean * 1000, rmePct: this.stats.rme, samples: this.stats.sample.length });
      },
    });
    b.run();
  });
}

interface CaseResult {
  family: KernelFamily;
  name: string;
  where: string;
  flops: number;
  bytes: number;
  timing: Timing;
  gflops: number;
  gbps: number;
  /** Matmul cases on WebGPU: the naive WGSL kernel and gpu.js on the same product, time / ours. */
  naive?: { timing: Timing; gflops: number; slowdownVsOurs: number };
  gpujs?: { timing: Timing; gflops: number; slowdownVsOurs: number; adapter: string; check: string } | { unavailable: string };
}

async function runBackend(backend: Backend, cases: KernelCase[], maxTime: number, progress: Progress): Promise<CaseResult[]> {
  const out: CaseResult[] = [];
  const sync = () => backend.sync();
  for (const [i, c] of cases.entries()) {
    progress.update(`${backend.name}: [${i + 1}/${cases.length}] ${c.family} ${c.name}`);
    const s = c.setup(backend);
    try {
      const once = () => { s.run().dispose(); };
      once(); // compile pipelines / JIT
      await sync();
      const timing = await timeCase(c.name, once, sync, maxTime);
      const r: CaseResult = {
        family: c.family, name: c.name, where: c.where, flops: c.flops, bytes: c.bytes, timing,
        gflops: c.flops / (timing.meanMs * 1e6), gbps: c.bytes / (timing.meanMs * 1e6),
      };
      if (c.matmul && backend instanceof WebgpuBackend) await compareMatmul(backend, c, r, maxTime, progress);
      out.push(r);
      progress.log(`${backend.name} ${c.family.padEnd(11)} ${c.name.padEnd(34)} ${timing.meanMs.toFixed(3).padStart(10)} ms ` +
        `${r.gflops.toFixed(2).padStart(9)} GFLOP/s ${r.gbps.toFixed(2).padStart(8)} GB/s` +
        (r.naive ? `  naive x${r.naive.slowdownVsOurs.toFixed(2)}` : '') +
        (r.gpujs && 'timing' in r.gpujs ? `  gpu.js x${r.gpujs.slowdownVsOurs.toFixed(2)}` : ''));
    } finally {
      s.dispose();
    }
  }
  return out;
}

/** The same product through the naive WGSL kernel and through gpu.js. */
async function compareMatmul(be: WebgpuBackend, c: KernelCase, r: CaseResult, maxTime: number, progress: Progress): Promise<void> {
  const { M, N, K } = c.matmul!;
  const a = be.fromRaw(new Float32Array(M * K).fill(0.5), [1, M, K]);
  const w = be.fromRaw(new Float32Array(N * K).fill(0.25), [1, N, K]);
  const bias = be.fromRaw(new Float32Array(N).fill(1), [N]);
  try {
    progress.update(`webgpu: ${c.name}: naive WGSL kernel`);
    const once = () => { (matmulNaiveKernel.matmul(be, a, w, { transB: true, bias }) as Tensor).dispose(); };
    once();
    await be.sync();
    const t = await timeCase(`${c.name} naive`, once, () => be.sync(), maxTime);
    r.naive = { timing: t, gflops: c.flops / (t.meanMs * 1e6), slowdownVsOurs: t.meanMs / r.timing.meanMs };
  } finally {
    [a, w, bias].forEach((x) => x.dispose());
  }
  progress.update(`webgpu: ${c.name}: gpu.js`);
  const g = await gpuJsMatmul(be.adapterInfo, M, N, K);
  if (typeof g === 'string') {
    r.gpujs = { unavailable: g };
    return;
  }
  try {
    await g.run(1);
    const t = await timeCase(`${c.name} gpu.js`, () => { pendingRun = g.run(1); }, () => pendingRun, maxTime);
    // gpu.js's inputs: A[y][x] = 0.5 sin(0.37 x + 0.11 y + 1), B[y][x] = 0.5 sin(0.37 x + 0.11 y + 2).
    const got = await g.firstRow();
    const ref = got.map((_, n) => {
      let s = 0;
      for (let i = 0; i < K; i++) s += 0.5 * Math.sin(0.37 * i + 1) * 0.5 * Math.sin(0.37 * n + 0.11 * i + 2);
      return s;
    });
    const err = Math.max(...got.map((v, i) => Math.abs(v - ref[i]!)));
    r.gpujs = {
      timing: t, gflops: (2 * M * N * K) / (t.meanMs * 1e6), slowdownVsOurs: t.meanMs / r.timing.meanMs, adapter: g.adapter,
      check: `C[0][0..3] max |err| ${err.toExponential(2)} vs a float64 reference`,
    };
  } finally {
    g.destroy();
  }
}
let pendingRun: Promise<void> = Promise.resolve();

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      backend: { type: 'string' }, adapter: { type: 'string' }, full: { type: 'boolean' }, small: { type: 'boolean' },
      families: { type: 'string' }, 'max-time': { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(HELP); return; }
  if (values.full && values.small) throw new Error('--full and --small exclude each other');
  const which = values.backend ?? 'all';
  if (!['cpu', 'wasm', 'webgpu', 'all'].includes(which)) throw new Error(`--backend: expected cpu, wasm, webgpu or all, found '${which}'`);
  const maxTime = Number(values['max-time'] ?? '1');
  if (!(maxTime > 0)) throw new Error(`--max-time: expected seconds > 0, found '${values['max-time']}'`);
  const families = values.families?.split(',').map((s) => s.trim()) as KernelFamily[] | undefined;
  const progress = new Progress();
  const outDir = resolveOutFolder(values.out, 'kernels');
  mkdirSync(outDir, { recursive: true });

  const names: ('cpu' | 'wasm' | 'webgpu')[] = which === 'all' ? ['webgpu', 'wasm', 'cpu'] : [which as 'cpu' | 'wasm' | 'webgpu'];
  for (const name of names) {
    let backend: Backend;
    try {
      backend = await createBackend(name, values.adapter !== undefined ? { adapter: values.adapter } : {});
    } catch (e) {
      if (which === 'all') { progress.log(`skipping ${name}: ${e instanceof Error ? e.message : String(e)}`); continue; }
      throw e;
    }
    try {
      const software = backend instanceof WebgpuBackend && (backend.adapterInfo.isFallbackAdapter || backend.adapterInfo.kind !== 'gpu');
      // CPU default: the GEMM-based families at the real shapes (the naive CPU attention at 4096 tokens
      // takes minutes); WebGPU default: real shapes on a hardware adapter, small ones on a software one.
      const cpuDefault = name === 'cpu' && values.full === undefined && values.small === undefined;
      const full = values.full ?? (values.small ? false : cpuDefault || (name === 'webgpu' && !software));
      let cases = full ? fullCases() : smallCases();
      const fam = families ?? (name === 'cpu' ? ['matmul', 'conv2d'] : undefined);
      if (fam) cases = cases.filter((c) => fam.includes(c.family));
      // A default CPU run skips the products above 20 GFLOP (the control module's 512x512 conv takes
      // over a minute per call there); --full runs them.
      if (cpuDefault) cases = cases.filter((c) => c.flops <= 20e9);
      progress.log(`${name}: ${backend.description.split('\n')[0]} (${full ? 'SD1.5 512x512 shapes' : 'small shapes'}, ${cases.length} cases)`);
      const results = await runBackend(backend, cases, maxTime, progress);
      const record = {
        tool: 'controlnext-ts bench:kernels',
        environment: runEnvironment(),
        backend: name,
        description: backend.description,
        adapter: backend instanceof WebgpuBackend ? backend.adapterInfo : undefined,
        shapes: full ? 'full (SD1.5 512x512)' : 'small',
        cpuThreads: name === 'cpu' ? (process.env.CNX_CPU_THREADS ?? 'default (2 where available)') : undefined,
        timing: 'benchmark.js deferred samples; each sample = one op + backend.sync()',
        results,
      };
      const file = join(outDir, `kernels-${name}.json`);
      writeFileSync(file, JSON.stringify(record, null, 2) + '\n');
      progress.log(`wrote ${file}`);
    } finally {
      backend.destroy();
    }
  }
  progress.done();
}

main().then(() => process.exit(0), (e: unknown) => {
  process.stderr.write(`\nbench:kernels: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
