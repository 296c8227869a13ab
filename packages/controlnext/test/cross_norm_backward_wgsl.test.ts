// The fused cross-normalisation backward (cross_norm_backward.ts) on WebGPU against the float64 CPU
// reference (@cnx/tensor crossNormBackward): both orders ('pool_then_norm' SD1.5, 'norm_then_pool'
// SDXL/SVD), divisible, uneven and identity pooling, a control SMALLER than the feature, a control batch
// of 1 shared by N samples (gradients summed over the batch), per-sample and number scales (dscale [N] or
// its sum [1]), residual off, eps 1e-12 and 1e-5, several statistics chunks per sample (Chan merge of
// partials) with features offset by 500 (the shifted two-pass statistics).
//
// Error model: each gradient is a sum of terms from f32 reductions over L = max(C*h*w, C*h'*w') values
// (the means, stds, sum g and sum g (c - mu_c)), each with error ~ sqrt(L) eps relative to the size of
// its terms; so atol = 8 sqrt(L) eps M with M the largest |gradient| of that output, and rtol = 8 eps.
// dscale = sum_i g_i c_hat_i is one such sum: atol = 8 sqrt(L) eps sum_i |g_i c_hat_i| (computed from the
// float64 reference forward with s = 1 and no residual, i.e. c_hat itself).

import { crossNormBackward, crossNormBackwardKernel, crossNormForwardF64, type CrossNormOptions, type CrossNormReferenceParams } from '@cnx/controlnext';
import type { GpuContext } from '@cnx/kernels';
import type { Backend } from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

const EPS = 1.19e-7;
const numel = (s: readonly number[]) => s.reduce((p, d) => p * d, 1);
const maxAbs = (a: ArrayLike<number>) => { let m = 0; for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!)); return m; };

function asContext(backend: Backend): GpuContext {
  if (!('dispatch' in backend)) throw new Error(`expected a WebGPU backend (GpuContext), found ${backend.name}`);
  return backend as unknown as GpuContext;
}

interface Case {
  x: number[];
  control: number[];
  order: CrossNormOptions['order'];
  scale: number | number[];
  eps?: number;
  residual?: boolean;
  xShift?: number;
}

async function check(backend: Backend, c: Case, seed: number): Promise<void> {
  const x = randomArray(numel(c.x), seed, 1, c.xShift ?? 0), ctl = randomArray(numel(c.control), seed + 1, 2, -0.3);
  const dy = randomArray(numel(c.x), seed + 2);
  const eps = c.eps ?? 1e-12;
  const refScale = typeof c.scale === 'number' ? c.scale : Float32Array.from(c.scale);
  const p: CrossNormReferenceParams = { eps, order: c.order, scale: refScale, residual: c.residual };
  const ref = crossNormBackward({ shape: c.x, data: x }, { shape: c.control, data: ctl }, { shape: c.x, data: dy }, p);
  const gx = backend.fromRaw(x, c.x), gc = backend.fromRaw(ctl, c.control), gdy = backend.fromRaw(dy, c.x);
  const gs = typeof c.scale === 'number' ? c.scale : backend.fromRaw(Float32Array.from(c.scale), [c.scale.length]);
  const got = crossNormBackwardKernel.crossNormBackward(asContext(backend), gx, gc, gdy, { eps, order: c.order, scale: gs, residual: c.residual });
  const what = JSON.stringify(c);
  expect(got.dx.shape).toEqual(c.x);
  expect(got.dcontrol.shape).toEqual(c.control);
  expect(got.dscale.shape).toEqual([typeof c.scale === 'number' ? 1 : c.x[0]!]);
  const L = Math.max(numel(c.x.slice(1)), numel(c.control.slice(1)));
  for (const [name, g, r] of [['dx', got.dx, ref.dx.data], ['dcontrol', got.dcontrol, ref.dcontrol.data]] as const) {
    expectAllClose(await g.data(), r, { atol: 8 * Math.sqrt(L) * EPS * maxAbs(r), rtol: 8 * EPS }, `${name} ${what}`);
  }
  const cHat = crossNormForwardF64({ shape: c.x, data: x }, { shape: c.control, data: ctl }, { ...p, scale: 1, residual: false }).data;
  const N = c.x[0]!, per = numel(c.x.slice(1));
  let termSum = 0;
  for (let i = 0; i < N * per; i++) termSum += Math.abs(dy[i]! * cHat[i]!);
  expectAllClose(await got.dscale.data(), ref.dscale.data, { atol: 8 * Math.sqrt(L) * EPS * termSum, rtol: 8 * EPS }, `dscale ${what}`);
  for (const t of [gx, gc, gdy, gs, got.dx, got.dcontrol, got.dscale]) if (typeof t !== 'number') t.dispose();
}

describeEachBackend('crossNorm backward kernel', (test) => {
  test('pool_then_norm (SD1.5): 2x2 and uneven bins, shared control, scales, residual off', async (backend) => {
    let seed = 1;
    const cases: Case[] = [
      { x: [2, 16, 6, 6], control: [2, 16, 12, 12], order: 'pool_then_norm', scale: [0.5, -1.5] },
      { x: [3, 5, 5, 7], control: [1, 5, 7, 13], order: 'pool_then_norm', scale: 0.8 },
      { x: [2, 3, 5, 7], control: [2, 3, 5, 7], order: 'pool_then_norm', scale: [1, 0.3], residual: false, eps: 1e-5 },
    ];
    for (const c of cases) await check(backend, c, seed += 7);
  });

  test('norm_then_pool (SDXL, SVD): uneven bins, control smaller than the feature, shared control, residual off', async (backend) => {
    let seed = 50;
    const cases: Case[] = [
      { x: [2, 4, 4, 4], control: [2, 4, 9, 9], order: 'norm_then_pool', scale: [0.7, 1.2], eps: 1e-5, residual: false },
      { x: [2, 3, 4, 5], control: [1, 3, 3, 3], order: 'norm_then_pool', scale: 1.3 },
    ];
    for (const c of cases) await check(backend, c, seed += 7);
  });

  test('several statistics chunks per sample, features offset by 500', async (backend) => {
    let seed = 80;
    const cases: Case[] = [
      { x: [2, 64, 9, 9], control: [1, 64, 18, 18], order: 'norm_then_pool', scale: [0.5, 2], xShift: 500 },
      { x: [1, 64, 9, 9], control: [1, 64, 18, 18], order: 'pool_then_norm', scale: 0.9, xShift: 500 },
    ];
    for (const c of cases) await check(backend, c, seed += 7);
  });
}, ['webgpu']);
