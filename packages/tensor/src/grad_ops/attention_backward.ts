// Attention backward (FlashAttention-2 style: the probabilities are recomputed from the saved logsumexp,
// never stored) as an op: float64 reference cpu/attention_backward.ts, WebGPU kernel @cnx/kernels
// attention_backward.ts (three dispatches, tiles sized to the device's workgroup memory, so SD's
// 4096 x 4096 tokens x 8 heads runs inside the default limits).
//
// attention_backward [q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv], o [B, Lq, H, Dv], dO, lse [B, Lq, H]]
//   -> [dq, dk, dv] in the shapes of q, k, v. Params: the forward's scale and causal flag.

import { attentionBackward } from '../cpu/attention_backward.js';
import type { AttentionParams } from '../core_ops/attention.js';
import { defineOp, expectF32, expectRank, f32 } from '../op_definition.js';
import { formatShape, shapesEqual } from '../shape.js';

export type AttentionBackwardParams = Pick<AttentionParams, 'scale' | 'causal'>;

export const attentionBackwardOp = defineOp<AttentionBackwardParams>({
  name: 'attention_backward',
  outputs([q, k, v, o, dO, lse], p) {
    const op = 'attention_backward';
    expectF32(op, [q, k, v, o, dO, lse], ['q', 'k', 'v', 'o', 'dO', 'lse']);
    const [B, Lq, H, D] = expectRank(op, q, 4, 'q [B, Lq, H, D]').shape as [number, number, number, number];
    const Lk = expectRank(op, k, 4, 'k [B, Lk, H, D]').shape[1]!;
    const Dv = expectRank(op, v, 4, 'v [B, Lk, H, Dv]').shape[3]!;
    const want: [string, typeof q, number[]][] = [
      ['k', k, [B, Lk, H, D]], ['v', v, [B, Lk, H, Dv]], ['o', o, [B, Lq, H, Dv]], ['dO', dO, [B, Lq, H, Dv]], ['lse', lse, [B, Lq, H]],
    ];
    for (const [name, t, s] of want) {
      if (!t || !shapesEqual(t.shape, s)) throw new Error(`${op}: expected ${name} ${formatShape(s)} (q ${formatShape(q!.shape)}), found ${t ? formatShape(t.shape) : 'nothing'}`);
    }
    if (p.causal && Lq !== Lk) throw new Error(`${op}: causal masking needs Lq === Lk, found ${Lq} and ${Lk}`);
    return f32(q!.shape, k!.shape, v!.shape);
  },
  cpu([q, k, v, o, dO, lse], p) {
    const h = (t: typeof q) => ({ shape: t!.shape, data: t!.data as Float32Array });
    const r = attentionBackward(h(q), h(k), h(v), h(o), h(dO), h(lse), p);
    return [r.dq.data, r.dk.data, r.dv.data];
  },
});
