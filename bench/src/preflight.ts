// Checks, before anything is allocated, that the chosen backend and resolution can run, and says which
// limit stops it otherwise: the largest tensor against the WebGPU adapter's maxStorageBufferBindingSize
// and maxBufferSize, the weights against host memory, and (CPU) the expected run time.

import { freemem, totalmem } from 'node:os';
import { ops, type Backend } from '@cnx/tensor';
import type { BenchModel } from './bench_model.js';
import { stepCost, type Geometry, type StepCost } from './variants.js';

export interface PreflightReport {
  largestTensorBytes: number;
  largestTensorName: string;
  /** Weight bytes of every model held at once (UNet + the largest control network), in the backend's weight dtype. */
  weightBytes: number;
  /** Measured matmul GFLOP/s of this backend on a small product (CPU only). */
  calibrationGflops?: number;
  /** Estimated seconds for the whole run (CPU only). */
  estimatedSeconds?: number;
  warnings: string[];
}

const GiB = 2 ** 30;
const fmt = (b: number) => `${(b / GiB).toFixed(2)} GiB`;

/** GPU-like limits, where the backend has them (WebgpuBackend.limits). */
function backendLimits(backend: Backend): { maxStorageBufferBindingSize: number; maxBufferSize: number } | undefined {
  const l = (backend as unknown as { limits?: { maxStorageBufferBindingSize?: number; maxBufferSize?: number } }).limits;
  if (!l || typeof l.maxStorageBufferBindingSize !== 'number' || typeof l.maxBufferSize !== 'number') return undefined;
  return { maxStorageBufferBindingSize: l.maxStorageBufferBindingSize, maxBufferSize: l.maxBufferSize };
}

/**
 * GFLOP/s of a 384x384x384 matmul on `backend` (best of 3, the first also warms the JIT); the UNet
 * step reaches about half of it on the CPU (norms, attention and im2col are not GEMMs).
 */
async function calibrate(backend: Backend): Promise<number> {
  const n = 384;
  const a = backend.fromRaw(new Float32Array(n * n).fill(0.5), [n, n]);
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const c = ops.matmul(a, a);
    await backend.sync();
    best = Math.min(best, performance.now() - t0);
    c.dispose();
  }
  a.dispose();
  return (2 * n ** 3) / (best * 1e6);
}

export async function preflight(
  backend: Backend, g: Geometry, ids: readonly string[], steps: number, warmup: number, force: boolean,
  model: Pick<BenchModel, 'stepCost' | 'unetParams' | 'title'> = { stepCost: (id, geo) => stepCost(id as Parameters<typeof stepCost>[0], geo), unetParams: 859_520_964, title: 'SD1.5' },
): Promise<PreflightReport> {
  // f16 weight storage keeps (nearly) every parameter in 2 bytes; biases stay f32 (~0.1 % of them).
  const bytesPerWeight = backend.weightDtype === 'f16' ? 2 : 4;
  const costs: StepCost[] = ids.map((id) => model.stepCost(id, g));
  const largest = costs.reduce((a, b) => (b.largestTensorBytes > a.largestTensorBytes ? b : a));
  const unetParams = model.unetParams; // checked against the config in bench/test/flops.test.ts
  const weightBytes = bytesPerWeight * (unetParams + Math.max(0, ...costs.map((c) => c.addedParams)));
  const warnings: string[] = [];
  const res = `${g.resolution[0]}x${g.resolution[1]} with ${2 * g.images} samples`;

  const limits = backendLimits(backend);
  if (limits) {
    if (largest.largestTensorBytes > limits.maxStorageBufferBindingSize) {
      throw new Error(`bench: ${res} needs a ${fmt(largest.largestTensorBytes)} tensor (${largest.largestTensorName}), above this adapter's ` +
        `maxStorageBufferBindingSize of ${fmt(limits.maxStorageBufferBindingSize)}; use a smaller --resolution or --batch, or another --adapter`);
    }
    if (largest.largestTensorBytes > limits.maxBufferSize) {
      throw new Error(`bench: ${res} needs a ${fmt(largest.largestTensorBytes)} tensor (${largest.largestTensorName}), above this adapter's ` +
        `maxBufferSize of ${fmt(limits.maxBufferSize)}; use a smaller --resolution or --batch`);
    }
  }
  // CPU: weights and activations are host memory. WebGPU: weights are uploaded from host buffers.
  const hostNeed = backend.name !== 'webgpu' ? weightBytes * 1.15 : (4 * 1.3e8);
  if (hostNeed > totalmem()) {
    throw new Error(`bench: the models need about ${fmt(hostNeed)} of host memory (${bytesPerWeight === 2 ? 'f16' : 'f32'} ${model.title} UNet${ids.includes('controlnet') ? ' + ControlNet' : ''}), ` +
      `this machine has ${fmt(totalmem())}; drop --variants controlnet or use a machine with more memory`);
  }
  if (hostNeed > freemem()) warnings.push(`only ${fmt(freemem())} of host memory is free, the models need about ${fmt(hostNeed)}`);

  const report: PreflightReport = { largestTensorBytes: largest.largestTensorBytes, largestTensorName: largest.largestTensorName, weightBytes, warnings };
  if (backend.name !== 'webgpu') {
    const gflops = await calibrate(backend);
    const totalFlops = costs.reduce((s, c) => s + (c.stepFlops + c.prefixFlops) * (steps + warmup), 0);
    report.calibrationGflops = gflops;
    report.estimatedSeconds = totalFlops / (0.5 * gflops * 1e9);
    const perConfig = report.estimatedSeconds / costs.length;
    if (perConfig > 15 * 60 && !force) {
      throw new Error(`bench: on the CPU backend (${gflops.toFixed(2)} GFLOP/s measured) ${res} would take about ` +
        `${(report.estimatedSeconds / 60).toFixed(0)} minutes (${(perConfig / 60).toFixed(0)} per configuration); use --resolution 64 or 128, ` +
        `--backend webgpu, fewer --steps, or --force`);
    }
  }
  return report;
}
