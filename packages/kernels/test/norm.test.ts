// Group and layer normalisation kernels (norm.ts) against the CPU reference (float64 statistics):
// group counts from 1 to C, no / one / three spatial dims, batch > 1, segments longer than the
// workgroup and shorter than it, segments long enough for the split (stats + apply) variant, with and without affine parameters, fused SiLU, rows of 1 to 1283
// elements, and large-magnitude inputs (offsets of 1e3..3e4 with O(1) spread, the case where a plain f32
// sum-of-values mean loses ~1e-4) at the same tolerance as zero-mean data. One case of each runs
// through ops on the backend (wiring).
//
// Error model: the statistics reduce len = Cg*S (or D) values; tolFor('f32', len) on the output,
// whose magnitude is O(1) (|weight|, |bias| <= 1).

import { normKernels, type GpuContext } from '@cnx/kernels';
import { CpuBackend, ops, type Backend } from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

const cpu = new CpuBackend();

function asContext(backend: Backend): GpuContext {
  if (!('dispatch' in backend)) throw new Error(`expected a WebGPU backend (GpuContext), found ${backend.name}`);
  return backend as unknown as GpuContext;
}

interface GroupCase { x: number[]; groups: number; eps?: number; silu?: boolean; affine?: boolean; scale?: number; shift?: number }
interface LayerCase { x: number[]; eps?: number; affine?: boolean; scale?: number; shift?: number }

async function checkGroup(backend: Backend, c: GroupCase, seed: number): Promise<void> {
  const C = c.x[1]!;
  const xData = randomArray(c.x.reduce((a, d) => a * d, 1), seed, c.scale ?? 1, c.shift ?? 0);
  const wData = randomArray(C, seed + 1), bData = randomArray(C, seed + 2);
  const make = (be: Backend) => ({
    x: be.fromRaw(xData, c.x),
    w: c.affine === false ? undefined : be.fromRaw(wData, [C]),
    b: c.affine === false ? undefined : be.fromRaw(bData, [C]),
  });
  const opts = { groups: c.groups, eps: c.eps ?? 1e-5, silu: c.silu };
  const g = make(backend), r = make(cpu);
  const got = normKernels.groupNorm(asContext(backend), g.x, g.w, g.b, opts);
  const ref = ops.groupNorm(r.x, opts.groups, r.w, r.b, opts.eps, opts.silu);
  const what = `groupNorm ${JSON.stringify(c)}`;
  expect(got.shape, what).toEqual(c.x);
  const len = (C / c.groups) * c.x.slice(2).reduce((a, d) => a * d, 1);
  expectAllClose(await got.data(), await ref.data(), tolFor('f32', len), what);
  for (const t of [g.x, g.w, g.b, r.x, r.w, r.b, got, ref]) t?.dispose();
}

async function checkLayer(backend: Backend, c: LayerCase, seed: number): Promise<void> {
  const D = c.x[c.x.length - 1]!;
  const xData = randomArray(c.x.reduce((a, d) => a * d, 1), seed, c.scale ?? 1, c.shift ?? 0);
  const wData = randomArray(D, seed + 1), bData = randomArray(D, seed + 2);
  const make = (be: Backend) => ({
    x: be.fromRaw(xData, c.x),
    w: c.affine === false ? undefined : be.fromRaw(wData, [D]),
    b: c.affine === false ? undefined : be.fromRaw(bData, [D]),
  });
  const g = make(backend), r = make(cpu);
  const got = normKernels.layerNorm(asContext(backend), g.x, g.w, g.b, c.eps ?? 1e-5);
  const ref = ops.layerNorm(r.x, r.w, r.b, c.eps ?? 1e-5);
  const what = `layerNorm ${JSON.stringify(c)}`;
  expect(got.shape, what).toEqual(c.x);
  expectAllClose(await got.data(), await ref.data(), tolFor('f32', D), what);
  for (const t of [g.x, g.w, g.b, r.x, r.w, r.b, got, ref]) t?.dispose();
}

describeEachBackend('norm kernels', (test) => {
  test('groupNorm: group counts, spatial ranks, batch, affine or not, fused SiLU', async (backend) => {
    let seed = 1;
    const cases: GroupCase[] = [
      { x: [2, 12, 5, 7], groups: 3 },
      { x: [2, 12, 5, 7], groups: 12, silu: true, eps: 1e-6 }, // one channel per group
      { x: [3, 10, 9, 11], groups: 1, affine: false }, // one group of 990 values
      { x: [3, 6], groups: 2, silu: true }, // no spatial dims: 3 values per group
      { x: [2, 8, 3, 4, 5], groups: 4 }, // three spatial dims
    ];
    for (const c of cases) await checkGroup(backend, c, seed += 3);
  });

  test('groupNorm: large offsets keep full precision', async (backend) => {
    let seed = 50;
    const cases: GroupCase[] = [
      { x: [2, 16, 16, 16], groups: 4, shift: 1000 }, // 1024 values of 1e3 + U(-1, 1) per group
      { x: [2, 16, 16, 16], groups: 4, shift: -3e4, scale: 4, silu: true },
      { x: [1, 4, 8, 8], groups: 2, shift: 1000, scale: 1e-2 }, // variance ~3e-5, far below the offset
    ];
    for (const c of cases) await checkGroup(backend, c, seed += 3);
  });

  test('groupNorm: split variant (stats + apply) for long segments and for few mid-size ones', async (backend) => {
    // Segments just over the split threshold with a partial last chunk and partial last apply tile.
    const S = Math.ceil((normKernels.SPLIT_MIN_LEN + 1000) / 4);
    const cases: GroupCase[] = [
      { x: [2, 4, S], groups: 1, silu: true }, // ControlNeXt's GroupNorm(1, C) shape class
      { x: [1, 8, S], groups: 2, shift: 1000, eps: 1e-6 }, // large offset, two segments of 2 channels
      { x: [1, 4, S], groups: 1, affine: false, shift: -3e4, scale: 4 },
      // Few mid-size segments also split (SPLIT_BELOW_SEGMENTS): the SD1.5 UNet's GroupNorm(32) class,
      // here 4 segments of 2 * 65 * 65 = 8450 values (>= 2 * MIN_CHUNK), a partial last chunk.
      { x: [2, 4, 65, 65], groups: 2, shift: 1000, silu: true },
    ];
    let seed = 70;
    for (const c of cases) await checkGroup(backend, c, seed += 3);
  });

  test('layerNorm: row lengths 1..1283, affine or not, large offsets', async (backend) => {
    let seed = 100;
    const cases: LayerCase[] = [
      { x: [2, 7, 32] },
      { x: [3, 1283] }, // 256 threads, 5-6 elements each, a partial last stride
      { x: [5, 48], affine: false, eps: 1e-6 },
      { x: [4, 1] }, // a single element normalises to 0 (+ bias)
      { x: [2, 3, 320], shift: 1000 },
      { x: [2, 640], shift: -2e4, scale: 8 },
    ];
    for (const c of cases) await checkLayer(backend, c, seed += 3);
  });

  test('ops.groupNorm / ops.layerNorm on the backend agree (WebgpuBackend wiring)', async (backend) => {
    const xData = randomArray(2 * 6 * 4 * 3, 5, 2, 10), wData = randomArray(6, 6), bData = randomArray(6, 7);
    const gn = (be: Backend) => ops.groupNorm(be.fromRaw(xData, [2, 6, 4, 3]), 3, be.fromRaw(wData, [6]), be.fromRaw(bData, [6]), 1e-5, true);
    expectAllClose(await gn(backend).data(), await gn(cpu).data(), tolFor('f32', 24), 'ops.groupNorm');
    const ln = (be: Backend) => ops.layerNorm(be.fromRaw(xData, [24, 6]), be.fromRaw(wData, [6]), be.fromRaw(bData, [6]), 1e-5);
    expectAllClose(await ln(backend).data(), await ln(cpu).data(), tolFor('f32', 6), 'ops.layerNorm');
  });

  test('shape errors name what was expected', async (backend) => {
    const x = backend.zeros([1, 6, 2, 2]);
    expect(() => normKernels.groupNorm(asContext(backend), x, undefined, undefined, { groups: 4, eps: 1e-5 }))
      .toThrow(/groupNorm: expected x \[N, C, \.\.\.\] with C divisible by groups=4, found \[1, 6, 2, 2\]/);
    x.dispose();
  });
}, ['webgpu']);
