// Unary activation backward (every UnaryOp and Activation), softmax backward and the MSE loss
// (cpu/elementwise_backward.ts) against central finite differences of the CPU forward (CpuBackend.unary,
// softmax, and mse as sub -> square -> mean on the backend), then against the grad_misc golden case.
// Inputs stay inside each op's domain (log, sqrt, rsqrt, recip on [0.25, 2.25]) and away from the kinks
// of relu and abs (|x| >= 0.05, more than the largest FD step 2h = 0.016).
//
// Error model: test/harness/finite_difference.ts.

import { CpuBackend, mseLoss, mseLossBackward, softmaxBackward, unaryBackward, unaryDerivative, type UnaryOp, ops } from '@cnx/tensor';
import { describe, expect, it } from 'vitest';
import { randomArray } from '../../../test/harness/allclose.js';
import { expectGradMatchesFd, gridded } from '../../../test/harness/finite_difference.js';
import { expectGoldenClose, openGoldenCase } from '../../../test/harness/golden_case_data.js';

const cpu = new CpuBackend();

const UNARY_OPS: UnaryOp[] = [
  'neg', 'abs', 'exp', 'log', 'sqrt', 'rsqrt', 'recip', 'square', 'sin', 'cos', 'tanh', 'sigmoid', 'relu', 'silu',
  'gelu', 'gelu_tanh', 'quick_gelu',
];

function inputsFor(op: UnaryOp, n: number, seed: number): Float32Array {
  const r = randomArray(n, seed);
  switch (op) {
    case 'log': case 'sqrt': case 'rsqrt': case 'recip': return gridded(r.map((v) => 1.25 + v));
    case 'relu': case 'abs': return gridded(r.map((v) => Math.sign(v) * (0.05 + 3 * Math.abs(v))));
    default: return gridded(r.map((v) => 3 * v));
  }
}

describe('unary backward (CPU reference) vs finite differences', () => {
  UNARY_OPS.forEach((op, k) => {
    it(op, () => {
      const x = inputsFor(op, 67, 900 + k), dy = randomArray(67, 950 + k);
      const f = ([xv]: Float32Array[]): Float32Array => {
        const t = cpu.fromRaw(xv!, [67]), y = ops.unary(op, t), v = cpu.values(y);
        t.dispose(); y.dispose();
        return v;
      };
      expectGradMatchesFd(`${op} dx`, unaryBackward(op, x, dy), f, [x], dy, 0);
    });
  });

  it("'none' (the identity epilogue) passes dy through; relu and abs at 0 give 0 (torch)", () => {
    const dy = randomArray(5, 3);
    expect(Array.from(unaryBackward('none', new Float32Array(5), dy))).toEqual(Array.from(dy));
    expect(unaryDerivative('relu', 0)).toBe(0);
    expect(unaryDerivative('abs', 0)).toBe(0);
  });
});

describe('softmax backward (CPU reference) vs finite differences', () => {
  for (const [shape, scale] of [[[3, 5, 7], 2], [[2, 33], 5], [[4, 1], 1]] as [number[], number][]) {
    it(`[${shape}] logits x${scale}`, () => {
      const n = shape.reduce((a, d) => a * d, 1), D = shape[shape.length - 1]!;
      const x = gridded(randomArray(n, 17, scale)), dy = randomArray(n, 18);
      const f = ([xv]: Float32Array[]): Float32Array => {
        const t = cpu.fromRaw(xv!, shape), y = ops.softmax(t), v = cpu.values(y);
        t.dispose(); y.dispose();
        return v;
      };
      expectGradMatchesFd('softmax dx', softmaxBackward(f([x]), dy, D), f, [x], dy, 0);
    });
  }
});

describe('MSE loss (CPU reference) vs finite differences', () => {
  it('mean over [2, 3, 5, 3]: forward and both gradients', () => {
    const shape = [2, 3, 5, 3], n = 90;
    const pred = gridded(randomArray(n, 31)), target = gridded(randomArray(n, 32));
    // the forward as the backend composes it: mean((pred - target)^2)
    const f = ([p, t]: Float32Array[]): Float32Array => {
      const tp = cpu.fromRaw(p!, shape), tt = cpu.fromRaw(t!, shape);
      const d = ops.binary('sub', tp, tt), sq = ops.unary('square', d), m = ops.reduce('mean', sq, [0, 1, 2, 3], true);
      const v = cpu.values(m);
      for (const x of [tp, tt, d, sq, m]) x.dispose();
      return v;
    };
    expect(Math.abs(mseLoss(pred, target) - f([pred, target])[0]!)).toBeLessThanOrEqual(1e-7 * f([pred, target])[0]!);
    const gy = Float32Array.of(0.37);
    const g = mseLossBackward(pred, target, 0.37);
    expectGradMatchesFd('dpred', g.dpred, f, [pred, target], gy, 0);
    expectGradMatchesFd('dtarget', g.dtarget, f, [pred, target], gy, 1);
  });

  it('length mismatches are errors naming both lengths', () => {
    expect(() => mseLoss(new Float32Array(3), new Float32Array(4))).toThrow(/mseLoss: expected pred and target of equal, non-zero length, found 3 and 4/);
  });
});

describe('elementwise backward (CPU reference) vs the grad_misc golden case', () => {
  it('silu, gelu, softmax, mse_loss variants', () => {
    const gc = openGoldenCase('grad_misc');
    try {
      const tol = gc.json.tolerance;
      let checked = 0;
      for (const v of gc.json.args.variants as { name: string; op: string; x?: number[] }[]) {
        const n = v.name;
        if (v.op === 'silu' || v.op === 'gelu') {
          const x = gc.get(`${n}.x`).data, gy = gc.get(`${n}.gy`).data;
          expectGoldenClose(`${n}.grad.x`, unaryBackward(v.op, x, gy), gc.get(`${n}.grad.x`).data, tol[`${n}.grad.x`]);
        } else if (v.op === 'softmax') {
          const x = gc.get(`${n}.x`), gy = gc.get(`${n}.gy`).data;
          const tx = cpu.fromRaw(x.data, x.shape), ty = ops.softmax(tx), y = cpu.values(ty);
          tx.dispose(); ty.dispose();
          expectGoldenClose(`${n}.y`, y, gc.get(`${n}.y`).data, tol[`${n}.y`]);
          expectGoldenClose(`${n}.grad.x`, softmaxBackward(y, gy, x.shape[x.shape.length - 1]!), gc.get(`${n}.grad.x`).data, tol[`${n}.grad.x`]);
        } else if (v.op === 'mse_loss') {
          const p = gc.get(`${n}.pred`).data, t = gc.get(`${n}.target`).data, gy = gc.get(`${n}.gy`).data[0]!;
          expectGoldenClose(`${n}.y`, [mseLoss(p, t)], gc.get(`${n}.y`).data, tol[`${n}.y`]);
          const g = mseLossBackward(p, t, gy);
          expectGoldenClose(`${n}.grad.pred`, g.dpred, gc.get(`${n}.grad.pred`).data, tol[`${n}.grad.pred`]);
          expectGoldenClose(`${n}.grad.target`, g.dtarget, gc.get(`${n}.grad.target`).data, tol[`${n}.grad.target`]);
        } else {
          continue;
        }
        checked++;
      }
      expect(checked).toBeGreaterThanOrEqual(6);
    } finally {
      gc.close();
    }
  });
});
