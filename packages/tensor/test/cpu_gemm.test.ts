// The CPU backend's blocked/packed gemm (cpu/gemm.ts) and its two-thread split (cpu/gemm_pool.ts) must
// give the reference result: a float64 sum of products, rounded once to f32. Checked against plain
// triple loops in float64 on awkward sizes (not multiples of the 4x4 tile, K across the 256 k-block),
// transposed operands, shared batches, epilogues, and a product big enough to use the second thread.
import { describe, expect, it } from 'vitest';
import { CpuBackend, matmulOp, ops, runOp1 } from '@cnx/tensor';
import { expectAllClose, randomArray } from '../../../test/harness/allclose.js';

// Both sides accumulate in f64 and round once to f32: they agree to within one f32 rounding.
const TOL = { atol: 1e-7, rtol: 2.4e-7 };

function naiveMatmul(a: Float32Array, b: Float32Array, M: number, N: number, K: number, transA: boolean, transB: boolean): Float64Array {
  const c = new Float64Array(M * N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += a[transA ? k * M + m : m * K + k]! * b[transB ? n * K + k : k * N + n]!;
    c[m * N + n] = s;
  }
  return c;
}

describe('cpu gemm', () => {
  const be = new CpuBackend();
  for (const [M, N, K, transA, transB] of [
    [37, 29, 300, false, false], [5, 3, 7, true, false], [13, 22, 257, false, true], [9, 1, 513, true, true],
    [64, 260, 301, false, true], // 5.0M MACs: above the two-thread threshold
  ] as const) {
    it(`matmul M${M} N${N} K${K} transA=${transA} transB=${transB}`, async () => {
      const a = randomArray(M * K, M + K), b = randomArray(K * N, N + 3);
      const ta = be.fromRaw(a, transA ? [1, K, M] : [1, M, K]), tb = be.fromRaw(b, transB ? [1, N, K] : [1, K, N]);
      const got = await runOp1(matmulOp, [ta, tb], { transA, transB }).data();
      expectAllClose(got, naiveMatmul(a, b, M, N, K, transA, transB), TOL, 'matmul');
    });
  }

  it('batched matmul with a shared operand, bias, alpha, activation and residual', async () => {
    const [B, M, N, K] = [3, 11, 7, 45];
    const a = randomArray(B * M * K, 1), w = randomArray(N * K, 2), bias = randomArray(N, 3), res = randomArray(B * M * N, 4);
    const y = ops.matmul(be.fromRaw(a, [B, M, K]), be.fromRaw(w, [N, K]).transpose(0, 1),
      { bias: be.fromRaw(bias, [N]), alpha: 0.5, activation: 'silu', residual: be.fromRaw(res, [B, M, N]) });
    expect(y.shape).toEqual([B, M, N]);
    const ref = new Float64Array(B * M * N);
    for (let bi = 0; bi < B; bi++) {
      const c = naiveMatmul(a.subarray(bi * M * K), w, M, N, K, false, true);
      for (let i = 0; i < M * N; i++) {
        const z = 0.5 * c[i]! + bias[i % N]!;
        ref[bi * M * N + i] = z / (1 + Math.exp(-z)) + res[bi * M * N + i]!;
      }
    }
    expectAllClose(await y.data(), ref, TOL, 'matmul epilogue');
  });

  for (const [N, C, H, W, O, k, stride, pad, groups] of [
    [3, 6, 9, 7, 10, 3, 1, [1, 1, 1, 1], 2],
    [2, 5, 11, 10, 7, 3, 2, [0, 1, 0, 1], 1],
    [1, 4, 6, 6, 5, 1, 1, [0, 0, 0, 0], 1],
    [2, 64, 12, 12, 33, 3, 1, [1, 1, 1, 1], 1], // 5.5M MACs: two threads
    [1, 64, 250, 250, 4, 3, 1, [1, 1, 1, 1], 1], // im2col of 36M elements > 2^25: split into row bands
  ] as const) {
    it(`conv2d N${N} C${C} ${H}x${W} -> O${O} k${k} s${stride} pad ${pad.join(',')} groups ${groups}`, async () => {
      const x = randomArray(N * C * H * W, 7), w = randomArray(O * (C / groups) * k * k, 8), bias = randomArray(O, 9);
      const y = ops.conv2d(be.fromRaw(x, [N, C, H, W]), be.fromRaw(w, [O, C / groups, k, k]), be.fromRaw(bias, [O]),
        { stride, padding: pad, groups, activation: 'relu' });
      const [pt, pb, pl, pr] = pad;
      const Ho = Math.floor((H + pt + pb - k) / stride) + 1, Wo = Math.floor((W + pl + pr - k) / stride) + 1;
      expect(y.shape).toEqual([N, O, Ho, Wo]);
      const Cg = C / groups, Og = O / groups;
      const ref = new Float64Array(N * O * Ho * Wo);
      for (let n = 0; n < N; n++) for (let o = 0; o < O; o++) for (let oy = 0; oy < Ho; oy++) for (let ox = 0; ox < Wo; ox++) {
        let s = bias[o]!;
        const g = Math.floor(o / Og);
        for (let c = 0; c < Cg; c++) for (let ky = 0; ky < k; ky++) for (let kx = 0; kx < k; kx++) {
          const iy = oy * stride - pt + ky, ix = ox * stride - pl + kx;
          if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
          s += x[((n * C + g * Cg + c) * H + iy) * W + ix]! * w[((o * Cg + c) * k + ky) * k + kx]!;
        }
        ref[((n * O + o) * Ho + oy) * Wo + ox] = Math.max(0, s);
      }
      expectAllClose(await y.data(), ref, TOL, 'conv2d');
    });
  }
});
