// Pooling and nearest-upsampling backward on WebGPU (resample_backward.ts, gather form) against the float64
// CPU references (@cnx/tensor adaptiveAvgPool2dBackward / upsampleNearestBackward): divisible and
// overlapping pooling bins, output larger than the input, global pooling, 2x upsampling, non-integer
// ratios (torch's float32 source rule), fewer outputs than inputs; then grad_misc (pool_div,
// pool_nondiv, upsample_x2) with the case's tolerances.
//
// Error model: each input sums at most (ceil(Ho/H) + 1) * (ceil(Wo/W) + 1) terms of magnitude <= 1
// (global pooling: H*W terms of 1/(H*W)); tolFor('f32', terms).

import { resampleBackwardKernels, type GpuContext } from '@cnx/kernels';
import { adaptiveAvgPool2dBackward, upsampleNearestBackward, type Backend } from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { expectGoldenClose, openGoldenCase } from '../../../test/harness/golden_case_data.js';

function asContext(backend: Backend): GpuContext {
  if (!('dispatch' in backend)) throw new Error(`expected a WebGPU backend (GpuContext), found ${backend.name}`);
  return backend as unknown as GpuContext;
}

type Kind = 'pool' | 'nearest';
const cases: [Kind, number[], [number, number]][] = [
  ['pool', [2, 3, 8, 6], [4, 3]],
  ['pool', [1, 2, 10, 14], [4, 6]],
  ['pool', [2, 1, 3, 5], [5, 7]],
  ['pool', [1, 2, 9, 9], [1, 1]],
  ['nearest', [2, 3, 5, 7], [10, 14]],
  ['nearest', [1, 2, 5, 3], [7, 8]],
  ['nearest', [1, 2, 7, 9], [3, 4]],
  ['nearest', [1, 1, 3, 7], [17, 10]],
];

describeEachBackend('resampling backward kernels', (test) => {
  test('adaptive average pooling and nearest upsampling, gather form', async (backend) => {
    const ctx = asContext(backend);
    let seed = 1;
    for (const [kind, xShape, size] of cases) {
      const dyShape = [xShape[0]!, xShape[1]!, size[0], size[1]];
      const dy = randomArray(dyShape.reduce((a, d) => a * d, 1), seed++);
      const g = backend.fromRaw(dy, dyShape);
      const got = kind === 'pool' ? resampleBackwardKernels.adaptiveAvgPool2dBackward(ctx, g, xShape) : resampleBackwardKernels.upsampleNearestBackward(ctx, g, xShape);
      const ref = kind === 'pool' ? adaptiveAvgPool2dBackward(dy, dyShape, xShape) : upsampleNearestBackward(dy, dyShape, xShape);
      expect(got.shape).toEqual(xShape);
      const terms = (Math.ceil(size[0] / xShape[2]!) + 1) * (Math.ceil(size[1] / xShape[3]!) + 1);
      expectAllClose(await got.data(), ref, tolFor('f32', terms), `${kind} [${xShape}] -> [${size}]`);
      g.dispose(); got.dispose();
    }
  });

  test('grad_misc golden case: pool_div, pool_nondiv, upsample_x2', async (backend) => {
    const ctx = asContext(backend);
    const gc = openGoldenCase('grad_misc');
    try {
      let checked = 0;
      for (const v of gc.json.args.variants as { name: string; op: string }[]) {
        if (v.op !== 'adaptive_avg_pool' && v.op !== 'upsample_nearest') continue;
        const x = gc.get(`${v.name}.x`), gy = gc.get(`${v.name}.gy`);
        const g = backend.fromRaw(gy.data, gy.shape);
        const dx = v.op === 'adaptive_avg_pool' ? resampleBackwardKernels.adaptiveAvgPool2dBackward(ctx, g, x.shape) : resampleBackwardKernels.upsampleNearestBackward(ctx, g, x.shape);
        expectGoldenClose(`${v.name}.grad.x`, await dx.data(), gc.get(`${v.name}.grad.x`).data, gc.json.tolerance[`${v.name}.grad.x`]);
        g.dispose(); dx.dispose();
        checked++;
      }
      expect(checked).toBe(3);
    } finally {
      gc.close();
    }
  });
}, ['webgpu']);
