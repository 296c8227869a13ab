// Activation backward (every UnaryOp and Activation), softmax backward and the MSE loss on WebGPU
// (elementwise_backward.ts, mse_loss.ts, sum_squares.ts) against the float64 CPU references
// (@cnx/tensor unaryBackward / softmaxBackward / mseLoss / mseLossBackward), on odd sizes, with
// saturating inputs (|x| = 20, 90: exp overflows in f32) that must give finite, correct derivatives,
// and the grad_misc golden case (silu, gelu, softmax incl. large logits, mse_loss) with its tolerances.
//
// Error model: f'(x) is a handful of f32 operations on values of magnitude <= ~|x| max|f'|; the
// Cody erf and the range-reduced sin/cos are accurate to a few ulp. Per element atol = 16 eps * (1 + |x|)
// * |dy| * max(1, |f'(x)|) covers a few ulp of each intermediate, with rtol 8 eps. Softmax backward: a
// row sum of D products (tolFor('f32', D)). MSE: a sum of n squares (relative error ~ eps sqrt(n)).

import { elementwiseBackwardKernels, mseLossKernels, type GpuContext } from '@cnx/kernels';
import {
  mseLoss, ops, mseLossBackward, softmaxBackward, unaryBackward, unaryDerivative, type Activation, type Backend, type UnaryOp,
} from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, mismatchReport, randomArray, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { expectGoldenClose, openGoldenCase } from '../../../test/harness/golden_case_data.js';

function asContext(backend: Backend): GpuContext {
  if (!('dispatch' in backend)) throw new Error(`expected a WebGPU backend (GpuContext), found ${backend.name}`);
  return backend as unknown as GpuContext;
}

const OPS: (UnaryOp | Activation)[] = [
  'none', 'neg', 'abs', 'exp', 'log', 'sqrt', 'rsqrt', 'recip', 'square', 'sin', 'cos', 'tanh', 'sigmoid', 'relu', 'silu',
  'gelu', 'gelu_tanh', 'quick_gelu',
];
const SATURATING = new Set(['tanh', 'sigmoid', 'silu', 'gelu', 'gelu_tanh', 'quick_gelu', 'relu', 'abs', 'neg', 'none']);
const EPS = 1.19e-7;

function inputsFor(op: UnaryOp | Activation, n: number, seed: number): Float32Array {
  const r = randomArray(n, seed);
  switch (op) {
    case 'log': case 'sqrt': case 'rsqrt': case 'recip': return r.map((v) => 1.25 + v);
    default: {
      const x = r.map((v) => 4 * v);
      if (SATURATING.has(op)) x.set([20, -20, 90, -90, 0], 0);
      if (op === 'sin' || op === 'cos') x.set([100.5, -250.25, 1000], 0);
      return x;
    }
  }
}

describeEachBackend('elementwise backward kernels', (test) => {
  test('unary backward: every op and activation', async (backend) => {
    const ctx = asContext(backend);
    let seed = 1;
    for (const op of OPS) {
      const n = 517;
      const x = inputsFor(op, n, seed++), dy = randomArray(n, seed++);
      const gx = backend.fromRaw(x, [11, 47]), gdy = backend.fromRaw(dy, [11, 47]);
      const got = await elementwiseBackwardKernels.unaryBackward(ctx, op, gx, gdy).data();
      const ref = unaryBackward(op, x, dy);
      const bad: string[] = [];
      for (let i = 0; i < n && bad.length < 5; i++) {
        const atol = 16 * EPS * (1 + Math.abs(x[i]!)) * Math.abs(dy[i]!) * Math.max(1, Math.abs(unaryDerivative(op, x[i]!)));
        const r = mismatchReport([got[i]!], [ref[i]!], { atol, rtol: 8 * EPS });
        if (r.length) bad.push(`x=${x[i]}: ${r[0]}`);
      }
      expect(bad, `unary backward ${op}`).toEqual([]);
      gx.dispose(); gdy.dispose();
    }
  });

  test('softmax backward: rows of 1 .. 300, large logits', async (backend) => {
    const ctx = asContext(backend);
    for (const [shape, scale, shift] of [[[3, 5, 7], 3, 0], [[2, 300], 20, 100], [[4, 1], 1, 0]] as [number[], number, number][]) {
      const n = shape.reduce((a, d) => a * d, 1), D = shape[shape.length - 1]!;
      const xs = randomArray(n, 8, scale, shift), dy = randomArray(n, 9);
      const cx = backend.fromRaw(xs, shape);
      const y = ops.softmax(cx);
      const yv = await y.data();
      const gdy = backend.fromRaw(dy, shape);
      const got = elementwiseBackwardKernels.softmaxBackward(ctx, y, gdy);
      expectAllClose(await got.data(), softmaxBackward(yv, dy, D), tolFor('f32', D), `softmax backward [${shape}]`);
      for (const t of [cx, y, gdy, got]) t.dispose();
    }
  });

  test('mse loss (mean): forward and backward with an upstream gradient', async (backend) => {
    const ctx = asContext(backend);
    for (const shape of [[2, 4, 7, 9], [3, 5000]]) {
      const n = shape.reduce((a, d) => a * d, 1);
      const p = randomArray(n, 21), t = randomArray(n, 22, 2);
      const gp = backend.fromRaw(p, shape), gt = backend.fromRaw(t, shape), gy = backend.fromRaw(Float32Array.of(0.37), [1]);
      const loss = mseLossKernels.mseLoss(ctx, gp, gt);
      const ref = mseLoss(p, t);
      expectAllClose(await loss.data(), [ref], { atol: 0, rtol: 8 * EPS * Math.sqrt(n) }, `mse [${shape}]`);
      const g = mseLossKernels.mseLossBackward(ctx, gp, gt, gy);
      const r = mseLossBackward(p, t, 0.37);
      expectAllClose(await g.dpred.data(), r.dpred, tolFor('f32', 4, 3 / n), `dpred [${shape}]`);
      expectAllClose(await g.dtarget.data(), r.dtarget, tolFor('f32', 4, 3 / n), `dtarget [${shape}]`);
      for (const x of [gp, gt, gy, loss, g.dpred, g.dtarget]) x.dispose();
    }
  });

  test('grad_misc golden case: silu, gelu, softmax, mse_loss', async (backend) => {
    const ctx = asContext(backend);
    const gc = openGoldenCase('grad_misc');
    try {
      const tol = gc.json.tolerance;
      for (const v of gc.json.args.variants as { name: string; op: string }[]) {
        const n = v.name;
        if (v.op === 'silu' || v.op === 'gelu') {
          const x = gc.get(`${n}.x`), gy = gc.get(`${n}.gy`);
          const gx = backend.fromRaw(x.data, x.shape), ggy = backend.fromRaw(gy.data, gy.shape);
          const dx = elementwiseBackwardKernels.unaryBackward(ctx, v.op, gx, ggy);
          expectGoldenClose(`${n}.grad.x`, await dx.data(), gc.get(`${n}.grad.x`).data, tol[`${n}.grad.x`]);
          for (const t of [gx, ggy, dx]) t.dispose();
        } else if (v.op === 'softmax') {
          const x = gc.get(`${n}.x`), gy = gc.get(`${n}.gy`);
          const gx = backend.fromRaw(x.data, x.shape), ggy = backend.fromRaw(gy.data, gy.shape);
          const y = ops.softmax(gx);
          const dx = elementwiseBackwardKernels.softmaxBackward(ctx, y, ggy);
          expectGoldenClose(`${n}.grad.x`, await dx.data(), gc.get(`${n}.grad.x`).data, tol[`${n}.grad.x`]);
          for (const t of [gx, ggy, y, dx]) t.dispose();
        } else if (v.op === 'mse_loss') {
          const p = gc.get(`${n}.pred`), t = gc.get(`${n}.target`), gy = gc.get(`${n}.gy`);
          const gp = backend.fromRaw(p.data, p.shape), gt = backend.fromRaw(t.data, t.shape), ggy = backend.fromRaw(gy.data, [1]);
          const loss = mseLossKernels.mseLoss(ctx, gp, gt);
          const g = mseLossKernels.mseLossBackward(ctx, gp, gt, ggy);
          expectGoldenClose(`${n}.y`, await loss.data(), gc.get(`${n}.y`).data, tol[`${n}.y`]);
          expectGoldenClose(`${n}.grad.pred`, await g.dpred.data(), gc.get(`${n}.grad.pred`).data, tol[`${n}.grad.pred`]);
          expectGoldenClose(`${n}.grad.target`, await g.dtarget.data(), gc.get(`${n}.grad.target`).data, tol[`${n}.grad.target`]);
          for (const x of [gp, gt, ggy, loss, g.dpred, g.dtarget]) x.dispose();
        }
      }
    } finally {
      gc.close();
    }
  });

  test('shape errors name what was expected', async (backend) => {
    const ctx = asContext(backend);
    const a = backend.zeros([2, 3]), b = backend.zeros([3, 2]);
    expect(() => elementwiseBackwardKernels.unaryBackward(ctx, 'silu', a, b))
      .toThrow(/unaryBackward silu: expected f32 x and dy of one shape, found f32 \[2, 3\] and f32 \[3, 2\]/);
    a.dispose(); b.dispose();
  });
}, ['webgpu']);
