// Reductions (webgpu/reduce.ts) against the CPU reference: every op over single axes, several axes,
// all axes, and no axes; each variant (serial rows <= 64, one workgroup per row, two-pass split of few
// long rows); permuted and broadcast views; large magnitudes; NaN and +-inf in max/min.
// Tolerance: an f32 sum of n terms of magnitude ~s has error ~ sqrt(n) eps s (tolFor('f32', n, s));
// max/min are exact.

import { CpuBackend, ops, reduceOp, runOp1, type Backend, type ReduceOp, type Tensor } from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor, type Tol } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

const cpu = new CpuBackend();
const OPS: ReduceOp[] = ['sum', 'mean', 'max', 'min'];
const EXACT: Tol = { atol: 0, rtol: 0 };

function tolOf(op: ReduceOp, len: number, scale: number): Tol {
  if (op === 'max' || op === 'min') return EXACT;
  const t = tolFor('f32', len, scale);
  return op === 'mean' ? { atol: t.atol / len + 1e-30, rtol: t.rtol } : t;
}

async function check(be: Backend, build: (b: Backend) => Tensor, op: ReduceOp, axes: number[], len: number, scale: number): Promise<void> {
  const x = build(be), xr = build(cpu);
  const got = ops.reduce(op, x, axes, true), ref = ops.reduce(op, xr, axes, true);
  expect(got.shape).toEqual(ref.shape);
  expectAllClose(await got.data(), await ref.data(), tolOf(op, len, scale), `${op} over [${axes.join(', ')}]`);
}

describeEachBackend('reduce', (test) => {
  const shape = [3, 5, 7, 2];
  const data = randomArray(3 * 5 * 7 * 2, 7, 100);
  for (const op of OPS) {
    for (const axes of [[0], [1], [3], [1, 2], [0, 2, 3], [0, 1, 2, 3], []]) {
      const len = axes.reduce((p, a) => p * shape[a]!, 1);
      test(`${op} of [3, 5, 7, 2] over [${axes.join(', ')}] (serial rows)`, async (be) => {
        await check(be, (b) => b.fromRaw(data, shape), op, axes, len, 100);
      });
    }
  }

  for (const op of OPS) {
    test(`${op} over long rows (workgroup variant): [3, 1000, 5] over [1]`, async (be) => {
      const d = randomArray(3 * 1000 * 5, 17, 1e4, 50);
      await check(be, (b) => b.fromRaw(d, [3, 1000, 5]), op, [1], 1000, 1e4);
    });
    test(`${op} over a permuted view: [6, 33, 4] permuted [2, 0, 1] over [1, 2]`, async (be) => {
      const d = randomArray(6 * 33 * 4, 19, 3);
      await check(be, (b) => b.fromRaw(d, [6, 33, 4]).permute([2, 0, 1]), op, [1, 2], 6 * 33, 3);
    });
    test(`${op} of everything, split into two passes: [70001, 2] over [0, 1]`, async (be) => {
      const d = randomArray(140002, 23, 1, 0.5);
      await check(be, (b) => b.fromRaw(d, [70001, 2]), op, [0, 1], 140002, 1.5);
    });
  }

  test('sum over a broadcast (stride-0) dim counts every copy', async (be) => {
    const d = randomArray(4 * 3, 29);
    await check(be, (b) => b.fromRaw(d, [4, 1, 3]).expand([4, 97, 3]), 'sum', [1], 97, 1);
  });

  test('max/min propagate NaN; infinities survive', async (be) => {
    const d = new Float32Array([1, NaN, 3, -Infinity, 2, 5, Infinity, -1, 0, 4, 2, 1]);
    for (const op of ['max', 'min'] as const) {
      for (const shape of [[3, 4], [1, 12]]) {
        const got = await ops.reduce(op, be.fromRaw(d, shape), [1], true).data();
        const ref = await ops.reduce(op, cpu.fromRaw(d, shape), [1], true).data();
        expect(Array.from(got)).toEqual(Array.from(ref));
      }
    }
    const long = randomArray(5000, 3);
    long[4321] = NaN;
    expect(Number.isNaN((await ops.reduce('max', be.fromRaw(long, [5000]), [0], true).data())[0]!)).toBe(true);
  });

  test('rejects unsorted axes with a clear error', (be) => {
    expect(() => runOp1(reduceOp, [be.fromRaw(new Float32Array(6), [2, 3])], { op: 'sum', axes: [1, 0] })).toThrow(/sorted|axes/);
  });
}, ['webgpu']);
