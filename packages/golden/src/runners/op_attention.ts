// op_attention: multi-head scaled-dot-product attention, two variant types (case.json args.variants):
//  - 'sdpa': raw q, k, v in torch's (B, H, L, D) layout; outputs probs = softmax(scale * q @ k^T)
//    (B, H, Lq, Lk) and y = probs @ v (B, H, Lq, Dv). y goes through ops.attention (the tiled kernel,
//    heads interleaved: q permuted to [B, L, H, D]); probs through ops.matmul (k^T as a transpose flag)
//    and ops.softmax. scale: the variant's `scale` when given (torch sdpa's argument), else 1/sqrt(D).
//  - 'module': diffusers Attention(query_dim, cross_attention_dim, heads, dim_head) (diffusers
//    src/diffusers/models/attention_processor.py, AttnProcessor2_0): q = to_q(x), k = to_k(ctx),
//    v = to_v(ctx) with ctx = encoder_hidden_states (x itself for self-attention), y = to_out.0(
//    sdpa(q, k, v) with scale dim_head^-0.5). Weights from io under '<name>.module.*'; biases are used
//    where io has them.
import { ops, type Backend, type Tensor } from '@cnx/tensor';
import type { GoldenCase, Produced, Runner } from '../golden_case.js';

interface AttentionVariant { name: string; type: 'sdpa' | 'module'; heads: number; dim_head?: number; scale?: number }

/** [B, H, L, D] (torch sdpa layout) -> [B, L, H*D] (heads interleaved in channels). */
function headsLast(x: Tensor): Tensor {
  const [B, H, L, D] = x.shape as [number, number, number, number];
  const p = x.permute([0, 2, 1, 3]);
  const r = p.reshape([B, L, H * D]);
  p.dispose();
  return r;
}

function sdpa(c: GoldenCase, v: AttentionVariant, backend: Backend, out: Produced): void {
  const q = c.input(`${v.name}.q`, backend), k = c.input(`${v.name}.k`, backend), val = c.input(`${v.name}.v`, backend);
  if (q.rank !== 4 || k.rank !== 4 || val.rank !== 4) {
    throw new Error(`${c.name}: variant '${v.name}' expects q, k, v of shape (B, H, L, D), found [${q.shape}], [${k.shape}], [${val.shape}]`);
  }
  const [B, H, Lq] = q.shape as [number, number, number, number];
  const D = q.shape[3]!, Dv = val.shape[3]!;
  const scale = v.scale ?? 1 / Math.sqrt(D);
  if (c.checkedNames().includes(`${v.name}.probs`)) {
    const kt = k.transpose(-1, -2);
    const logits = ops.matmul(q, kt, { alpha: scale });
    out.set(`${v.name}.probs`, ops.softmax(logits));
    [kt, logits].forEach((t) => t.dispose());
  }
  const q3 = headsLast(q), k3 = headsLast(k), v3 = headsLast(val);
  const y3 = ops.attention(q3, k3, v3, H, { scale });
  const y4 = y3.reshape([B, Lq, H, Dv]);
  const yp = y4.permute([0, 2, 1, 3]);
  out.set(`${v.name}.y`, yp.contiguous());
  [q, k, val, q3, k3, v3, y3, y4, yp].forEach((t) => t.dispose());
}

function optionalInput(c: GoldenCase, name: string, backend: Backend): Tensor | undefined {
  return c.io.has(name) ? c.input(name, backend) : undefined;
}

function attentionModule(c: GoldenCase, v: AttentionVariant, backend: Backend, out: Produced): void {
  const p = `${v.name}.module`;
  const x = c.input(`${v.name}.hidden_states`, backend);
  const ctx = optionalInput(c, `${v.name}.encoder_hidden_states`, backend) ?? x;
  const weights = ['to_q', 'to_k', 'to_v', 'to_out.0'].map((m) => [c.input(`${p}.${m}.weight`, backend), optionalInput(c, `${p}.${m}.bias`, backend)] as const);
  const [[wq, bq], [wk, bk], [wv, bv], [wo, bo]] = weights as [typeof weights[0], typeof weights[0], typeof weights[0], typeof weights[0]];
  const inner = wq.shape[0]!;
  const dimHead = v.dim_head ?? inner / v.heads;
  if (dimHead * v.heads !== inner) {
    throw new Error(`${c.name}: variant '${v.name}': heads=${v.heads} x dim_head=${dimHead} does not match ${p}.to_q.weight [${wq.shape}]`);
  }
  const q = ops.linear(x, wq, bq), k = ops.linear(ctx, wk, bk), val = ops.linear(ctx, wv, bv);
  const a = ops.attention(q, k, val, v.heads, { scale: v.scale ?? 1 / Math.sqrt(dimHead) });
  out.set(`${v.name}.y`, ops.linear(a, wo, bo));
  [q, k, val, a, x, ...weights.flat()].forEach((t) => t?.dispose());
  if (ctx !== x) ctx.dispose();
}

export const opAttention: Runner = async (c, backend) => {
  const out: Produced = new Map();
  for (const v of c.args.variants as AttentionVariant[]) {
    if (typeof v.heads !== 'number') throw new Error(`${c.name}: variant '${v.name}' needs a numeric 'heads', found ${JSON.stringify(v)}`);
    if (v.type === 'sdpa') sdpa(c, v, backend, out);
    else if (v.type === 'module') attentionModule(c, v, backend, out);
    else throw new Error(`${c.name}: variant '${v.name}' has unknown type '${String(v.type)}' (expected 'sdpa' or 'module')`);
  }
  return out;
};
