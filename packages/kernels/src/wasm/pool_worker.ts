// One worker thread of the fast CPU backend's pool (thread_pool.ts): instantiates the kernel module on
// the shared memory, reports ready, then loops forever: spin briefly / sleep on the control block's
// `seq`, claim task indices of the launch (thread_pool.ts) and run them, counting each completed.
// It never returns to its event loop, so a launch costs no message round trip. Runs as a Node
// worker_threads worker (init data in workerData) or a module Web Worker (init data in the first
// message); no `node:` import, so the same file serves both.

import { claimTask, CONTROL_BASE, CONTROL_BYTES, CTRL, type PoolInit } from './thread_pool.js';

interface NodeWorkerThreads {
  workerData: PoolInit;
  parentPort: { postMessage(v: unknown): void } | null;
}

type Kernel = (args: number, task: number) => void;

function serve(init: PoolInit, report: () => void): void {
  const instance = new WebAssembly.Instance(init.module, { env: { memory: init.memory } });
  const fns = init.kernels.map((k) => instance.exports[k] as Kernel);
  const c = new Int32Array(init.memory.buffer, CONTROL_BASE, CONTROL_BYTES / 4);
  const claim = new BigInt64Array(init.memory.buffer, CONTROL_BASE + CTRL.claim * 4, 1);
  let seen = Atomics.load(c, CTRL.seq);
  report();
  for (;;) {
    for (let i = 0; i < init.spin && Atomics.load(c, CTRL.seq) === seen; i++);
    Atomics.wait(c, CTRL.seq, seen);
    const seq = Atomics.load(c, CTRL.seq);
    if (seq === seen) continue;
    seen = seq;
    if (Atomics.load(c, CTRL.stop)) return;
    for (;;) {
      const job = claimTask(c, claim);
      if (!job) break;
      try {
        fns[job.kernel]!(job.args, job.task);
      } catch {
        Atomics.store(c, CTRL.error, 1);
      }
      if (Atomics.add(c, CTRL.completed, 1) + 1 >= job.tasks) Atomics.notify(c, CTRL.completed);
    }
  }
}

const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
const wt = proc?.getBuiltinModule?.('node:worker_threads') as NodeWorkerThreads | undefined;
if (wt && wt.parentPort) {
  serve(wt.workerData, () => wt.parentPort!.postMessage('ready'));
} else {
  const scope = globalThis as unknown as { onmessage: ((e: { data: PoolInit }) => void) | null; postMessage(v: unknown): void };
  scope.onmessage = (e) => {
    scope.onmessage = null;
    serve(e.data, () => scope.postMessage('ready'));
  };
}
