// adaptive_avg_pool2d and nearest-upsampling backward (cpu/resample_backward.ts, gather form) against
// central finite differences of the CPU forward (CpuBackend.adaptiveAvgPool2d / upsampleNearest):
// divisible and non-divisible pooling (overlapping bins), output larger than the input, upsampling by 2,
// by non-integer ratios (torch's float32 source rule) and a nearest "downsample" whose skipped rows get
// no gradient. Then against the grad_misc golden case (pool_div, pool_nondiv, upsample_x2).
//
// Error model: test/harness/finite_difference.ts.

import { CpuBackend, adaptiveAvgPool2dBackward, nearestSourceRuns, poolBinRange, poolBins, upsampleNearestBackward, ops } from '@cnx/tensor';
import { describe, expect, it } from 'vitest';
import { randomArray } from '../../../test/harness/allclose.js';
import { expectGradMatchesFd, gridded } from '../../../test/harness/finite_difference.js';
import { expectGoldenClose, openGoldenCase } from '../../../test/harness/golden_case_data.js';

const cpu = new CpuBackend();

type Kind = 'pool' | 'nearest';

function forward(kind: Kind, xShape: number[], size: [number, number]) {
  return ([xv]: Float32Array[]): Float32Array => {
    const t = cpu.fromRaw(xv!, xShape);
    const y = kind === 'pool' ? ops.adaptiveAvgPool2d(t, size) : ops.upsampleNearest(t, size);
    const v = cpu.values(y);
    t.dispose(); y.dispose();
    return v;
  };
}

const cases: [Kind, number[], [number, number]][] = [
  ['pool', [2, 3, 8, 6], [4, 3]],
  ['pool', [1, 2, 10, 7], [4, 3]], // overlapping bins in both directions
  ['pool', [2, 1, 3, 5], [5, 7]], // output larger than the input
  ['pool', [1, 2, 9, 9], [1, 1]], // global average
  ['nearest', [2, 3, 5, 7], [10, 14]],
  ['nearest', [1, 2, 5, 3], [7, 8]], // non-integer ratios
  ['nearest', [1, 2, 7, 9], [3, 4]], // fewer outputs than inputs: some inputs are never read
];

describe('resampling backward (CPU reference) vs finite differences', () => {
  cases.forEach(([kind, xShape, size], k) => {
    it(`${kind} [${xShape}] -> [${size}]`, () => {
      const n = xShape.reduce((a, d) => a * d, 1);
      const dyShape = [xShape[0]!, xShape[1]!, size[0], size[1]];
      const x = gridded(randomArray(n, 40 + k)), dy = randomArray(dyShape.reduce((a, d) => a * d, 1), 60 + k);
      const dx = kind === 'pool' ? adaptiveAvgPool2dBackward(dy, dyShape, xShape) : upsampleNearestBackward(dy, dyShape, xShape);
      expectGradMatchesFd('dx', dx, forward(kind, xShape, size), [x], dy, 0);
    });
  });

  it('bin ranges invert poolBins; source runs cover every output once', () => {
    for (const [inS, outS] of [[10, 4], [7, 3], [3, 5], [16, 8], [5, 5]]) {
      const bins = poolBins(inS!, outS!);
      for (let i = 0; i < inS!; i++) {
        const [a, b] = poolBinRange(i, inS!, outS!);
        const want = bins.map(([s, e], o) => (i >= s && i < e ? o : -1)).filter((o) => o >= 0);
        expect([a, b], `pool ${inS}->${outS} input ${i}`).toEqual([want[0], want[want.length - 1]]);
        expect(b - a + 1).toBe(want.length);
      }
      const runs = nearestSourceRuns(inS!, outS!);
      expect(runs.reduce((s, [a, b]) => s + b - a, 0)).toBe(outS);
    }
  });
});

describe('resampling backward (CPU reference) vs the grad_misc golden case', () => {
  it('pool_div, pool_nondiv, upsample_x2', () => {
    const gc = openGoldenCase('grad_misc');
    try {
      const tol = gc.json.tolerance;
      let checked = 0;
      for (const v of gc.json.args.variants as { name: string; op: string }[]) {
        if (v.op !== 'adaptive_avg_pool' && v.op !== 'upsample_nearest') continue;
        const x = gc.get(`${v.name}.x`), gy = gc.get(`${v.name}.gy`);
        const dx = v.op === 'adaptive_avg_pool' ? adaptiveAvgPool2dBackward(gy.data, gy.shape, x.shape) : upsampleNearestBackward(gy.data, gy.shape, x.shape);
        expectGoldenClose(`${v.name}.grad.x`, dx, gc.get(`${v.name}.grad.x`).data, tol[`${v.name}.grad.x`]);
        checked++;
      }
      expect(checked).toBe(3);
    } finally {
      gc.close();
    }
  });
});
