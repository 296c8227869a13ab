// The fused ControlNeXt cross normalisation kernel (cross_norm.ts) against the CPU reference: both
// orders ('pool_then_norm' SD1.5, 'norm_then_pool' SDXL/SVD), divisible, non-divisible and identity
// pooling, a control batch of 1 shared by N samples (CFG), scalar and per-sample scales (including a
// negative one), residual: false, eps of 1e-12 and 1e-5, more than one statistics chunk per sample (the
// Chan merge of partials), and large offsets (features near 1e3 with O(1) spread, a control near -500).
// One case runs through ops.crossNorm on the backend (wiring).
//
// Error model: statistics reduce len = C*h*w values (tolFor('f32', len)); the output is x + s*c_hat,
// whose f32 rounding is relative to its magnitude (the rtol term covers outputs near 1e3).

import { crossNorm, type CrossNormOptions } from '@cnx/controlnext';
import { CpuBackend, type Backend } from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

const cpu = new CpuBackend();

interface Case {
  x: [number, number, number, number];
  control: [number, number, number, number];
  order: CrossNormOptions['order'];
  scale: number | number[];
  eps?: number;
  residual?: boolean;
  xShift?: number;
  controlShift?: number;
}

async function check(backend: Backend, c: Case, seed: number): Promise<void> {
  const xData = randomArray(c.x.reduce((a, d) => a * d, 1), seed, 1, c.xShift ?? 0);
  const cData = randomArray(c.control.reduce((a, d) => a * d, 1), seed + 1, 2, c.controlShift ?? 0);
  const make = (be: Backend) => ({
    x: be.fromRaw(xData, c.x),
    control: be.fromRaw(cData, c.control),
    scale: typeof c.scale === 'number' ? c.scale : be.fromRaw(Float32Array.from(c.scale), [c.scale.length]),
  });
  const base = { order: c.order, eps: c.eps ?? 1e-12, residual: c.residual };
  const g = make(backend), r = make(cpu);
  const got = crossNorm(g.x, g.control, { ...base, scale: g.scale });
  const ref = crossNorm(r.x, r.control, { ...base, scale: r.scale });
  const what = `crossNorm ${JSON.stringify(c)}`;
  expect(got.shape, what).toEqual(c.x);
  const len = c.x[1] * c.x[2] * c.x[3];
  expectAllClose(await got.data(), await ref.data(), tolFor('f32', len), what);
  for (const t of [g.x, g.control, g.scale, r.x, r.control, r.scale, got, ref]) if (typeof t !== 'number') t.dispose();
}

describeEachBackend('crossNorm extension op (WGSL vs the float64 reference)', (test) => {
  test('pool_then_norm (SD1.5): pooling kinds, scalar and per-sample scale, residual off', async (backend) => {
    let seed = 1;
    const cases: Case[] = [
      { x: [2, 16, 6, 6], control: [2, 16, 12, 12], order: 'pool_then_norm', scale: 0.8 }, // 2x2 bins
      { x: [1, 8, 4, 6], control: [1, 8, 7, 13], order: 'pool_then_norm', scale: 1, xShift: 0.5 }, // uneven bins
      { x: [3, 5, 5, 7], control: [3, 5, 5, 7], order: 'pool_then_norm', scale: [0.5, 1.5, -1] }, // identity pool
      { x: [2, 6, 5, 4], control: [2, 6, 10, 8], order: 'pool_then_norm', scale: 1.3, residual: false },
    ];
    for (const c of cases) await check(backend, c, seed += 3);
  });

  test('norm_then_pool (SDXL, SVD): statistics at the control resolution, eps 1e-5', async (backend) => {
    let seed = 40;
    const cases: Case[] = [
      { x: [2, 8, 5, 5], control: [2, 8, 11, 9], order: 'norm_then_pool', scale: 1, eps: 1e-5 },
      { x: [2, 4, 6, 6], control: [2, 4, 6, 6], order: 'norm_then_pool', scale: [0.2, 0.7] },
    ];
    for (const c of cases) await check(backend, c, seed += 3);
  });

  test('a control batch of 1 shared by every sample (CFG)', async (backend) => {
    let seed = 60;
    await check(backend, { x: [3, 6, 4, 4], control: [1, 6, 8, 8], order: 'pool_then_norm', scale: [1, 0.5, 2] }, seed += 3);
    await check(backend, { x: [2, 6, 4, 4], control: [1, 6, 9, 7], order: 'norm_then_pool', scale: 0.9 }, seed += 3);
  });

  test('several statistics chunks per sample and large offsets', async (backend) => {
    let seed = 80;
    // 16*32*32 = 16384 values per sample: 4 chunks of x, 4 of the 64x64 control (norm_then_pool: 16 chunks)
    await check(backend, { x: [2, 16, 32, 32], control: [2, 16, 64, 64], order: 'pool_then_norm', scale: 0.7, xShift: 1000, controlShift: -500 }, seed += 3);
    await check(backend, { x: [2, 16, 32, 32], control: [1, 16, 40, 40], order: 'norm_then_pool', scale: [0.7, 2], xShift: 100 }, seed += 3);
  });

  test('shape errors name what was expected', async (backend) => {
    const x = backend.zeros([2, 4, 3, 3]), control = backend.zeros([2, 5, 6, 6]);
    expect(() => crossNorm(x, control, { order: 'pool_then_norm', eps: 1e-12, scale: 1 }))
      .toThrow(/control \[2, 5, 6, 6\] does not match feature \[2, 4, 3, 3\] \(channels must agree, batch N or 1\)/);
    x.dispose(); control.dispose();
  });
}, ['webgpu']);
