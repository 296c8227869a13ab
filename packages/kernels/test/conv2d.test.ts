// The implicit-GEMM conv2d kernel (conv2d.ts) against the CPU reference: 3x3 stride 1 and stride 2 with
// asymmetric padding (diffusers Downsample2D pads (0, 1, 0, 1)), C = 3 inputs (the control modules'
// first conv), 1x1 (the pointwise variant, and 1x1 stride 2 on the general path), grouped and
// rectangular kernels, batch > 1, channel and pixel counts that are not multiples of any tile, every tile
// shape forced explicitly, split-K (automatic and forced), and the epilogue (bias, every activation,
// residual). One case runs through ops.conv2d on the backend to check the wiring.
//
// Error model: each output is an f32 dot product of K = Cg*kh*kw terms of magnitude <= 1 (random inputs
// in [-1, 1]). The rounding error of each addition scales with the running sum, whose RMS grows like
// sqrt(K)/3 (products of two U(-1, 1) have std 1/3), hence tolFor('f32', K, max(1, sqrt(K)/3)).

import { conv2dKernel, type GpuContext } from '@cnx/kernels';
import { CpuBackend, ops, type Activation, type Backend, type Conv2dOptions, runOp1, conv2dOp } from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

const cpu = new CpuBackend();

function asContext(backend: Backend): GpuContext {
  if (!('dispatch' in backend)) throw new Error(`expected a WebGPU backend (GpuContext), found ${backend.name}`);
  return backend as unknown as GpuContext;
}

interface Case {
  x: [number, number, number, number];
  /** [O, Cg, kh, kw] */
  w: [number, number, number, number];
  stride?: [number, number];
  padding?: [number, number, number, number];
  groups?: number;
  bias?: boolean;
  residual?: boolean;
  activation?: Activation;
}

async function check(backend: Backend, c: Case, seed: number, tile?: conv2dKernel.Conv2dTile, splitK?: number): Promise<void> {
  const opts: Conv2dOptions = {
    stride: c.stride ?? [1, 1], padding: c.padding ?? [0, 0, 0, 0], groups: c.groups ?? 1, activation: c.activation,
  };
  const xData = randomArray(c.x.reduce((a, d) => a * d, 1), seed);
  const wData = randomArray(c.w.reduce((a, d) => a * d, 1), seed + 1);
  const bData = c.bias === false ? undefined : randomArray(c.w[0], seed + 2);
  const make = (be: Backend) => ({ x: be.fromRaw(xData, c.x), w: be.fromRaw(wData, c.w), b: bData && be.fromRaw(bData, [c.w[0]]) });
  const r = make(cpu);
  const plain = runOp1(conv2dOp, [r.x, r.w, r.b], { ...opts, activation: 'none' });
  const resData = c.residual ? randomArray(plain.size, seed + 3) : undefined;
  const rRes = resData && cpu.fromRaw(resData, plain.shape);
  const ref = runOp1(conv2dOp, [r.x, r.w, r.b, rRes], opts);
  const g = make(backend);
  const gRes = resData && backend.fromRaw(resData, plain.shape);
  const got = conv2dKernel.conv2dWithTile(asContext(backend), g.x, g.w, g.b, { ...opts, residual: gRes }, tile, splitK);
  const what = `conv2d ${JSON.stringify(c)} tile ${JSON.stringify(tile ?? 'auto')} splitK ${splitK ?? 'auto'}`;
  expect(got.shape, what).toEqual(ref.shape);
  const K = c.w[1] * c.w[2] * c.w[3];
  expectAllClose(await got.data(), await ref.data(), tolFor('f32', K, Math.max(1, Math.sqrt(K) / 3)), what);
  for (const t of [r.x, r.w, r.b, plain, rRes, ref, g.x, g.w, g.b, gRes, got]) t?.dispose();
}

const geometry: Case[] = [
  // SD 3x3 conv (odd spatial size, 2 samples, O not a multiple of any tile)
  { x: [2, 8, 9, 7], w: [19, 8, 3, 3], padding: [1, 1, 1, 1] },
  // stride 2 with padding 1 (Downsample2D padding=1) and the VAE's asymmetric (0, 1, 0, 1)
  { x: [2, 6, 9, 10], w: [10, 6, 3, 3], stride: [2, 2], padding: [1, 1, 1, 1] },
  { x: [2, 6, 9, 10], w: [6, 6, 3, 3], stride: [2, 2], padding: [0, 1, 0, 1] },
  // C = 3 input, no bias (control module conv_in)
  { x: [1, 3, 13, 11], w: [16, 3, 3, 3], padding: [1, 1, 1, 1], bias: false },
  // 1x1: the pointwise GEMM variant, with residual; and 1x1 stride 2 on the general path
  { x: [2, 13, 5, 7], w: [21, 13, 1, 1], residual: true },
  { x: [2, 13, 5, 7], w: [7, 13, 1, 1], stride: [2, 2] },
  // groups, rectangular kernel, unequal strides and paddings on every side
  { x: [2, 12, 7, 6], w: [9, 4, 3, 2], groups: 3, stride: [2, 1], padding: [2, 0, 1, 1] },
  // 5x5 kernel larger than a K step, depthwise (groups = C)
  { x: [1, 5, 8, 8], w: [5, 1, 5, 5], groups: 5, padding: [2, 2, 2, 2] },
  // few output tiles and K = 1152: the automatic split-K path (SD's 1280-channel convs at 8x8)
  { x: [1, 128, 3, 3], w: [70, 128, 3, 3], padding: [1, 1, 1, 1], residual: true, activation: 'silu' },
];

const activations: Activation[] = ['none', 'relu', 'silu', 'gelu', 'gelu_tanh', 'quick_gelu'];

describeEachBackend('conv2d kernel', (test) => {
  test('geometry: kernel sizes, strides, asymmetric padding, groups, C=3, 1x1', async (backend) => {
    let seed = 1;
    for (const c of geometry) await check(backend, c, seed += 5);
  });

  test('every tile shape, with partial row, column and K tiles', async (backend) => {
    let seed = 100;
    for (const tile of Object.values(conv2dKernel.CONV2D_TILES)) {
      // 130 rows: two row tiles of even the 128-row tile; 2*6*7 = 84 columns; K = 63
      await check(backend, { x: [2, 7, 6, 7], w: [130, 7, 3, 3], padding: [1, 1, 1, 1], residual: true }, seed += 4, tile);
      await check(backend, { x: [2, 6, 5, 5], w: [18, 3, 1, 1], groups: 2 }, seed += 4, tile);
    }
  });

  test('split-K: slices that do not divide K, with the epilogue, groups and 1x1', async (backend) => {
    let seed = 300;
    expect(conv2dKernel.chooseSplitK(2, 1152)).toBeGreaterThan(1);
    expect(conv2dKernel.chooseSplitK(2, 640)).toBe(1);
    expect(conv2dKernel.chooseSplitK(1024, 11520)).toBe(1);
    for (const splitK of [2, 3, 5]) {
      await check(backend, { x: [2, 9, 4, 5], w: [13, 9, 3, 3], padding: [1, 1, 1, 1], residual: true, activation: 'gelu' }, seed += 3, undefined, splitK);
    }
    await check(backend, { x: [2, 12, 5, 4], w: [9, 4, 3, 3], groups: 3, stride: [2, 2], padding: [0, 1, 0, 1], bias: false }, seed += 3, conv2dKernel.CONV2D_TILES.thin, 4);
    await check(backend, { x: [1, 40, 3, 5], w: [33, 40, 1, 1] }, seed += 3, conv2dKernel.CONV2D_TILES.large, 3);
  });

  test('epilogue: bias, every activation, residual', async (backend) => {
    let seed = 200;
    for (const activation of activations) {
      await check(backend, { x: [2, 5, 6, 5], w: [11, 5, 3, 3], padding: [1, 1, 1, 1], activation, residual: true }, seed += 3);
    }
  });

  test('ops.conv2d on the backend agrees (WebgpuBackend wiring)', async (backend) => {
    const xData = randomArray(2 * 4 * 6 * 6, 7), wData = randomArray(8 * 4 * 3 * 3, 8), bData = randomArray(8, 9);
    const run = (be: Backend) => ops.conv2d(be.fromRaw(xData, [2, 4, 6, 6]), be.fromRaw(wData, [8, 4, 3, 3]), be.fromRaw(bData, [8]), { stride: 2, padding: [0, 1, 0, 1] });
    const got = run(backend), ref = run(cpu);
    expect(got.shape).toEqual([2, 8, 3, 3]);
    expectAllClose(await got.data(), await ref.data(), tolFor('f32', 36, 2), 'ops.conv2d');
  });

  test('shape errors name what was expected', async (backend) => {
    const x = backend.zeros([1, 4, 5, 5]), w = backend.zeros([6, 3, 3, 3]);
    expect(() => conv2dKernel.conv2d(asContext(backend), x, w, undefined, { stride: [1, 1], padding: [0, 0, 0, 0], groups: 1 }))
      .toThrow(/expected x \[N, C, H, W\] and w \[O, C\/groups, kh, kw\] with groups=1, found x \[1, 4, 5, 5\], w \[6, 3, 3, 3\]/);
    x.dispose(); w.dispose();
  });
}, ['webgpu']);
