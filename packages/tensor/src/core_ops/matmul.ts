// Batched matrix product with transpose flags and a fused epilogue: out = act(alpha * a@b + bias) + residual.
//
// Inputs [a, b, bias?, residual?]: a [Ba, M, K] (or [Ba, K, M] with transA), b [Bb, K, N] (or [Bb, N, K]
// with transB: a torch Linear weight read as is), where Ba and Bb are each B or 1 (a batch of 1 is
// shared); bias [N]; residual [B, M, N]. Output [B, M, N]. ops.matmul / ops.linear reach this layout
// without copies (transposed views become flags).

import type { Activation } from '../backend.js';
import { gemm } from '../cpu/gemm.js';
import { defineOp, expectF32, expectRank, expectVector, f32, type TensorMeta } from '../op_definition.js';
import { formatShape } from '../shape.js';
import { applyUnary } from './elementwise.js';

export interface MatmulParams {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  activation?: Activation;
}

/** M, K, N and the batch of a checked matmul. */
export function matmulDims(a: TensorMeta, b: TensorMeta, p: MatmulParams): { B: number; M: number; K: number; N: number } {
  const [Ba, r0, c0] = a.shape as [number, number, number];
  const [Bb, r1, c1] = b.shape as [number, number, number];
  const M = p.transA ? c0 : r0, K = p.transA ? r0 : c0;
  const K2 = p.transB ? c1 : r1, N = p.transB ? r1 : c1;
  if (K !== K2) {
    throw new Error(`matmul: inner dims differ: a ${formatShape(a.shape)}${p.transA ? ' (transposed)' : ''} @ b ${formatShape(b.shape)}${p.transB ? ' (transposed)' : ''}`);
  }
  if (Ba !== Bb && Ba !== 1 && Bb !== 1) throw new Error(`matmul: batches ${Ba} and ${Bb} differ (each must be B or 1)`);
  return { B: Math.max(Ba, Bb), M, K, N };
}

export const matmulOp = defineOp<MatmulParams>({
  name: 'matmul',
  outputs([a, b, bias, residual], p) {
    expectF32('matmul', [a, b, bias, residual], ['a', 'b', 'bias', 'residual']);
    expectRank('matmul', a, 3, 'a [B, M, K]');
    expectRank('matmul', b, 3, 'b [B, K, N]');
    const { B, M, N } = matmulDims(a!, b!, p);
    expectVector('matmul', 'bias', bias, N);
    if (residual && formatShape(residual.shape) !== formatShape([B, M, N])) {
      throw new Error(`matmul: expected residual [${B}, ${M}, ${N}], found ${formatShape(residual.shape)}`);
    }
    return f32([B, M, N]);
  },
  cpu([a, b, bias, residual], p) {
    const { B, M, K, N } = matmulDims(a!, b!, p);
    const A = a!.data as Float32Array, Bm = b!.data as Float32Array;
    const Ba = a!.shape[0]!, Bb = b!.shape[0]!;
    const bv = bias?.data as Float32Array | undefined, res = residual?.data as Float32Array | undefined;
    const alpha = p.alpha ?? 1, act = p.activation ?? 'none';
    const out = new Float32Array(B * M * N);
    for (let bi = 0; bi < B; bi++) {
      const aOff = Ba === 1 ? 0 : bi * M * K, bOff = Bb === 1 ? 0 : bi * K * N;
      const acc = gemm(A, aOff, p.transA ? [1, M] : [K, 1], Bm, bOff, p.transB ? [1, K] : [N, 1], M, N, K);
      const o = bi * M * N;
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          const y = applyUnary(act, alpha * acc[m * N + n]! + (bv ? bv[n]! : 0));
          out[o + m * N + n] = res ? y + res[o + m * N + n]! : y;
        }
      }
    }
    return [out];
  },
});
