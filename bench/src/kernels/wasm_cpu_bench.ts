// `node bench/dist/kernels/wasm_cpu_bench.js`: GFLOP/s of the fast CPU backend's GEMM, conv2d and
// attention (packages/kernels/src/wasm) at SD1.5 UNet shapes, next to the float64 CPU reference on the
// same machine, in one run. A benchmark, not a test: prints a table (median of --reps after a warm-up)
// and writes bench/results/wasm-vs-reference-kernels.json.
//
//   --threads 1,2     thread counts of the wasm backend to time (default: 1 and the hardware's)
//   --reps N          timed repetitions per case (default 5)
//   --reference       also time the CPU reference (slow: a few seconds per case)
//   --only gemm|conv|attention

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { availableParallelism } from 'node:os';
import { WasmBackend } from '@cnx/kernels';
import { attentionOp, conv2dOp, CpuBackend, matmulOp, runOp1, type Backend, type Tensor } from '@cnx/tensor';
import { runEnvironment } from '../environment.js';

interface Case {
  family: 'gemm' | 'conv' | 'attention';
  name: string;
  flops: number;
  make(be: Backend): { run(): Tensor; inputs: Tensor[] };
}

function rand(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let a = seed >>> 0;
  for (let i = 0; i < n; i++) {
    a = (a * 1664525 + 1013904223) >>> 0;
    out[i] = a / 2 ** 32 - 0.5;
  }
  return out;
}

function tensor(be: Backend, shape: number[], seed: number): Tensor {
  return be.fromRaw(rand(shape.reduce((p, d) => p * d, 1), seed), shape);
}

/** y = x @ W^T (+ bias): a Linear on B*L tokens. */
function linear(name: string, M: number, N: number, K: number): Case {
  return {
    family: 'gemm', name: `${name}: [${M}x${K}] @ [${N}x${K}]^T`, flops: 2 * M * N * K,
    make(be) {
      const x = tensor(be, [1, M, K], 1), w = tensor(be, [1, N, K], 2), b = tensor(be, [N], 3);
      return { inputs: [x, w, b], run: () => runOp1(matmulOp, [x, w, b], { transB: true }) };
    },
  };
}

function square(n: number): Case {
  return {
    family: 'gemm', name: `square ${n}x${n}x${n}`, flops: 2 * n * n * n,
    make(be) {
      const a = tensor(be, [1, n, n], 4), b = tensor(be, [1, n, n], 5);
      return { inputs: [a, b], run: () => runOp1(matmulOp, [a, b], {}) };
    },
  };
}

function conv(name: string, N: number, C: number, H: number, O: number, k: number): Case {
  const pad = (k - 1) / 2;
  return {
    family: 'conv', name: `${name}: [${N},${C},${H},${H}] * [${O},${C},${k},${k}]`, flops: 2 * N * O * H * H * C * k * k,
    make(be) {
      const x = tensor(be, [N, C, H, H], 6), w = tensor(be, [O, C, k, k], 7), b = tensor(be, [O], 8);
      return { inputs: [x, w, b], run: () => runOp1(conv2dOp, [x, w, b], { stride: [1, 1], padding: [pad, pad, pad, pad], groups: 1 }) };
    },
  };
}

function attention(name: string, B: number, Lq: number, Lk: number, H: number, D: number): Case {
  return {
    family: 'attention', name: `${name}: B${B} Lq${Lq} Lk${Lk} H${H} D${D}`, flops: 4 * B * H * Lq * Lk * D,
    make(be) {
      const q = tensor(be, [B, Lq, H, D], 9), k = tensor(be, [B, Lk, H, D], 10), v = tensor(be, [B, Lk, H, D], 11);
      return { inputs: [q, k, v], run: () => runOp1(attentionOp, [q, k, v], { scale: 1 / Math.sqrt(D) }) };
    },
  };
}

// SD1.5 at 128x128 px (latent 16x16, CFG batch 2) unless named otherwise.
const CASES: Case[] = [
  square(512),
  linear('attn q/k/v/out 320, 128 px', 512, 320, 320),
  linear('ff GEGLU in 320, 128 px', 512, 2560, 320),
  linear('cross-attn k/v 1280 from text', 154, 1280, 768),
  linear('ff in 1280, 128 px (2x2)', 8, 10240, 1280),
  linear('attn 640, 256 px (16x16)', 512, 640, 640),
  conv('resnet conv 320, 128 px', 2, 320, 16, 320, 3),
  conv('resnet conv 640, 128 px', 2, 640, 8, 640, 3),
  conv('resnet conv 1280, 128 px', 2, 1280, 4, 1280, 3),
  conv('resnet conv 1280 at 2x2', 2, 1280, 2, 1280, 3),
  conv('resnet conv 320, 256 px', 2, 320, 32, 320, 3),
  conv('1x1 shortcut 640->320, 256 px', 2, 640, 32, 320, 1),
  attention('self-attn 320, 256 px', 2, 1024, 1024, 8, 40),
  attention('self-attn 320, 128 px', 2, 256, 256, 8, 40),
  attention('cross-attn 320, 256 px', 2, 1024, 77, 8, 40),
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function timeCase(be: Backend, c: Case, reps: number): number {
  const { run, inputs } = c.make(be);
  run().dispose(); // warm-up (JIT tiers, heap growth)
  const ms: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    const y = run();
    ms.push(performance.now() - t0);
    y.dispose();
  }
  for (const t of inputs) t.dispose();
  return median(ms);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { threads: { type: 'string' }, reps: { type: 'string' }, reference: { type: 'boolean' }, only: { type: 'string' } },
  });
  const threads = (values.threads ?? `1,${availableParallelism()}`).split(',').map(Number).filter((t, i, a) => t > 0 && a.indexOf(t) === i);
  const reps = Number(values.reps ?? 5);
  const cases = CASES.filter((c) => !values.only || c.family === values.only);
  const results: Record<string, Record<string, { ms: number; gflops: number }>> = {};
  const columns: string[] = [];
  const record = (col: string, c: Case, ms: number) => {
    (results[c.name] ??= {})[col] = { ms, gflops: c.flops / ms / 1e6 };
  };
  let description = '';
  for (const t of threads) {
    const be = await WasmBackend.create({ threads: t });
    description = be.description;
    const col = `wasm ${t}T`;
    columns.push(col);
    for (const c of cases) {
      record(col, c, timeCase(be, c, reps));
      process.stderr.write(`${col} ${c.name}: ${results[c.name]![col]!.gflops.toFixed(1)} GFLOP/s\n`);
    }
    be.destroy();
  }
  if (values.reference) {
    const cpu = new CpuBackend();
    columns.push('reference');
    for (const c of cases) {
      record('reference', c, timeCase(cpu, c, Math.min(reps, 2)));
      process.stderr.write(`reference ${c.name}: ${results[c.name]!.reference!.gflops.toFixed(2)} GFLOP/s\n`);
    }
  }
  const head = ['case', 'GFLOP', ...columns.map((c) => `${c} GFLOP/s (ms)`)];
  const rows = cases.map((c) => [c.name, (c.flops / 1e9).toFixed(2),
    ...columns.map((col) => { const r = results[c.name]![col]!; return `${r.gflops.toFixed(1)} (${r.ms.toFixed(1)})`; })]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((x, i) => (i === 0 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join('  ');
  console.log(`${description}\n${line(head)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${rows.map(line).join('\n')}`);
  const out = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'wasm-vs-reference-kernels.json'), JSON.stringify({
    environment: runEnvironment(), description, reps, timing: 'median wall ms per call after one warm-up call', results,
  }, null, 2) + '\n');
  console.log(`wrote ${join(out, 'wasm-vs-reference-kernels.json')}`);
}

await main();
