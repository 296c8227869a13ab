// C[M, N] = A[M, K] @ B[K, N] with float64 accumulation, for the CPU backend's matmul and conv2d.
// Operands are addressed by (offset, [rowStride, colStride]) so transposed views need no copies.
// Blocked over k so a block of B rows stays in cache while it is reused for every row of A.

export function gemm(
  A: Float32Array, aOff: number, aStrides: readonly [number, number],
  B: Float32Array, bOff: number, bStrides: readonly [number, number],
  M: number, N: number, K: number,
): Float64Array {
  const C = new Float64Array(M * N);
  const [ars, acs] = aStrides;
  const [brs, bcs] = bStrides;
  const KB = 64;
  const bRow = new Float64Array(N);
  for (let k0 = 0; k0 < K; k0 += KB) {
    const k1 = Math.min(K, k0 + KB);
    for (let k = k0; k < k1; k++) {
      const bo = bOff + k * brs;
      if (bcs === 1) for (let n = 0; n < N; n++) bRow[n] = B[bo + n]!;
      else for (let n = 0; n < N; n++) bRow[n] = B[bo + n * bcs]!;
      for (let m = 0; m < M; m++) {
        const a = A[aOff + m * ars + k * acs]!;
        const co = m * N;
        for (let n = 0; n < N; n++) C[co + n] = C[co + n]! + a * bRow[n]!;
      }
    }
  }
  return C;
}
