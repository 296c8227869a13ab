// C[M, N] = A[M, K] @ B[K, N] with float64 accumulation, for the CPU backend's matmul and conv2d.
// Operands are addressed by (offset, [rowStride, colStride]) so transposed views need no copies.
//
// Why it is shaped like this: JS has no SIMD, so speed comes from keeping work in registers and data in
// cache (the GotoBLAS/BLIS structure, scalar):
//  - B is packed per k-block (KC rows) into column panels of NR = 4 doubles: each panel is read
//    sequentially by the micro-kernel and stays in L2 while every row panel of A passes over it;
//  - A is packed per k-block into row panels of MR = 4 doubles;
//  - the 4x4 micro-kernel keeps 16 accumulators in locals (V8 keeps them in registers), so each
//    k step is 8 loads for 16 multiply-adds, against 2 loads + 1 store per multiply-add naively.
// Packing converts f32 to f64 once, and the sums are the exact same f64 products added in the same
// k order per output as the naive loop within a k-block; across k-blocks the partial sums are added
// to C in block order. The result is a float64 sum of float64 products (rounded once to f32 by the
// caller), as the reference backend requires; it can differ from a single running sum only in the
// last bits of the f64 value.

import { parallelGemm } from './gemm_pool.js';

const MR = 4;
const NR = 4;
/** k-block: a 4-row A panel (8 KiB) and a 4-column B panel (8 KiB) of this depth fit in L1 together. */
const KC = 256;

/** Pack A[m0 .. m0+mr, k0 .. k0+kc] into row panels of MR (zero-padded), k-major inside a panel. */
function packA(A: Float32Array, aOff: number, ars: number, acs: number, m0: number, M: number, k0: number, kc: number, out: Float64Array): void {
  let o = 0;
  for (let i0 = m0; i0 < M; i0 += MR) {
    const rows = Math.min(MR, M - i0);
    for (let k = 0; k < kc; k++) {
      const base = aOff + (k0 + k) * acs + i0 * ars;
      for (let i = 0; i < MR; i++) out[o++] = i < rows ? A[base + i * ars]! : 0;
    }
  }
}

/** Pack B[k0 .. k0+kc, 0 .. N] into column panels of NR (zero-padded), k-major inside a panel. */
function packB(B: Float32Array, bOff: number, brs: number, bcs: number, N: number, k0: number, kc: number, out: Float64Array): void {
  let o = 0;
  for (let j0 = 0; j0 < N; j0 += NR) {
    const cols = Math.min(NR, N - j0);
    for (let k = 0; k < kc; k++) {
      const base = bOff + (k0 + k) * brs + j0 * bcs;
      if (cols === NR && bcs === 1) {
        out[o] = B[base]!; out[o + 1] = B[base + 1]!; out[o + 2] = B[base + 2]!; out[o + 3] = B[base + 3]!;
        o += 4;
      } else {
        for (let j = 0; j < NR; j++) out[o++] = j < cols ? B[base + j * bcs]! : 0;
      }
    }
  }
}

/**
 * Rows [m0, m1) of C += A @ B, where C is row-major with N columns. Exported for the worker pool, which
 * runs disjoint row ranges of one product on several threads.
 */
export function gemmRows(
  A: Float32Array, aOff: number, aStrides: readonly [number, number],
  B: Float32Array, bOff: number, bStrides: readonly [number, number],
  M: number, N: number, K: number, C: Float64Array, m0: number, m1: number,
): void {
  const [ars, acs] = aStrides;
  const [brs, bcs] = bStrides;
  const nPanels = Math.ceil(N / NR), mPanels = Math.ceil((m1 - m0) / MR);
  const Bp = new Float64Array(nPanels * NR * Math.min(KC, K));
  const Ap = new Float64Array(mPanels * MR * Math.min(KC, K));
  for (let k0 = 0; k0 < K; k0 += KC) {
    const kc = Math.min(KC, K - k0);
    packB(B, bOff, brs, bcs, N, k0, kc, Bp);
    packA(A, aOff, ars, acs, m0, m1, k0, kc, Ap);
    for (let ip = 0; ip < mPanels; ip++) {
      const i0 = m0 + ip * MR, rows = Math.min(MR, m1 - i0);
      const aBase = ip * MR * kc;
      for (let jp = 0; jp < nPanels; jp++) {
        const j0 = jp * NR, cols = Math.min(NR, N - j0);
        let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        let pa = aBase, pb = jp * NR * kc;
        for (let k = 0; k < kc; k++) {
          const a0 = Ap[pa]!, a1 = Ap[pa + 1]!, a2 = Ap[pa + 2]!, a3 = Ap[pa + 3]!;
          const b0 = Bp[pb]!, b1 = Bp[pb + 1]!, b2 = Bp[pb + 2]!, b3 = Bp[pb + 3]!;
          c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
          c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
          c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
          c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
          pa += 4; pb += 4;
        }
        const o = i0 * N + j0;
        if (rows === MR && cols === NR) {
          C[o] = C[o]! + c00; C[o + 1] = C[o + 1]! + c01; C[o + 2] = C[o + 2]! + c02; C[o + 3] = C[o + 3]! + c03;
          C[o + N] = C[o + N]! + c10; C[o + N + 1] = C[o + N + 1]! + c11; C[o + N + 2] = C[o + N + 2]! + c12; C[o + N + 3] = C[o + N + 3]! + c13;
          C[o + 2 * N] = C[o + 2 * N]! + c20; C[o + 2 * N + 1] = C[o + 2 * N + 1]! + c21; C[o + 2 * N + 2] = C[o + 2 * N + 2]! + c22; C[o + 2 * N + 3] = C[o + 2 * N + 3]! + c23;
          C[o + 3 * N] = C[o + 3 * N]! + c30; C[o + 3 * N + 1] = C[o + 3 * N + 1]! + c31; C[o + 3 * N + 2] = C[o + 3 * N + 2]! + c32; C[o + 3 * N + 3] = C[o + 3 * N + 3]! + c33;
        } else {
          const tile = [c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33];
          for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) C[o + i * N + j] = C[o + i * N + j]! + tile[i * 4 + j]!;
        }
      }
    }
  }
}

export function gemm(
  A: Float32Array, aOff: number, aStrides: readonly [number, number],
  B: Float32Array, bOff: number, bStrides: readonly [number, number],
  M: number, N: number, K: number,
): Float64Array {
  const par = parallelGemm(A, aOff, aStrides, B, bOff, bStrides, M, N, K,
    (As, ao, Bs, bo, C, m0, m1) => gemmRows(As, ao, aStrides, Bs, bo, bStrides, M, N, K, C, m0, m1));
  if (par) return par;
  const C = new Float64Array(M * N);
  gemmRows(A, aOff, aStrides, B, bOff, bStrides, M, N, K, C, 0, M);
  return C;
}
