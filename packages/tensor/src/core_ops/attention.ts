// Multi-head scaled-dot-product attention, heads interleaved in the channel dim as torch Linear outputs
// are: q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv] -> out [B, Lq, H, Dv],
// out = softmax(scale * q.k^T [+ causal mask]) @ v. With `stats`, also the logsumexp of each row of the
// scaled (masked) scores, lse [B, Lq, H] (natural log): what a flash-attention backward recomputes the
// probabilities from (p = exp(scale * q.k - lse)) without keeping the [Lq, Lk] matrix.
// Backward: recorded with `stats` on (the caller sees only `out`), the tape keeps q, k, v, out and lse,
// and attention_backward (grad_ops/attention_backward.ts) gives dq, dk, dv. A gradient wrt the logsumexp
// itself is not supported.

import { attentionBackwardOp } from '../grad_ops/attention_backward.js';
import { defineOp, expectF32, expectRank, f32, runOp } from '../op_definition.js';
import { formatShape } from '../shape.js';

export interface AttentionParams {
  scale: number;
  causal?: boolean;
  stats?: boolean;
}

export const attentionOp = defineOp<AttentionParams>({
  name: 'attention',
  outputs([q, k, v], p) {
    expectF32('attention', [q, k, v], ['q', 'k', 'v']);
    const [B, Lq, H, D] = expectRank('attention', q, 4, 'q [B, Lq, H, D]').shape as [number, number, number, number];
    expectRank('attention', k, 4, 'k [B, Lk, H, D]');
    expectRank('attention', v, 4, 'v [B, Lk, H, Dv]');
    const Lk = k!.shape[1]!;
    if (k!.shape[0] !== B || k!.shape[2] !== H || k!.shape[3] !== D || v!.shape[0] !== B || v!.shape[1] !== Lk || v!.shape[2] !== H) {
      throw new Error(`attention: expected q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv], found ${formatShape(q!.shape)}, ${formatShape(k!.shape)}, ${formatShape(v!.shape)}`);
    }
    if (p.causal && Lq !== Lk) throw new Error(`attention: causal masking needs Lq === Lk, found ${Lq} and ${Lk}`);
    const out = [B, Lq, H, v!.shape[3]!];
    return p.stats ? f32(out, [B, Lq, H]) : f32(out);
  },
  cpu([q, k, v], p) {
    const [B, Lq, H, D] = q!.shape as [number, number, number, number];
    const Lk = k!.shape[1]!, Dv = v!.shape[3]!;
    const Q = q!.data as Float32Array, K = k!.data as Float32Array, V = v!.data as Float32Array;
    const out = new Float32Array(B * Lq * H * Dv);
    const lse = p.stats ? new Float32Array(B * Lq * H) : undefined;
    const s = new Float64Array(Lk);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        for (let i = 0; i < Lq; i++) {
          const qo = ((b * Lq + i) * H + h) * D;
          let m = -Infinity;
          const jEnd = p.causal ? i + 1 : Lk;
          for (let j = 0; j < jEnd; j++) {
            const ko = ((b * Lk + j) * H + h) * D;
            let dot = 0;
            for (let d = 0; d < D; d++) dot += Q[qo + d]! * K[ko + d]!;
            s[j] = dot * p.scale;
            if (s[j]! > m) m = s[j]!;
          }
          let z = 0;
          for (let j = 0; j < jEnd; j++) z += s[j] = Math.exp(s[j]! - m);
          if (lse) lse[(b * Lq + i) * H + h] = m + Math.log(z);
          const oo = ((b * Lq + i) * H + h) * Dv;
          for (let d = 0; d < Dv; d++) {
            let acc = 0;
            for (let j = 0; j < jEnd; j++) acc += s[j]! * V[((b * Lk + j) * H + h) * Dv + d]!;
            out[oo + d] = acc / z;
          }
        }
      }
    }
    return lse ? [out, lse] : [out];
  },
  recordParams: (p) => (p.stats ? p : { ...p, stats: true }),
  backward({ inputs: [q, k, v], outputs: [o, lse], params }, [g, glse]) {
    if (glse) throw new Error('attention backward: a gradient wrt the logsumexp output is not supported');
    if (!g) return [];
    return runOp(attentionBackwardOp, [q, k, v, o, g, lse], { scale: params.scale, causal: params.causal });
  },
});
