// conv2d backward kernels (conv2d_backward.ts: implicit-GEMM grad input and grad weight, split-K, the
// bias reduction) against the float64 CPU references (@cnx/tensor conv2dBackwardInput / Weight / Bias):
// odd sizes, batch > 1, stride 2 with rows and columns the forward never reads, the VAE's asymmetric
// (0, 1, 0, 1) padding, groups with a rectangular kernel and unequal strides/paddings, 1x1, depthwise
// 5x5, channel counts that take each tile; every tile and a forced K split on each geometry; the
// automatic split-K path; then the grad_conv golden case (torch autograd) with its tolerances.
//
// Error model: each gradient is an f32 dot product of K terms of magnitude <= 1 (inputs in [-1, 1]):
// K = Og*kh*kw for dx, N*Ho*Wo for dw and db. As the forward's test: tolFor('f32', K, max(1, sqrt(K)/3)).

import { conv2dBackwardKernel, type GpuContext } from '@cnx/kernels';
import {
  conv2dBackwardBias, conv2dBackwardInput, conv2dBackwardWeight, conv2dOutputSize, type Backend, type Conv2dBackwardParams,
} from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { expectGoldenClose, openGoldenCase } from '../../../test/harness/golden_case_data.js';

function asContext(backend: Backend): GpuContext {
  if (!('dispatch' in backend)) throw new Error(`expected a WebGPU backend (GpuContext), found ${backend.name}`);
  return backend as unknown as GpuContext;
}
const numel = (s: readonly number[]) => s.reduce((a, d) => a * d, 1);
const tolK = (K: number) => tolFor('f32', K, Math.max(1, Math.sqrt(K) / 3));

interface Case {
  x: [number, number, number, number];
  w: [number, number, number, number];
  stride?: [number, number];
  padding?: [number, number, number, number];
  groups?: number;
}

const cases: Case[] = [
  { x: [2, 3, 7, 9], w: [5, 3, 3, 3], padding: [1, 1, 1, 1] },
  { x: [1, 2, 9, 8], w: [3, 2, 3, 3], stride: [2, 2], padding: [1, 0, 0, 0] }, // last row and column unread
  { x: [2, 3, 9, 8], w: [4, 3, 3, 3], stride: [2, 2], padding: [0, 1, 0, 1] },
  { x: [2, 4, 7, 6], w: [6, 2, 3, 2], stride: [2, 1], padding: [2, 0, 1, 1], groups: 2 },
  { x: [2, 5, 3, 5], w: [7, 5, 1, 1] },
  { x: [1, 3, 6, 7], w: [3, 1, 5, 5], padding: [2, 2, 2, 2], groups: 3 },
  // 40 input / 70 output channels: the 'wide' tile for both GEMMs, automatic split-K for dx (K = 630)
  { x: [1, 40, 6, 5], w: [70, 40, 3, 3], padding: [1, 1, 1, 1] },
  // dw reduces N*Ho*Wo = 512 values over one output tile: automatic split-K for dw
  { x: [2, 4, 16, 16], w: [6, 4, 3, 3], padding: [1, 1, 1, 1] },
];

async function check(backend: Backend, c: Case, seed: number, tile?: conv2dBackwardKernel.ConvBackwardTile, splitK?: number): Promise<void> {
  const ctx = asContext(backend);
  const p: Conv2dBackwardParams = { stride: c.stride ?? [1, 1], padding: c.padding ?? [0, 0, 0, 0], groups: c.groups ?? 1 };
  const [Ho, Wo] = conv2dOutputSize(c.x[2], c.x[3], c.w[2], c.w[3], p);
  const dyShape = [c.x[0], c.w[0], Ho, Wo];
  const x = randomArray(numel(c.x), seed), w = randomArray(numel(c.w), seed + 1), dy = randomArray(numel(dyShape), seed + 2);
  const gx = backend.fromRaw(x, c.x), gw = backend.fromRaw(w, c.w), gdy = backend.fromRaw(dy, dyShape);
  const what = `${JSON.stringify(c)} tile ${JSON.stringify(tile ?? 'auto')} splitK ${splitK ?? 'auto'}`;
  const dx = conv2dBackwardKernel.conv2dBackwardInput(ctx, gdy, gw, c.x, p, tile, splitK);
  expect(dx.shape, what).toEqual(c.x);
  expectAllClose(await dx.data(), conv2dBackwardInput(dy, dyShape, w, c.w, c.x, p), tolK((c.w[0] / p.groups) * c.w[2] * c.w[3]), `dx ${what}`);
  const dw = conv2dBackwardKernel.conv2dBackwardWeight(ctx, gx, gdy, c.w, p, tile, splitK);
  expect(dw.shape, what).toEqual(c.w);
  expectAllClose(await dw.data(), conv2dBackwardWeight(x, c.x, dy, dyShape, c.w, p), tolK(c.x[0] * Ho * Wo), `dw ${what}`);
  for (const t of [gx, gw, gdy, dx, dw]) t.dispose();
}

describeEachBackend('conv2d backward kernels', (test) => {
  test('grad input and grad weight, automatic tile and split', async (backend) => {
    let seed = 1;
    for (const c of cases) await check(backend, c, seed += 3);
  });

  test('every tile, and a forced K split, on two geometries', async (backend) => {
    // (each geometry x tile is its own pipeline: SwiftShader compiles take seconds, so two geometries:
    // stride 2 with unread rows, and groups with a rectangular kernel and unequal strides)
    let seed = 100;
    for (const c of [cases[1]!, cases[3]!]) {
      for (const tile of Object.values(conv2dBackwardKernel.CONV_BACKWARD_TILES)) await check(backend, c, seed += 3, tile);
      await check(backend, c, seed += 3, undefined, 3);
    }
  });

  test('the split is chosen where the GEMM has few tiles and a long reduction', () => {
    // SD1.5 320-channel 3x3 at 64x64 latents, batch 2: dw has 5 x 45 tiles and K = 8192
    const sd = conv2dBackwardKernel.planConv2dBackward('grad_weight', [2, 320, 64, 64], [320, 320, 3, 3], [2, 320, 64, 64],
      { stride: [1, 1], padding: [1, 1, 1, 1], groups: 1 });
    expect(sd.params.splitK).toBe(3);
    // ControlNeXt's first conv at 512x512: a 16 x 27 weight reduced over 2 * 262144 positions
    const cn = conv2dBackwardKernel.planConv2dBackward('grad_weight', [2, 3, 512, 512], [16, 3, 3, 3], [2, 16, 512, 512],
      { stride: [1, 1], padding: [1, 1, 1, 1], groups: 1 });
    expect(cn.params.splitK).toBe(256);
    expect(cn.params.tile).toEqual(conv2dBackwardKernel.CONV_BACKWARD_TILES.thin);
  });

  test('grad bias: one chunk per channel and several', async (backend) => {
    const ctx = asContext(backend);
    for (const shape of [[2, 5, 3, 7], [1, 3, 130, 131]]) {
      const dy = randomArray(numel(shape), 7);
      const g = backend.fromRaw(dy, shape);
      const db = conv2dBackwardKernel.conv2dBackwardBias(ctx, g);
      expectAllClose(await db.data(), conv2dBackwardBias(dy, shape), tolK(numel(shape) / shape[1]!), `db [${shape}]`);
      g.dispose(); db.dispose();
    }
  });

  test('grad_conv golden case: every variant', async (backend) => {
    const ctx = asContext(backend);
    const gc = openGoldenCase('grad_conv');
    try {
      for (const v of gc.json.args.variants as { name: string; stride: number; padding: number; groups?: number; bias?: boolean; asym_pad?: boolean }[]) {
        const x = gc.get(`${v.name}.x`), w = gc.get(`${v.name}.weight`), gy = gc.get(`${v.name}.gy`);
        const p: Conv2dBackwardParams = {
          stride: [v.stride, v.stride], padding: v.asym_pad ? [0, 1, 0, 1] : [v.padding, v.padding, v.padding, v.padding], groups: v.groups ?? 1,
        };
        const gx = backend.fromRaw(x.data, x.shape), gw = backend.fromRaw(w.data, w.shape), gdy = backend.fromRaw(gy.data, gy.shape);
        const dx = conv2dBackwardKernel.conv2dBackwardInput(ctx, gdy, gw, x.shape, p);
        const dw = conv2dBackwardKernel.conv2dBackwardWeight(ctx, gx, gdy, w.shape, p);
        const db = conv2dBackwardKernel.conv2dBackwardBias(ctx, gdy);
        const tol = gc.json.tolerance;
        expectGoldenClose(`${v.name}.grad.x`, await dx.data(), gc.get(`${v.name}.grad.x`).data, tol[`${v.name}.grad.x`]);
        expectGoldenClose(`${v.name}.grad.weight`, await dw.data(), gc.get(`${v.name}.grad.weight`).data, tol[`${v.name}.grad.weight`]);
        if (v.bias !== false) expectGoldenClose(`${v.name}.grad.bias`, await db.data(), gc.get(`${v.name}.grad.bias`).data, tol[`${v.name}.grad.bias`]);
        for (const t of [gx, gw, gdy, dx, dw, db]) t.dispose();
      }
    } finally {
      gc.close();
    }
  });

  test('shape errors name what was expected', async (backend) => {
    const ctx = asContext(backend);
    const dy = backend.zeros([1, 2, 2, 2]), w = backend.zeros([2, 1, 3, 3]);
    expect(() => conv2dBackwardKernel.conv2dBackwardInput(ctx, dy, w, [1, 1, 3, 3], { stride: [1, 1], padding: [1, 1, 1, 1], groups: 1 }))
      .toThrow(/conv2dBackwardInput: expected dy \[1, 2, 3, 3\] \(the forward's output shape\), found \[1, 2, 2, 2\]/);
    dy.dispose(); w.dispose();
  });
}, ['webgpu']);
