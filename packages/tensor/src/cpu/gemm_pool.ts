// A second thread for large CPU gemms, kept synchronous for the caller (the CPU backend is synchronous
// per op): the rows of C are split between the calling thread and one persistent worker; the caller
// computes its share, then blocks in Atomics.wait until the worker signals done.
//
// Operands are copied into SharedArrayBuffers (the backend's storages are ordinary ArrayBuffers); the
// copy is O(M*K + K*N) against O(M*N*K) work, so the pool is used only above MIN_PARALLEL_MACS.
// Only in Node (worker_threads via process.getBuiltinModule); elsewhere, or with CNX_CPU_THREADS=1,
// or if the worker fails to start, every gemm runs on the calling thread.

import type * as WorkerThreads from 'node:worker_threads';

/** Indices into the shared Int32 control array. */
export const CTRL = { seq: 0, done: 1, ready: 2, status: 3 } as const;

export interface GemmJob {
  A: SharedArrayBuffer; aOff: number; aStrides: readonly [number, number];
  B: SharedArrayBuffer; bOff: number; bStrides: readonly [number, number];
  C: SharedArrayBuffer;
  M: number; N: number; K: number; m0: number; m1: number;
}

/** Below this many multiply-adds the copies and the wake-up cost more than a second core saves. */
const MIN_PARALLEL_MACS = 1 << 22;
const START_TIMEOUT_MS = 10_000;

interface Pool {
  ctrl: Int32Array;
  port: WorkerThreads.MessagePort;
  seq: number;
}

let pool: Pool | null | undefined;

function wantedThreads(): number {
  const env = typeof process !== 'undefined' ? process.env?.CNX_CPU_THREADS : undefined;
  if (env !== undefined && env !== '') return Math.max(1, Number.parseInt(env, 10) || 1);
  const os = typeof process !== 'undefined' ? process.getBuiltinModule?.('node:os') as typeof import('node:os') | undefined : undefined;
  return Math.min(2, os?.availableParallelism?.() ?? 1);
}

function startPool(): Pool | null {
  if (wantedThreads() < 2) return null;
  const wt = process.getBuiltinModule?.('node:worker_threads') as typeof WorkerThreads | undefined;
  if (!wt || !wt.isMainThread) return null;
  try {
    const ctrlBuf = new SharedArrayBuffer(4 * 4);
    const ctrl = new Int32Array(ctrlBuf);
    const { port1, port2 } = new wt.MessageChannel();
    const worker = new wt.Worker(new URL('./gemm_worker.js', import.meta.url), {
      workerData: { ctrl: ctrlBuf, port: port2 }, transferList: [port2],
    });
    worker.unref(); // a blocked worker must not keep the process alive
    port1.unref();
    if (Atomics.wait(ctrl, CTRL.ready, 0, START_TIMEOUT_MS) === 'timed-out' && Atomics.load(ctrl, CTRL.ready) === 0) {
      void worker.terminate();
      return null;
    }
    return { ctrl, port: port1, seq: 0 };
  } catch {
    return null;
  }
}

function toShared(src: Float32Array, off: number, extent: number): SharedArrayBuffer {
  const sab = new SharedArrayBuffer(extent * 4);
  new Float32Array(sab).set(src.subarray(off, off + extent));
  return sab;
}

/**
 * C = A @ B on two threads, or undefined when the pool is unavailable or the product too small (the
 * caller then runs it on its own thread). `rows(A, B, C, m0, m1)` computes rows [m0, m1) of C += A@B.
 */
export function parallelGemm(
  A: Float32Array, aOff: number, aStrides: readonly [number, number],
  B: Float32Array, bOff: number, bStrides: readonly [number, number],
  M: number, N: number, K: number,
  rows: (A: Float32Array, aOff: number, B: Float32Array, bOff: number, C: Float64Array, m0: number, m1: number) => void,
): Float64Array | undefined {
  if (M * N * K < MIN_PARALLEL_MACS || M < 8) return undefined;
  if (pool === undefined) pool = startPool();
  if (pool === null) return undefined;
  const aExtent = (M - 1) * aStrides[0] + (K - 1) * aStrides[1] + 1;
  const bExtent = (K - 1) * bStrides[0] + (N - 1) * bStrides[1] + 1;
  // A shared operand is passed as is only when the view starts its buffer (the worker indexes the whole
  // buffer from 0); views into a larger SharedArrayBuffer (e.g. a WebAssembly memory) are copied.
  const As = A.buffer instanceof SharedArrayBuffer && A.byteOffset === 0 && aOff === 0 ? A.buffer : toShared(A, aOff, aExtent);
  const Bs = B.buffer instanceof SharedArrayBuffer && B.byteOffset === 0 && bOff === 0 ? B.buffer : toShared(B, bOff, bExtent);
  const Cs = new SharedArrayBuffer(M * N * 8);
  // The worker takes the bottom rows; split on a multiple of 4 (the micro-kernel height).
  const split = Math.min(M, Math.max(4, Math.round(M / 2 / 4) * 4));
  const job: GemmJob = { A: As, aOff: 0, aStrides, B: Bs, bOff: 0, bStrides, C: Cs, M, N, K, m0: split, m1: M };
  const p = pool;
  p.port.postMessage(job);
  p.seq++;
  Atomics.store(p.ctrl, CTRL.seq, p.seq);
  Atomics.notify(p.ctrl, CTRL.seq);
  const C = new Float64Array(Cs);
  rows(new Float32Array(As), 0, new Float32Array(Bs), 0, C, 0, split);
  while (Atomics.load(p.ctrl, CTRL.done) !== p.seq) Atomics.wait(p.ctrl, CTRL.done, p.seq - 1, 100);
  if (Atomics.load(p.ctrl, CTRL.status) !== 1) {
    // The worker failed its share: compute it here (its rows of C may be partial, so clear them first).
    C.fill(0, split * N);
    rows(new Float32Array(As), 0, new Float32Array(Bs), 0, C, split, M);
  }
  return C;
}
