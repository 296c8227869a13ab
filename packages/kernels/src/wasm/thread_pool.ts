// The threads that run the fast CPU kernels. Every thread (the caller plus the workers) instantiates
// the same compiled module on the same shared WebAssembly.Memory; a launch names an exported kernel
// `(args, task)` and a task count, and the threads claim task indices until none are left (dynamic
// scheduling: a thread slowed by another process takes fewer tasks). The caller works too, then waits
// until every claimed task has completed (not for every worker to wake up: a worker that the OS has
// not scheduled yet costs nothing), so a launch is synchronous, as the backend's ops are.
//
// Claiming: a 64-bit word holds (launch generation << 32 | next task index); a thread reads it, reads
// the launch's fields, and claims with compare-exchange. A claim succeeds only while the generation is
// unchanged, and the caller rewrites the fields only after every task of the generation completed. The
// caller also publishes the new generation in `gen` BEFORE it rewrites the fields, and a claimer checks
// `gen` after reading them: otherwise a thread that read the old claim word (all tasks taken) and then,
// after being descheduled, the NEW launch's task count would pass the index check, and its
// compare-exchange would still succeed on the old word (the caller stores the new claim word last), so
// it would run a task of the new launch that another thread runs too and count an extra completion
// (the caller could then return while a task still runs; per-thread scratch slots, as attention and the
// fused Winograd GEMM use, would be shared).
//
// Control block (words at CONTROL_BASE in the shared memory): see CTRL. Workers sleep in
// Atomics.wait on `seq` after a short spin (consecutive ops arrive back to back; a futex wake-up costs
// tens of microseconds). Node: node:worker_threads, looked up through process.getBuiltinModule so no
// `node:` import is reachable from the browser entry. Browsers: module Web Workers, where
// SharedArrayBuffer is usable (cross-origin isolated pages); the page's main thread may not block in
// Atomics.wait, so there the caller spins on `done`. Without shared memory: no workers, every task runs
// on the calling thread.

import type * as WorkerThreads from 'node:worker_threads';

/** Byte address of the control block in the shared memory (the heap starts above CONTROL_BYTES). */
export const CONTROL_BASE = 0;
export const CONTROL_BYTES = 1024;
/** Word indices in the control block. */
export const CTRL = {
  seq: 0, kernel: 1, args: 2, tasks: 3, completed: 4, error: 5, stop: 6,
  /** The current launch's generation (low 32 bits), stored before its fields. */
  gen: 7,
  /** Int32 index of the 64-bit claim word (8-byte aligned). */
  claim: 8,
} as const;

/** A generation as the Int32 stored in CTRL.gen. */
export const generationWord = (g: bigint): number => Number(BigInt.asIntN(32, g));

/** Claim one task of the current launch, or undefined when none is left (or a new launch is being set up). */
export function claimTask(c: Int32Array, claim: BigInt64Array): { task: number; kernel: number; args: number; tasks: number } | undefined {
  for (;;) {
    const w = Atomics.load(claim, 0);
    const idx = Number(w & 0xffffffffn);
    const kernel = Atomics.load(c, CTRL.kernel), args = Atomics.load(c, CTRL.args), tasks = Atomics.load(c, CTRL.tasks);
    // a newer launch is being set up: the fields may be its own; its seq increment wakes us again
    if (Atomics.load(c, CTRL.gen) !== generationWord(w >> 32n)) return undefined;
    if (idx >= tasks) return undefined;
    if (Atomics.compareExchange(claim, 0, w, w + 1n) === w) return { task: idx, kernel, args, tasks };
  }
}

export interface PoolInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** Kernel export names; a launch passes an index into this list. */
  kernels: string[];
  /** Spin iterations before sleeping. */
  spin: number;
}

type Kernel = (args: number, task: number) => void;

export interface ThreadPool {
  /** Threads that run tasks, the caller included. */
  readonly threads: number;
  readonly description: string;
  /** Run kernel(args, t) for t in [0, tasks) across the threads (or on the caller only when `serial`). */
  run(kernel: number, args: number, tasks: number, serial?: boolean): void;
  destroy(): void;
}

interface NodeProcessLike { getBuiltinModule?: (id: string) => unknown; env?: Record<string, string | undefined> }
const nodeProcess = (globalThis as { process?: NodeProcessLike }).process;

/** The number of threads to use: CNX_WASM_THREADS, else the hardware's parallelism. */
export function defaultThreadCount(): number {
  const env = nodeProcess?.env?.CNX_WASM_THREADS;
  if (env !== undefined && env !== '') return Math.max(1, Number.parseInt(env, 10) || 1);
  const os = nodeProcess?.getBuiltinModule?.('node:os') as { availableParallelism?: () => number } | undefined;
  if (os?.availableParallelism) return os.availableParallelism();
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  return nav?.hardwareConcurrency ?? 1;
}

/** All tasks on the calling thread. */
class SingleThread implements ThreadPool {
  readonly threads = 1;
  readonly description = '1 thread';
  constructor(private readonly fns: Kernel[]) {}
  run(kernel: number, args: number, tasks: number): void {
    const fn = this.fns[kernel]!;
    for (let t = 0; t < tasks; t++) fn(args, t);
  }

  destroy(): void {}
}

interface WorkerHandle { terminate(): unknown }

class SharedPool implements ThreadPool {
  readonly threads: number;
  readonly description: string;
  private readonly ctrl: Int32Array;
  private readonly claim: BigInt64Array;
  private generation = 0n;
  constructor(
    private readonly fns: Kernel[],
    memory: WebAssembly.Memory,
    private readonly workers: WorkerHandle[],
    private readonly canBlock: boolean,
    kind: string,
  ) {
    this.threads = workers.length + 1;
    this.description = `${this.threads} threads (${kind})`;
    this.ctrl = new Int32Array(memory.buffer, CONTROL_BASE, CONTROL_BYTES / 4);
    this.claim = new BigInt64Array(memory.buffer, CONTROL_BASE + CTRL.claim * 4, 1);
  }

  run(kernel: number, args: number, tasks: number, serial = false): void {
    const c = this.ctrl;
    const fn = this.fns[kernel]!;
    if (tasks <= 1 || serial) {
      for (let t = 0; t < tasks; t++) fn(args, t);
      return;
    }
    this.generation++;
    Atomics.store(c, CTRL.gen, generationWord(this.generation)); // first: see claimTask
    Atomics.store(c, CTRL.kernel, kernel);
    Atomics.store(c, CTRL.args, args);
    Atomics.store(c, CTRL.tasks, tasks);
    Atomics.store(c, CTRL.error, 0);
    Atomics.store(c, CTRL.completed, 0);
    Atomics.store(this.claim, 0, this.generation << 32n);
    Atomics.add(c, CTRL.seq, 1);
    Atomics.notify(c, CTRL.seq);
    let err: unknown;
    for (;;) {
      const job = claimTask(c, this.claim);
      if (!job) break;
      try {
        fn(args, job.task);
      } catch (e) {
        err ??= e;
      }
      Atomics.add(c, CTRL.completed, 1);
    }
    for (let spins = 0; ; spins++) {
      const d = Atomics.load(c, CTRL.completed);
      if (d >= tasks) break;
      if (this.canBlock && spins > 1000) Atomics.wait(c, CTRL.completed, d, 20);
    }
    if (err) throw err;
    if (c[CTRL.error]) throw new Error(`wasm kernel ${kernel} failed in a worker thread (error code ${c[CTRL.error]})`);
  }

  destroy(): void {
    Atomics.store(this.ctrl, CTRL.stop, 1);
    Atomics.add(this.ctrl, CTRL.seq, 1);
    Atomics.notify(this.ctrl, CTRL.seq);
    for (const w of this.workers) void w.terminate();
  }
}

const START_TIMEOUT_MS = 30_000;

/**
 * A pool of `threads` threads over `init.memory` (shared), or one thread where workers or shared
 * memory are unavailable. `instance` is the calling thread's instance of init.module.
 */
export async function createThreadPool(init: PoolInit, instance: WebAssembly.Instance, threads: number): Promise<ThreadPool> {
  const fns = init.kernels.map((k) => {
    const fn = instance.exports[k];
    if (typeof fn !== 'function') throw new Error(`wasm module: missing kernel export ${k}`);
    return fn as Kernel;
  });
  const shared = typeof SharedArrayBuffer === 'function' && init.memory.buffer instanceof SharedArrayBuffer;
  if (threads <= 1 || !shared) return new SingleThread(fns);
  new Int32Array(init.memory.buffer, CONTROL_BASE, CONTROL_BYTES / 4).fill(0);
  const url = new URL('./pool_worker.js', import.meta.url);
  const wt = nodeProcess?.getBuiltinModule?.('node:worker_threads') as typeof WorkerThreads | undefined;
  const data = { module: init.module, memory: init.memory, kernels: init.kernels, spin: init.spin };
  const workers: WorkerHandle[] = [];
  const ready: Promise<void>[] = [];
  let kind: string;
  try {
    if (wt) {
      kind = 'node:worker_threads';
      for (let i = 0; i < threads - 1; i++) {
        const w = new wt.Worker(url, { workerData: data });
        w.unref(); // a sleeping worker must not keep the process alive
        workers.push(w);
        ready.push(new Promise((res, rej) => {
          w.once('message', () => res());
          w.once('error', rej);
        }));
      }
    } else if (typeof Worker === 'function') {
      kind = 'Web Workers';
      for (let i = 0; i < threads - 1; i++) {
        const w = new Worker(url, { type: 'module' });
        workers.push(w);
        ready.push(new Promise((res, rej) => {
          w.onmessage = () => res();
          w.onerror = (e) => rej(new Error(e.message));
        }));
        w.postMessage(data);
      }
    } else {
      return new SingleThread(fns);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(ready),
      new Promise((_, rej) => { timer = setTimeout(() => rej(new Error('worker start timed out')), START_TIMEOUT_MS); }),
    ]);
    clearTimeout(timer);
  } catch {
    for (const w of workers) void w.terminate();
    return new SingleThread(fns);
  }
  const canBlock = !!wt; // Node's main thread may Atomics.wait; a page's main thread may not
  return new SharedPool(fns, init.memory, workers, canBlock, kind);
}
