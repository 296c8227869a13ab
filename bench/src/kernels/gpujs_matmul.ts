// The same matrix product written as a gpu.js kernel, run by gpu.js's own WebGPU backend (gpu.js 2.24
// compiles kernels to WGSL compute shaders over storage buffers; it talks to `navigator.gpu`, which in
// Node we point at a Dawn instance from the `webgpu` package built with the same backend options as
// ours, so it gets the same adapter; the adapter it got is reported). Inputs and output stay on the GPU
// (pipeline: true), so the timing is the kernel, not uploads or read-backs.

import { createRequire } from 'node:module';
import type { AdapterReport } from '@cnx/kernels';

const require = createRequire(import.meta.url);

interface GpuJsKernel {
  (...args: unknown[]): Promise<unknown>;
}
interface GpuJsInstance {
  createKernel(fn: (...args: never[]) => number, settings: Record<string, unknown>): GpuJsKernel;
  destroy(): void;
}
interface GpuJsModule {
  GPU: { new (settings: { mode: string }): GpuJsInstance; isWebGPUAvailable(): Promise<boolean> };
}
interface BufferHandle { toArray(): Promise<unknown> }

export interface GpuJsMatmul {
  adapter: string;
  /** Run C = A @ B (A [M, K], B [K, N], both GPU-resident) `reps` times and wait for the GPU. */
  run(reps: number): Promise<void>;
  /** C[0][0..3] for a sanity check against our kernel. */
  firstRow(): Promise<number[]>;
  destroy(): void;
}

/** Dawn options that reach the same adapter as ours (webgpu/device.ts's order). */
function dawnOptions(report: AdapterReport): string[] | undefined {
  switch (report.kind) {
    case 'gpu': return [];
    case 'swiftshader': return ['backend=vulkan'];
    default: return undefined; // llvmpipe needs featureLevel 'compatibility', which gpu.js does not request
  }
}

interface GpuJsSession { gpu: GPU; mod: GpuJsModule; g: GpuJsInstance; adapter: GPUAdapter; device: GPUDevice }
/**
 * One Dawn instance and one gpu.js GPU for the whole process, kept referenced: creating and dropping
 * Dawn instances per case crashed the process (a garbage-collected instance; see kernels/webgpu/device.ts).
 */
let session: GpuJsSession | string | undefined;

async function openSession(report: AdapterReport): Promise<GpuJsSession | string> {
  const opts = dawnOptions(report);
  if (!opts) return `gpu.js cannot use the ${report.kind} adapter (it requests a core-feature-level adapter)`;
  const webgpu = require('webgpu') as { create(o: string[]): GPU; globals: Record<string, unknown> };
  Object.assign(globalThis, webgpu.globals);
  const gpu = webgpu.create(opts);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  let mod: GpuJsModule;
  try {
    mod = require('gpu.js') as GpuJsModule;
  } catch (e) {
    return `gpu.js does not load: ${e instanceof Error ? e.message : String(e)}`;
  }
  if (!(await mod.GPU.isWebGPUAvailable())) return 'gpu.js: no WebGPU adapter through navigator.gpu';
  const ctxMod = require('gpu.js/src/backend/web-gpu/context.js') as { WebGPUContext: { acquire(): Promise<{ adapter: GPUAdapter; device: GPUDevice }> } };
  const { adapter, device } = await ctxMod.WebGPUContext.acquire();
  return { gpu, mod, g: new mod.GPU({ mode: 'webgpu' }), adapter, device };
}

/** Builds the gpu.js matmul, or returns why it cannot run here. */
export async function gpuJsMatmul(report: AdapterReport, M: number, N: number, K: number): Promise<GpuJsMatmul | string> {
  session ??= await openSession(report);
  if (typeof session === 'string') return session;
  const { g, adapter, device } = session;
  // gpu.js kernels are JS functions it parses; `this.thread`/`this.constants` are its kernel context.
  const fill = (rows: number, cols: number, seed: number) => g.createKernel(function (this: { thread: { x: number; y: number }; constants: { s: number } }) {
    return Math.sin(this.thread.x * 0.37 + this.thread.y * 0.11 + this.constants.s) * 0.5;
  } as unknown as (...args: never[]) => number, { output: [cols, rows], constants: { s: seed }, pipeline: true });
  const A = await fill(M, K, 1)() as BufferHandle;
  const B = await fill(K, N, 2)() as BufferHandle;
  const mm = g.createKernel(function (this: { thread: { x: number; y: number }; constants: { K: number } }, a: number[][], b: number[][]) {
    let s = 0;
    for (let i = 0; i < this.constants.K; i++) s += a[this.thread.y]![i]! * b[i]![this.thread.x]!;
    return s;
  } as unknown as (...args: never[]) => number, { output: [N, M], constants: { K }, pipeline: true });
  let last: BufferHandle | undefined;
  const info = adapter.info;
  return {
    adapter: `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.replace(/\s+/g, ' ').trim(),
    async run(reps) {
      const pending: Promise<unknown>[] = [];
      for (let r = 0; r < reps; r++) pending.push(mm(A, B));
      last = (await Promise.all(pending))[reps - 1] as BufferHandle;
      await device.queue.onSubmittedWorkDone();
    },
    async firstRow() {
      if (!last) last = await mm(A, B) as BufferHandle;
      const rows = await last.toArray() as Float32Array[];
      return Array.from(rows[0]!.subarray(0, 4));
    },
    destroy() { /* kernels are cached by gpu.js; the session lives until exit */ },
  };
}
