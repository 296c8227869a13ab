// 16-bit weight storage (issue 16, @cnx/tensor weight_dtype.ts): matmul (a @ b and the Linear path, whose
// weight arrives as a transposed view), conv2d (implicit GEMM, pointwise, grouped, split-K, every tile
// shape's staging path) and group/layer norm (single and split variants) with weights stored as f16 and
// bf16, through ops.* on each backend.
//
// What is checked, and why the tolerances are what they are:
//  - Widening is exact (every f16/bf16 value is an f32), so an op on 16-bit weights must compute exactly
//    what it computes on f32 weights holding the decoded values. On each backend the 16-bit result is
//    compared with the same backend's result on those f32 weights with tolerance 0: same kernel plan,
//    same arithmetic, only the load differs. This catches a wrong half (odd/even element), a wrong
//    word index, bf16/f16 confusion, and a weight read through the wrong binding.
//  - Against the float64 CPU reference on the decoded weights, the f32 tolerance of the op (tolFor with
//    its reduction length, as in conv2d.test.ts / norm.test.ts) on WebGPU; exact on the CPU backend,
//    whose reference decodes the 16-bit weights itself.
// Weight element counts are odd so the last word of a 16-bit buffer holds one element.

import { conv2dKernel } from '@cnx/kernels';
import {
  conv2dOp, CpuBackend, fromFloat32, ops, runOp1, toFloat32, type Backend, type Conv2dParams, type Tensor,
} from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor, type Tol } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

const cpu = new CpuBackend();
const HALVES = ['f16', 'bf16'] as const;
type Half = (typeof HALVES)[number];

/** Random weights as 16-bit raw data plus the f32 values they decode to. */
function halfWeights(n: number, seed: number, dtype: Half, scale = 1): { raw: Uint16Array; decoded: Float32Array } {
  const raw = fromFloat32(randomArray(n, seed, scale), dtype) as Uint16Array;
  return { raw, decoded: toFloat32(raw, dtype) };
}

async function expectSame(backend: Backend, got: Tensor, onF32: Tensor, ref: Tensor, tol: Tol, what: string): Promise<void> {
  const g = await got.data();
  expectAllClose(g, await onF32.data(), { atol: 0, rtol: 0 }, `${what}: 16-bit weights vs the same values in f32 on ${backend.name}`);
  expectAllClose(g, await ref.data(), backend.name === 'cpu' ? { atol: 0, rtol: 0 } : tol, `${what}: against the float64 reference`);
}

interface ConvCase { x: [number, number, number, number]; w: [number, number, number, number]; stride?: [number, number]; padding?: [number, number, number, number]; groups?: number; splitK?: number; tile?: conv2dKernel.Conv2dTileName }

const convCases: ConvCase[] = [
  { x: [2, 5, 9, 7], w: [19, 5, 3, 3], padding: [1, 1, 1, 1] },                         // implicit GEMM, odd counts
  { x: [2, 13, 5, 7], w: [21, 13, 1, 1] },                                               // pointwise variant
  { x: [2, 12, 7, 6], w: [9, 4, 3, 1], groups: 3, stride: [2, 1], padding: [2, 0, 1, 1] }, // grouped, asymmetric
  { x: [1, 64, 3, 3], w: [37, 64, 3, 3], padding: [1, 1, 1, 1], splitK: 3 },             // split-K
  { x: [1, 3, 11, 13], w: [7, 3, 3, 3], padding: [1, 1, 1, 1], tile: 'thin' },
  { x: [1, 9, 17, 17], w: [131, 9, 1, 1], tile: 'large' },
];

describeEachBackend('f16 weight storage', (test) => {
  test('matmul: a @ b with 16-bit b, and ops.linear with a 16-bit [out, in] weight', async (backend) => {
    let seed = 1;
    for (const dtype of HALVES) {
      for (const [M, K, N] of [[7, 13, 9], [33, 70, 65], [1, 31, 19]] as const) {
        const x = randomArray(M * K, seed++), w = halfWeights(N * K, seed++, dtype, 0.5), bias = randomArray(N, seed++);
        // Linear: weight [N, K] read transposed (transB), with a bias and a fused activation.
        const xt = backend.fromRaw(x, [M, K]), bt = backend.fromRaw(bias, [N]);
        const w16 = backend.fromRaw(w.raw, [N, K], dtype), w32 = backend.fromRaw(w.decoded, [N, K]);
        const got = ops.linear(xt, w16, bt, 'silu'), onF32 = ops.linear(xt, w32, bt, 'silu');
        const rx = cpu.fromRaw(x, [M, K]), rb = cpu.fromRaw(bias, [N]), rw = cpu.fromRaw(w.decoded, [N, K]);
        const ref = ops.linear(rx, rw, rb, 'silu');
        await expectSame(backend, got, onF32, ref, tolFor('f32', K, Math.sqrt(K) / 3), `linear ${dtype} ${M}x${K}x${N}`);
        // a @ b with b [K, N] stored 16-bit (not transposed), batched a, residual.
        const bk = halfWeights(K * N, seed++, dtype, 0.5);
        const a3 = randomArray(2 * M * K, seed++), res = randomArray(2 * M * N, seed++);
        const at = backend.fromRaw(a3, [2, M, K]), rt = backend.fromRaw(res, [2, M, N]);
        const b16 = backend.fromRaw(bk.raw, [K, N], dtype), b32 = backend.fromRaw(bk.decoded, [K, N]);
        const got2 = ops.matmul(at, b16, { residual: rt }), onF32b = ops.matmul(at, b32, { residual: rt });
        const ra = cpu.fromRaw(a3, [2, M, K]), rr = cpu.fromRaw(res, [2, M, N]), rbk = cpu.fromRaw(bk.decoded, [K, N]);
        const ref2 = ops.matmul(ra, rbk, { residual: rr });
        await expectSame(backend, got2, onF32b, ref2, tolFor('f32', K, Math.sqrt(K) / 3), `matmul ${dtype} [2,${M},${K}]@[${K},${N}]`);
        for (const t of [xt, bt, w16, w32, got, onF32, rx, rb, rw, ref, at, rt, b16, b32, got2, onF32b, ra, rr, rbk, ref2]) t.dispose();
      }
    }
  });

  test('conv2d: 16-bit weights on every variant (implicit GEMM, pointwise, grouped, split-K, tiles)', async (backend) => {
    let seed = 100;
    for (const dtype of HALVES) {
      for (const c of convCases) {
        const params: Conv2dParams = { stride: c.stride ?? [1, 1], padding: c.padding ?? [0, 0, 0, 0], groups: c.groups ?? 1, activation: 'gelu' };
        const nx = c.x.reduce((a, d) => a * d, 1), nw = c.w.reduce((a, d) => a * d, 1);
        const x = randomArray(nx, seed++), w = halfWeights(nw, seed++, dtype), bias = randomArray(c.w[0], seed++);
        const xt = backend.fromRaw(x, c.x), bt = backend.fromRaw(bias, [c.w[0]]);
        const w16 = backend.fromRaw(w.raw, c.w, dtype), w32 = backend.fromRaw(w.decoded, c.w);
        const what = `conv2d ${dtype} ${JSON.stringify(c)}`;
        let got: Tensor, onF32: Tensor;
        if (backend.name === 'webgpu' && (c.splitK || c.tile)) {
          // Force the variant under test (the automatic plan may pick another for these small shapes).
          const ctx = backend as unknown as Parameters<typeof conv2dKernel.conv2dWithTile>[0];
          const tile = c.tile ? conv2dKernel.CONV2D_TILES[c.tile] : undefined;
          got = conv2dKernel.conv2dWithTile(ctx, xt, w16, bt, params, tile, c.splitK);
          onF32 = conv2dKernel.conv2dWithTile(ctx, xt, w32, bt, params, tile, c.splitK);
        } else {
          got = runOp1(conv2dOp, [xt, w16, bt], params);
          onF32 = runOp1(conv2dOp, [xt, w32, bt], params);
        }
        const rx = cpu.fromRaw(x, c.x), rb = cpu.fromRaw(bias, [c.w[0]]), rw = cpu.fromRaw(w.decoded, c.w);
        const ref = runOp1(conv2dOp, [rx, rw, rb], params);
        const K = c.w[1] * c.w[2] * c.w[3];
        expect(got.shape).toEqual(ref.shape);
        await expectSame(backend, got, onF32, ref, tolFor('f32', K, Math.max(1, Math.sqrt(K) / 3)), what);
        for (const t of [xt, bt, w16, w32, got, onF32, rx, rb, rw, ref]) t.dispose();
      }
    }
  });

  test('group norm and layer norm: 16-bit weight and bias (single and split variants)', async (backend) => {
    let seed = 200;
    for (const dtype of HALVES) {
      // [N, C, H, W] with groups; the second shape is long enough for the split (stats + apply) variant.
      for (const [shape, groups, silu] of [[[2, 6, 5, 3], 3, true], [[1, 3, 160, 150], 1, false]] as const) {
        const C = shape[1];
        const x = randomArray(shape.reduce((a: number, d: number) => a * d, 1), seed++, 2, 0.5);
        const w = halfWeights(C, seed++, dtype), b = halfWeights(C, seed++, dtype);
        const xt = backend.fromRaw(x, shape);
        const w16 = backend.fromRaw(w.raw, [C], dtype), b16 = backend.fromRaw(b.raw, [C], dtype);
        const w32 = backend.fromRaw(w.decoded, [C]), b32 = backend.fromRaw(b.decoded, [C]);
        const got = ops.groupNorm(xt, groups, w16, b16, 1e-5, silu), onF32 = ops.groupNorm(xt, groups, w32, b32, 1e-5, silu);
        const rx = cpu.fromRaw(x, shape), rw = cpu.fromRaw(w.decoded, [C]), rb = cpu.fromRaw(b.decoded, [C]);
        const ref = ops.groupNorm(rx, groups, rw, rb, 1e-5, silu);
        await expectSame(backend, got, onF32, ref, tolFor('f32', (C / groups) * shape[2] * shape[3]), `groupNorm ${dtype} ${shape} G=${groups}`);
        for (const t of [xt, w16, b16, w32, b32, got, onF32, rx, rw, rb, ref]) t.dispose();
      }
      const D = 37, rows = 5;
      const x = randomArray(rows * D, seed++), w = halfWeights(D, seed++, dtype), b = halfWeights(D, seed++, dtype);
      const xt = backend.fromRaw(x, [rows, D]);
      const w16 = backend.fromRaw(w.raw, [D], dtype), b16 = backend.fromRaw(b.raw, [D], dtype);
      const w32 = backend.fromRaw(w.decoded, [D]), b32 = backend.fromRaw(b.decoded, [D]);
      const got = ops.layerNorm(xt, w16, b16, 1e-5), onF32 = ops.layerNorm(xt, w32, b32, 1e-5);
      const rx = cpu.fromRaw(x, [rows, D]), rw = cpu.fromRaw(w.decoded, [D]), rb = cpu.fromRaw(b.decoded, [D]);
      const ref = ops.layerNorm(rx, rw, rb, 1e-5);
      await expectSame(backend, got, onF32, ref, tolFor('f32', D), `layerNorm ${dtype} [${rows}, ${D}]`);
      for (const t of [xt, w16, b16, w32, b32, got, onF32, rx, rw, rb, ref]) t.dispose();
    }
  });

  test('ops that read activations refuse 16-bit inputs with a clear error', (backend) => {
    const x16 = backend.fromRaw(new Uint16Array(6), [1, 6], 'f16');
    const w = backend.fromRaw(new Float32Array(12), [2, 6]);
    expect(() => ops.linear(x16, w)).toThrow(/matmul: expected f32 a, found f16/);
    const i32 = backend.fromRaw(new Int32Array(12), [2, 6], 'i32');
    const x = backend.fromRaw(new Float32Array(6), [1, 6]);
    expect(() => ops.linear(x, i32)).toThrow(/matmul: expected b of dtype f32, f16 or bf16.*found i32/);
    [x16, w, i32, x].forEach((t) => t.dispose());
  });
});
