// conv2d backward references (cpu/conv2d_backward.ts) against central finite differences of the CPU
// forward (CpuBackend.conv2d) on awkward geometries: odd sizes, batch > 1, stride 2 where the forward
// drops the last row/column, asymmetric padding (diffusers Downsample2D's (0, 1, 0, 1)), unequal
// strides and paddings with a rectangular kernel and groups, 1x1, depthwise 5x5. Then against the
// grad_conv golden case (torch autograd) with the case's tolerances.
//
// Error model: test/harness/finite_difference.ts (f32 output rounding of the forward over the outputs a
// perturbation reaches, O(h^4) truncation).

import { CpuBackend, conv2dBackwardBias, conv2dBackwardInput, conv2dBackwardWeight, conv2dOutputSize, type Conv2dBackwardParams, conv2dOp, runOp1 } from '@cnx/tensor';
import { describe, expect, it } from 'vitest';
import { randomArray } from '../../../test/harness/allclose.js';
import { expectGradMatchesFd, gridded } from '../../../test/harness/finite_difference.js';
import { expectGoldenClose, openGoldenCase } from '../../../test/harness/golden_case_data.js';

const cpu = new CpuBackend();

interface Case {
  x: [number, number, number, number];
  w: [number, number, number, number];
  stride?: [number, number];
  padding?: [number, number, number, number];
  groups?: number;
}

function forward(c: Case, p: Conv2dBackwardParams) {
  return ([x, w, b]: Float32Array[]): Float32Array => {
    const tx = cpu.fromRaw(x!, c.x), tw = cpu.fromRaw(w!, c.w), tb = cpu.fromRaw(b!, [c.w[0]]);
    const y = runOp1(conv2dOp, [tx, tw, tb], p);
    const v = cpu.values(y);
    for (const t of [tx, tw, tb, y]) t.dispose();
    return v;
  };
}

const cases: Case[] = [
  { x: [2, 3, 7, 9], w: [5, 3, 3, 3], padding: [1, 1, 1, 1] },
  // stride 2, padding 1 on top only: windows end at row 7 and column 6, the last input row and column
  // are never read
  { x: [1, 2, 9, 8], w: [3, 2, 3, 3], stride: [2, 2], padding: [1, 0, 0, 0] },
  { x: [2, 3, 7, 9], w: [4, 3, 3, 3], stride: [2, 2], padding: [1, 1, 1, 1] },
  // the VAE's asymmetric (0, 1, 0, 1) with stride 2; (9 + 1 - 3) % 2 = 1 drops a row
  { x: [2, 3, 9, 8], w: [4, 3, 3, 3], stride: [2, 2], padding: [0, 1, 0, 1] },
  // groups, rectangular kernel, unequal strides and paddings
  { x: [2, 4, 7, 6], w: [6, 2, 3, 2], stride: [2, 1], padding: [2, 0, 1, 1], groups: 2 },
  // 1x1
  { x: [2, 5, 3, 5], w: [7, 5, 1, 1] },
  // depthwise 5x5 (groups = C)
  { x: [1, 3, 6, 7], w: [3, 1, 5, 5], padding: [2, 2, 2, 2], groups: 3 },
];

describe('conv2d backward (CPU reference) vs finite differences', () => {
  cases.forEach((c, k) => {
    it(`x [${c.x}] w [${c.w}] stride [${c.stride ?? [1, 1]}] padding [${c.padding ?? [0, 0, 0, 0]}] groups ${c.groups ?? 1}`, () => {
      const p: Conv2dBackwardParams = { stride: c.stride ?? [1, 1], padding: c.padding ?? [0, 0, 0, 0], groups: c.groups ?? 1 };
      const [Ho, Wo] = conv2dOutputSize(c.x[2], c.x[3], c.w[2], c.w[3], p);
      const dyShape = [c.x[0], c.w[0], Ho, Wo];
      const x = gridded(randomArray(c.x.reduce((a, d) => a * d, 1), 10 * k + 1));
      const w = gridded(randomArray(c.w.reduce((a, d) => a * d, 1), 10 * k + 2));
      const b = gridded(randomArray(c.w[0], 10 * k + 3));
      const dy = randomArray(dyShape.reduce((a, d) => a * d, 1), 10 * k + 4);
      const f = forward(c, p);
      expect(f([x, w, b]).length).toBe(dy.length);
      expectGradMatchesFd('dx', conv2dBackwardInput(dy, dyShape, w, c.w, c.x, p), f, [x, w, b], dy, 0);
      expectGradMatchesFd('dw', conv2dBackwardWeight(x, c.x, dy, dyShape, c.w, p), f, [x, w, b], dy, 1);
      expectGradMatchesFd('db', conv2dBackwardBias(dy, dyShape), f, [x, w, b], dy, 2);
    });
  });

  it('a dropped input row gets exactly zero gradient', () => {
    const p: Conv2dBackwardParams = { stride: [2, 2], padding: [0, 0, 0, 0], groups: 1 };
    const dyShape = [1, 2, 3, 3]; // x 8x8: windows start at 0, 2, 4 and end at row/column 6; 7 is never read
    const dx = conv2dBackwardInput(randomArray(18, 5), dyShape, randomArray(2 * 3 * 9, 6), [2, 3, 3, 3], [1, 3, 8, 8], p);
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < 8; i++) {
        expect(dx[(c * 8 + 7) * 8 + i]).toBe(0);
        expect(dx[(c * 8 + i) * 8 + 7]).toBe(0);
      }
    }
    expect(dx.some((v) => v !== 0)).toBe(true);
  });

  it('shape errors name what was expected', () => {
    const p: Conv2dBackwardParams = { stride: [1, 1], padding: [1, 1, 1, 1], groups: 1 };
    expect(() => conv2dBackwardInput(new Float32Array(8), [1, 2, 2, 2], new Float32Array(18), [2, 1, 3, 3], [1, 1, 3, 3], p))
      .toThrow(/conv2dBackwardInput: expected dy \[1, 2, 3, 3\] \(the forward's output shape\), found \[1, 2, 2, 2\]/);
  });
});

describe('conv2d backward (CPU reference) vs the grad_conv golden case', () => {
  it('every variant: grad x, weight, bias', () => {
    const g = openGoldenCase('grad_conv');
    try {
      for (const v of g.json.args.variants as { name: string; k: number; stride: number; padding: number; groups?: number; bias?: boolean; asym_pad?: boolean }[]) {
        const x = g.get(`${v.name}.x`), w = g.get(`${v.name}.weight`), gy = g.get(`${v.name}.gy`);
        const pad = v.asym_pad ? [0, 1, 0, 1] as const : [v.padding, v.padding, v.padding, v.padding] as const;
        const p: Conv2dBackwardParams = { stride: [v.stride, v.stride], padding: pad, groups: v.groups ?? 1 };
        const tol = g.json.tolerance;
        expectGoldenClose(`${v.name}.grad.x`, conv2dBackwardInput(gy.data, gy.shape, w.data, w.shape, x.shape, p), g.get(`${v.name}.grad.x`).data, tol[`${v.name}.grad.x`]);
        expectGoldenClose(`${v.name}.grad.weight`, conv2dBackwardWeight(x.data, x.shape, gy.data, gy.shape, w.shape, p), g.get(`${v.name}.grad.weight`).data, tol[`${v.name}.grad.weight`]);
        if (v.bias !== false) {
          expectGoldenClose(`${v.name}.grad.bias`, conv2dBackwardBias(gy.data, gy.shape), g.get(`${v.name}.grad.bias`).data, tol[`${v.name}.grad.bias`]);
        }
      }
    } finally {
      g.close();
    }
  });
});
