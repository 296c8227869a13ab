// Batched matrix product with transpose flags and a fused epilogue: out = act(alpha * a@b + bias) + residual.
//
// Inputs [a, b, bias?, residual?]: a [Ba, M, K] (or [Ba, K, M] with transA), b [Bb, K, N] (or [Bb, N, K]
// with transB: a torch Linear weight read as is), where Ba and Bb are each B or 1 (a batch of 1 is
// shared); bias [N]; residual [B, M, N]. Output [B, M, N]. ops.matmul / ops.linear reach this layout
// without copies (transposed views become flags). b may be stored as f16/bf16 (a weight, weight_dtype.ts):
// kernels widen it on load, the reference decodes it; everything else is f32.
//
// Backward (z = alpha * A@B + bias, y = act(z) + residual, A/B the logical operands): gz = g * act'(z)
// with z recomputed from the saved operands when there is an activation (nothing extra is kept), then
// dA = alpha * gz @ B^T, dB = alpha * A^T @ gz, dbias = sum of gz over batch and rows, dresidual = g. The
// products run as matmuls with transpose flags on the stored operands (no transposed copies); an operand
// shared across the batch (batch 1) gets the sum over the batch.

import type { Activation } from '../backend.js';
import { gemm } from '../cpu/gemm.js';
import { unaryBackwardOp } from '../grad_ops/elementwise_backward.js';
import { defineOp, expectF32, expectRank, expectVector, f32, runOp1, type TensorMeta, type OpDefinition } from '../op_definition.js';
import type { Tensor } from '../tensor.js';
import { reduceOp } from './reduce.js';
import { formatShape } from '../shape.js';
import { expectWeightDtype, hostF32 } from '../weight_dtype.js';
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

export const matmulOp: OpDefinition<MatmulParams> = defineOp<MatmulParams>({
  name: 'matmul',
  outputs([a, b, bias, residual], p) {
    expectF32('matmul', [a, undefined, bias, residual], ['a', 'b', 'bias', 'residual']);
    expectWeightDtype('matmul', b, 'b');
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
    const A = a!.data as Float32Array, Bm = hostF32(b!);
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
  saves(needs, p) {
    const act = (p.activation ?? 'none') !== 'none';
    return { inputs: [...(needs[1] || act ? [0] : []), ...(needs[0] || act ? [1] : []), ...(act ? [2] : [])], outputs: [] };
  },
  backward({ inputs: [a, b, bias], params: p, needsGrad, inputShapes }, [g]) {
    const act = p.activation ?? 'none';
    const alpha = p.alpha ?? 1;
    let gz = g!;
    if (act !== 'none') {
      const z = runOp1(matmulOp, [a, b, bias], { transA: p.transA, transB: p.transB, alpha });
      gz = runOp1(unaryBackwardOp, [z, g], { op: act });
    }
    const B = g!.shape[0]!;
    const mm = (x: Tensor, y: Tensor, transA: boolean, transB: boolean, batch: number): Tensor => {
      const r = runOp1(matmulOp, [x, y], { transA, transB, alpha });
      return batch === 1 && B > 1 ? runOp1(reduceOp, [r], { op: 'sum', axes: [0] }) : r;
    };
    const Ba = inputShapes[0]![0]!, Bb = inputShapes[1]![0]!;
    // A [M, K] is a (or a^T when transA), B [K, N] is b (or b^T when transB).
    const da = !needsGrad[0] ? undefined
      : p.transA ? mm(b!, gz, p.transB ?? false, true, Ba)   // dA^T = B @ gz^T
      : mm(gz, b!, false, !p.transB, Ba);                     // dA = gz @ B^T
    const db = !needsGrad[1] ? undefined
      : p.transB ? mm(gz, a!, true, p.transA ?? false, Bb)    // dB^T = gz^T @ A
      : mm(a!, gz, !p.transA, false, Bb);                     // dB = A^T @ gz
    let dbias: Tensor | undefined;
    if (needsGrad[2]) {
      const s = runOp1(reduceOp, [gz], { op: 'sum', axes: [0, 1] });
      dbias = s.reshape([s.shape[2]!]);
    }
    return [da, db, dbias, needsGrad[3] ? g : undefined];
  },
});
