// The fast CPU backend's runtime: one WebAssembly.Memory (shared when threads are available), the
// kernel module compiled for this engine's features, the heap over that memory, and the thread pool.
// `launch` writes a kernel's argument struct into the argument slot and runs its tasks.
//
// Memory layout: [0, 256) the pool's control block, [256, 1024) the argument slot, [1024, ...) the
// heap (tensors and per-op scratch). A wasm32 memory is at most 4 GiB (65536 pages); where the engine
// cannot reserve that much for a shared memory, smaller maxima are tried.

import { detectWasmFeatures, type WasmFeatures } from './features.js';
import { WasmHeap } from './heap.js';
import { buildKernelModule } from './kernel_module.js';
import { createThreadPool, defaultThreadCount, type ThreadPool } from './thread_pool.js';

export const ARGS_BASE = 256;
export const ARGS_WORDS = 192;
export const HEAP_BASE = 1024;
const PAGE = 65536;

export interface WasmRuntimeOptions {
  /** Threads (the caller included); default: CNX_WASM_THREADS or the hardware's parallelism. */
  threads?: number;
  /** Use relaxed-SIMD FMA when the engine has it (default true). */
  fma?: boolean;
  /** Cap on the memory in bytes (default and maximum 4 GiB). */
  maxBytes?: number;
  /**
   * 3x3 stride-1 convolutions by Winograd F(2x2, 3x3) (wasm_ops.ts, winograd_kernels.ts): 'auto' (default)
   * where the planner expects it to pay, 'always' wherever it applies (tests), 'never' (im2col + GEMM
   * only: the before/after comparison). Default: CNX_WASM_WINOGRAD, else 'auto'.
   */
  winograd?: WinogradMode;
}

export type WinogradMode = 'auto' | 'always' | 'never';

export class WasmRuntime {
  private readonly kernelIndex = new Map<string, number>();
  /** Launches per kernel name since creation: which algorithm ran (tests) and how often (profiles). */
  readonly launchCounts = new Map<string, number>();

  private constructor(
    readonly features: WasmFeatures,
    readonly memory: WebAssembly.Memory,
    readonly heap: WasmHeap,
    readonly pool: ThreadPool,
    readonly fma: boolean,
    readonly winograd: WinogradMode,
    kernels: string[],
  ) {
    kernels.forEach((k, i) => this.kernelIndex.set(k, i));
  }

  static async create(opts: WasmRuntimeOptions = {}): Promise<WasmRuntime> {
    const features = detectWasmFeatures();
    if (!features.simd) throw new Error('wasm backend: this JavaScript engine lacks WebAssembly 128-bit SIMD');
    const threads = Math.max(1, opts.threads ?? defaultThreadCount());
    const shared = features.threads && threads > 1;
    const fma = (opts.fma ?? true) && features.relaxedSimd;
    const capPages = Math.min(65536, Math.floor((opts.maxBytes ?? 2 ** 32) / PAGE));
    let memory: WebAssembly.Memory | undefined;
    let maxPages = capPages;
    for (; maxPages >= 256 && !memory; maxPages = Math.floor(maxPages / 2)) {
      try {
        memory = new WebAssembly.Memory({ initial: 64, maximum: maxPages, shared } as WebAssembly.MemoryDescriptor);
        break;
      } catch {
        memory = undefined;
      }
    }
    if (!memory) throw new Error('wasm backend: could not create a WebAssembly.Memory');
    const { bytes, kernels } = buildKernelModule({ fma, atomics: features.threads, shared, maximumPages: 65536 });
    const module = await WebAssembly.compile(bytes);
    const instance = await WebAssembly.instantiate(module, { env: { memory } });
    const pool = await createThreadPool({ module, memory, kernels, spin: 2000 }, instance, shared ? threads : 1);
    // CNX_WASM_WINOGRAD (Node) picks the mode for whole runs, as CNX_WASM_THREADS does the threads: the
    // benches' before/after comparison without a code change
    const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.CNX_WASM_WINOGRAD;
    const winograd = (opts.winograd ?? (env || 'auto')) as WinogradMode;
    if (!['auto', 'always', 'never'].includes(winograd)) throw new Error(`wasm backend: winograd must be 'auto', 'always' or 'never', got ${String(winograd)}`);
    return new WasmRuntime(features, memory, new WasmHeap(memory, HEAP_BASE, maxPages * PAGE), pool, fma, winograd, kernels);
  }

  get threads(): number { return this.pool.threads; }

  get description(): string {
    return `WebAssembly SIMD${this.fma ? ' + relaxed FMA' : ''}, ${this.pool.description}, f32`;
  }

  /** A Float32Array view of `n` floats at byte address ptr (valid until the memory grows, if unshared). */
  f32(ptr: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, n);
  }
  u8(ptr: number, n: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr, n);
  }

  /**
   * Run `kernel(args, t)` for t < tasks with the argument struct `fields` (numbers written as i32,
   * except indices listed in `floatFields`, written as f32). `serial`: run on the calling thread only
   * (small work, where waking the pool costs more than it saves).
   */
  launch(kernel: string, fields: readonly number[], tasks: number, floatFields: readonly number[] = [], serial = false): void {
    const idx = this.kernelIndex.get(kernel);
    if (idx === undefined) throw new Error(`wasm backend: no kernel ${kernel}`);
    if (fields.length > ARGS_WORDS) throw new Error(`wasm backend: ${kernel} has too many arguments`);
    const iv = new Int32Array(this.memory.buffer, ARGS_BASE, fields.length);
    const fv = new Float32Array(this.memory.buffer, ARGS_BASE, fields.length);
    for (let i = 0; i < fields.length; i++) {
      if (floatFields.includes(i)) fv[i] = fields[i]!;
      else iv[i] = fields[i]!;
    }
    this.launchCounts.set(kernel, (this.launchCounts.get(kernel) ?? 0) + 1);
    if (tasks > 0) this.pool.run(idx, ARGS_BASE, tasks, serial);
  }

  destroy(): void {
    this.pool.destroy();
  }
}
