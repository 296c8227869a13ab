// Nearest upsampling and adaptive average pooling (resample.ts) against the CPU reference: 2x, explicit
// odd sizes (diffusers Upsample2D's upsample_size path), non-integer ratios where torch's f32 scale
// rule decides the source pixel, downsampling by nearest, and pooling with divisible, non-divisible,
// identity and enlarging (overlapping bins) sizes, batch > 1. One case each through ops (wiring).
//
// Error model: nearest copies values, so it must match exactly; pooling averages a bin of b values in
// f32, tolFor('f32', b) with b the largest bin.

import { resampleKernels, type GpuContext } from '@cnx/kernels';
import { CpuBackend, ops, type Backend } from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

const cpu = new CpuBackend();
const EXACT = { atol: 0, rtol: 0 };

function asContext(backend: Backend): GpuContext {
  if (!('dispatch' in backend)) throw new Error(`expected a WebGPU backend (GpuContext), found ${backend.name}`);
  return backend as unknown as GpuContext;
}

type Shape4 = [number, number, number, number];

/** Largest adaptive-pool bin along one axis: ceil((i+1)*in/out) - floor(i*in/out). */
function maxBin(inSize: number, outSize: number): number {
  let m = 0;
  for (let i = 0; i < outSize; i++) m = Math.max(m, Math.ceil(((i + 1) * inSize) / outSize) - Math.floor((i * inSize) / outSize));
  return m;
}

async function check(backend: Backend, kind: 'nearest' | 'pool', x: Shape4, size: [number, number], seed: number): Promise<void> {
  const data = randomArray(x.reduce((a, d) => a * d, 1), seed, 3);
  const gx = backend.fromRaw(data, x), rx = cpu.fromRaw(data, x);
  const ctx = asContext(backend);
  const got = kind === 'nearest' ? resampleKernels.upsampleNearest(ctx, gx, size) : resampleKernels.adaptiveAvgPool2d(ctx, gx, size);
  const ref = kind === 'nearest' ? ops.upsampleNearest(rx, size) : ops.adaptiveAvgPool2d(rx, size);
  const what = `${kind} [${x.join(', ')}] -> [${size.join(', ')}]`;
  expect(got.shape, what).toEqual([x[0], x[1], ...size]);
  const tol = kind === 'nearest' ? EXACT : tolFor('f32', maxBin(x[2], size[0]) * maxBin(x[3], size[1]), 3);
  expectAllClose(await got.data(), await ref.data(), tol, what);
  for (const t of [gx, rx, got, ref]) t.dispose();
}

describeEachBackend('resample kernels', (test) => {
  test('upsampleNearest: 2x, explicit sizes, non-integer ratios, shrinking', async (backend) => {
    let seed = 1;
    const cases: [Shape4, [number, number]][] = [
      [[2, 3, 5, 7], [10, 14]],
      [[1, 4, 5, 7], [11, 15]], // upsample_size with odd skip shapes
      [[1, 2, 3, 3], [7, 29]], // ratios 3/7 and 3/29: float32(in/out) rounding decides the source pixel
      [[2, 2, 9, 10], [4, 3]], // nearest downsampling
      [[1, 1, 1, 1], [3, 2]],
    ];
    for (const [x, size] of cases) await check(backend, 'nearest', x, size, seed += 2);
  });

  test('adaptiveAvgPool2d: divisible, non-divisible, identity, enlarging', async (backend) => {
    let seed = 50;
    const cases: [Shape4, [number, number]][] = [
      [[2, 3, 16, 12], [4, 6]],
      [[2, 5, 10, 14], [4, 6]], // overlapping, uneven bins
      [[1, 2, 7, 5], [7, 5]], // identity
      [[1, 2, 3, 4], [5, 7]], // output larger than input
      [[1, 3, 9, 9], [1, 1]], // global average
    ];
    for (const [x, size] of cases) await check(backend, 'pool', x, size, seed += 2);
  });

  test('ops.upsampleNearest / ops.adaptiveAvgPool2d on the backend agree (WebgpuBackend wiring)', async (backend) => {
    const data = randomArray(2 * 3 * 5 * 6, 9);
    const up = (be: Backend) => ops.upsampleNearest(be.fromRaw(data, [2, 3, 5, 6]), [10, 12]);
    expectAllClose(await up(backend).data(), await up(cpu).data(), EXACT, 'ops.upsampleNearest');
    const pool = (be: Backend) => ops.adaptiveAvgPool2d(be.fromRaw(data, [2, 3, 5, 6]), [2, 4]);
    expectAllClose(await pool(backend).data(), await pool(cpu).data(), tolFor('f32', 6), 'ops.adaptiveAvgPool2d');
  });

  test('shape errors name what was expected', async (backend) => {
    const x = backend.zeros([1, 2, 3, 3]);
    expect(() => resampleKernels.adaptiveAvgPool2d(asContext(backend), x, [0, 2]))
      .toThrow(/adaptiveAvgPool2d: expected x \[N, C, H, W\] and a positive integer size, found x \[1, 2, 3, 3\], size \[0, 2\]/);
    x.dispose();
  });
}, ['webgpu']);
