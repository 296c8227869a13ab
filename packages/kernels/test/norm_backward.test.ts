// The norm forwards with saved statistics (norm.ts groupNormWithStats / layerNormWithStats, 'single' and
// split variants) and the norm backward kernels (norm_backward.ts) against the float64 CPU references
// (@cnx/tensor groupNormForward / groupNormBackward / layerNormForward / layerNormBackward): affine, weight
// only, non-affine, fused SiLU, one channel per group, no spatial dims, channel rows long enough to be
// chunked (S > 8192), layer-norm rows spanning several 64-row chunks, large offsets. The backward runs
// from the CPU's statistics (isolating the backward) and once end to end from the GPU's.
//
// Error model: f32 sums. mean and rstd reduce L = Cg*S (or D) values: tolFor('f32', L) relative to the
// data's spread. dx = rstd (w dz - mean(w dz) - xhat mean(w dz xhat)) has terms of magnitude ~rstd*|w|
// (<= ~3 here) and two reductions over L: tolFor('f32', L, 3). dweight / dbias sum N*S (or rows) terms
// of magnitude <= ~2: tolFor('f32', N*S, 2).

import { normBackwardKernels, normKernels, type GpuContext } from '@cnx/kernels';
import {
  groupNormBackward, groupNormForward, layerNormBackward, layerNormForward, type Backend, type Tensor,
} from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

function asContext(backend: Backend): GpuContext {
  if (!('dispatch' in backend)) throw new Error(`expected a WebGPU backend (GpuContext), found ${backend.name}`);
  return backend as unknown as GpuContext;
}
const numel = (s: readonly number[]) => s.reduce((a, d) => a * d, 1);

interface GroupCase { x: number[]; groups: number; silu?: boolean; weight?: boolean; bias?: boolean; shift?: number; eps?: number }
interface LayerCase { x: number[]; weight?: boolean; bias?: boolean; shift?: number; eps?: number }

const groupCases: GroupCase[] = [
  { x: [2, 6, 5, 7], groups: 3 },
  { x: [2, 6, 5, 7], groups: 3, silu: true },
  { x: [3, 4, 7], groups: 4, silu: true, bias: false, eps: 1e-6 }, // one channel per group, weight only
  { x: [2, 5, 3, 3], groups: 1, weight: false, bias: false },
  { x: [3, 6], groups: 2, silu: true }, // no spatial dims
  { x: [2, 4, 3, 3], groups: 2, shift: 100 },
  { x: [1, 2, 9000], groups: 1, silu: true }, // channel rows split into 2 chunks
];

const layerCases: LayerCase[] = [
  { x: [2, 7, 33] },
  { x: [130, 20], shift: -50 }, // 3 row chunks of the parameter reduction
  { x: [5, 48], weight: false, bias: false, eps: 1e-6 },
  { x: [3, 301], bias: false },
  { x: [4, 1] },
];

async function close(what: string, got: Tensor | undefined, ref: Float32Array | undefined, tol: { atol: number; rtol: number }): Promise<void> {
  expect(got === undefined, `${what} presence`).toBe(ref === undefined);
  if (got && ref) expectAllClose(await got.data(), ref, tol, what);
}

describeEachBackend('norm backward kernels', (test) => {
  test('groupNormWithStats: y unchanged, mean / rstd [N, G] match the CPU (single and split variants)', async (backend) => {
    const ctx = asContext(backend);
    const cases: GroupCase[] = [
      { x: [2, 6, 5, 7], groups: 3, silu: true },
      { x: [2, 4, 65, 65], groups: 2, shift: 1000 }, // 4 segments of 8450: the split (stats + apply) variant
      { x: [3, 6], groups: 6, bias: false },
    ];
    let seed = 1;
    for (const c of cases) {
      const C = c.x[1]!, L = numel(c.x) / (c.x[0]! * c.groups);
      const x = randomArray(numel(c.x), seed++, 1, c.shift ?? 0), w = randomArray(C, seed++), b = randomArray(C, seed++);
      const opts = { groups: c.groups, eps: 1e-5, silu: c.silu };
      const ref = groupNormForward(x, c.x, w, c.bias === false ? undefined : b, opts);
      const gx = backend.fromRaw(x, c.x), gw = backend.fromRaw(w, [C]), gb = c.bias === false ? undefined : backend.fromRaw(b, [C]);
      const got = normKernels.groupNormWithStats(ctx, gx, gw, gb, opts);
      const plain = normKernels.groupNorm(ctx, gx, gw, gb, opts);
      const what = `groupNormWithStats ${JSON.stringify(c)}`;
      expect(got.mean.shape, what).toEqual([c.x[0], c.groups]);
      expect(Array.from(await got.y.data()), `${what}: y equals groupNorm's`).toEqual(Array.from(await plain.data()));
      expectAllClose(await got.y.data(), ref.y, tolFor('f32', L), `${what} y`);
      expectAllClose(await got.mean.data(), ref.mean, tolFor('f32', L, 1 + Math.abs(c.shift ?? 0) / 64), `${what} mean`);
      expectAllClose(await got.rstd.data(), ref.rstd, { atol: 0, rtol: tolFor('f32', L).atol }, `${what} rstd`);
      for (const t of [gx, gw, gb, got.y, got.mean, got.rstd, plain]) t?.dispose();
    }
  });

  test('layerNormWithStats: y unchanged, mean / rstd [rows] match the CPU', async (backend) => {
    const ctx = asContext(backend);
    const shape = [3, 5, 37];
    const x = randomArray(numel(shape), 11, 2, 30), w = randomArray(37, 12), b = randomArray(37, 13);
    const ref = layerNormForward(x, shape, w, b, 1e-5);
    const gx = backend.fromRaw(x, shape), gw = backend.fromRaw(w, [37]), gb = backend.fromRaw(b, [37]);
    const got = normKernels.layerNormWithStats(ctx, gx, gw, gb, 1e-5);
    const plain = normKernels.layerNorm(ctx, gx, gw, gb, 1e-5);
    expect(got.mean.shape).toEqual([15]);
    expect(Array.from(await got.y.data())).toEqual(Array.from(await plain.data()));
    expectAllClose(await got.mean.data(), ref.mean, tolFor('f32', 37, 2), 'layerNorm mean');
    expectAllClose(await got.rstd.data(), ref.rstd, { atol: 0, rtol: tolFor('f32', 37).atol }, 'layerNorm rstd');
    for (const t of [gx, gw, gb, got.y, got.mean, got.rstd, plain]) t.dispose();
  });

  test('groupNormBackward: affine / weight only / none, SiLU, chunked rows, from CPU and GPU statistics', async (backend) => {
    const ctx = asContext(backend);
    let seed = 20;
    for (const c of groupCases) {
      const [N, C] = c.x as [number, number];
      const S = numel(c.x) / (N * C), L = (C / c.groups) * S;
      const x = randomArray(numel(c.x), seed++, 1, c.shift ?? 0), dy = randomArray(numel(c.x), seed++);
      const w = c.weight === false ? undefined : randomArray(C, seed++, 1.5), b = c.bias === false ? undefined : randomArray(C, seed++);
      const fwd = groupNormForward(x, c.x, w, b, { groups: c.groups, eps: c.eps ?? 1e-5, silu: c.silu });
      const ref = groupNormBackward(x, c.x, dy, fwd.mean, fwd.rstd, w, b, { groups: c.groups, silu: c.silu });
      const gx = backend.fromRaw(x, c.x), gdy = backend.fromRaw(dy, c.x);
      const gw = w && backend.fromRaw(w, [C]), gb = b && backend.fromRaw(b, [C]);
      const gm = backend.fromRaw(fwd.mean, [N, c.groups]), gr = backend.fromRaw(fwd.rstd, [N, c.groups]);
      const got = normBackwardKernels.groupNormBackward(ctx, gx, gdy, gm, gr, gw, gb, { groups: c.groups, silu: c.silu });
      const what = `groupNormBackward ${JSON.stringify(c)}`;
      await close(`${what} dx`, got.dx, ref.dx, tolFor('f32', L, 3));
      await close(`${what} dweight`, got.dweight, ref.dweight, tolFor('f32', N * S, 2));
      await close(`${what} dbias`, got.dbias, ref.dbias, tolFor('f32', N * S, 2));
      // end to end: statistics from the GPU forward
      const st = normKernels.groupNormWithStats(ctx, gx, gw, gb, { groups: c.groups, eps: c.eps ?? 1e-5, silu: c.silu });
      const e2e = normBackwardKernels.groupNormBackward(ctx, gx, gdy, st.mean, st.rstd, gw, gb, { groups: c.groups, silu: c.silu });
      await close(`${what} dx (GPU statistics)`, e2e.dx, ref.dx, tolFor('f32', L, 3));
      for (const t of [gx, gdy, gw, gb, gm, gr, got.dx, got.dweight, got.dbias, st.y, st.mean, st.rstd, e2e.dx, e2e.dweight, e2e.dbias]) t?.dispose();
    }
  });

  test('layerNormBackward: affine / weight only / none, several row chunks, from CPU and GPU statistics', async (backend) => {
    const ctx = asContext(backend);
    let seed = 60;
    for (const c of layerCases) {
      const D = c.x[c.x.length - 1]!, R = numel(c.x) / D;
      const x = randomArray(numel(c.x), seed++, 1, c.shift ?? 0), dy = randomArray(numel(c.x), seed++);
      const w = c.weight === false ? undefined : randomArray(D, seed++, 1.5), b = c.bias === false ? undefined : randomArray(D, seed++);
      const fwd = layerNormForward(x, c.x, w, b, c.eps ?? 1e-5);
      const ref = layerNormBackward(x, c.x, dy, fwd.mean, fwd.rstd, w, b);
      const gx = backend.fromRaw(x, c.x), gdy = backend.fromRaw(dy, c.x);
      const gw = w && backend.fromRaw(w, [D]), gb = b && backend.fromRaw(b, [D]);
      const gm = backend.fromRaw(fwd.mean, [R]), gr = backend.fromRaw(fwd.rstd, [R]);
      const got = normBackwardKernels.layerNormBackward(ctx, gx, gdy, gm, gr, gw, gb);
      const what = `layerNormBackward ${JSON.stringify(c)}`;
      await close(`${what} dx`, got.dx, ref.dx, tolFor('f32', D, 3));
      await close(`${what} dweight`, got.dweight, ref.dweight, tolFor('f32', R, 2));
      await close(`${what} dbias`, got.dbias, ref.dbias, tolFor('f32', R, 2));
      const st = normKernels.layerNormWithStats(ctx, gx, gw, gb, c.eps ?? 1e-5);
      const e2e = normBackwardKernels.layerNormBackward(ctx, gx, gdy, st.mean, st.rstd, gw, gb);
      await close(`${what} dx (GPU statistics)`, e2e.dx, ref.dx, tolFor('f32', D, 3));
      for (const t of [gx, gdy, gw, gb, gm, gr, got.dx, got.dweight, got.dbias, st.y, st.mean, st.rstd, e2e.dx, e2e.dweight, e2e.dbias]) t?.dispose();
    }
  });

  test('shape errors name what was expected', async (backend) => {
    const ctx = asContext(backend);
    const x = backend.zeros([2, 4, 3]), m = backend.zeros([2, 3]);
    expect(() => normBackwardKernels.groupNormBackward(ctx, x, x, m, m, undefined, undefined, { groups: 2 }))
      .toThrow(/groupNormBackward: expected f32 mean \[2, 2\], found f32 \[2, 3\]/);
    x.dispose(); m.dispose();
  });
}, ['webgpu']);
