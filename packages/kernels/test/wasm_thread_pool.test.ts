// The fast CPU backend's task claiming (packages/kernels/src/wasm/thread_pool.ts), on a control block in
// memory with the interleavings written out step by step: a thread that read the previous launch's claim
// word while the caller was setting up the next launch must not claim a task (it would run a task that
// another thread runs too and count an extra completion).

import { describe, expect, it } from 'vitest';
import { claimTask, CONTROL_BYTES, CTRL, generationWord } from '../src/wasm/thread_pool.js';

function controlBlock(): { c: Int32Array; claim: BigInt64Array } {
  const buf = new SharedArrayBuffer(CONTROL_BYTES);
  return { c: new Int32Array(buf), claim: new BigInt64Array(buf, CTRL.claim * 4, 1) };
}

/** The caller's launch set-up, in SharedPool.run's order, stopping after `steps` stores. */
function setUp(c: Int32Array, claim: BigInt64Array, gen: bigint, kernel: number, tasks: number, steps = 3): void {
  const stores: (() => void)[] = [
    () => Atomics.store(c, CTRL.gen, generationWord(gen)),
    () => { Atomics.store(c, CTRL.kernel, kernel); Atomics.store(c, CTRL.args, 256); },
    () => { Atomics.store(c, CTRL.tasks, tasks); Atomics.store(c, CTRL.completed, 0); },
    () => Atomics.store(claim, 0, gen << 32n),
  ];
  for (let i = 0; i < steps; i++) stores[i]!();
}

describe('wasm thread pool: claiming tasks', () => {
  it('hands out each task of a launch once, then none', () => {
    const { c, claim } = controlBlock();
    setUp(c, claim, 1n, 7, 3, 4);
    const got = [claimTask(c, claim), claimTask(c, claim), claimTask(c, claim), claimTask(c, claim)];
    expect(got.map((j) => j?.task)).toEqual([0, 1, 2, undefined]);
    expect(got[0]).toMatchObject({ kernel: 7, args: 256, tasks: 3 });
  });

  it('gives no task while the next launch is being set up, then that launch\'s tasks from 0', () => {
    const { c, claim } = controlBlock();
    setUp(c, claim, 1n, 7, 2, 4);
    expect(claimTask(c, claim)?.task).toBe(0);
    expect(claimTask(c, claim)?.task).toBe(1);
    // every task of launch 1 taken; the caller sets up launch 2 (5 tasks) up to, not including, the claim word
    for (let steps = 1; steps <= 3; steps++) {
      setUp(c, claim, 2n, 9, 5, steps);
      expect(claimTask(c, claim), `after ${steps} set-up stores`).toBeUndefined();
    }
    setUp(c, claim, 2n, 9, 5, 4);
    expect(claimTask(c, claim)).toMatchObject({ task: 0, kernel: 9, tasks: 5 });
  });
});
