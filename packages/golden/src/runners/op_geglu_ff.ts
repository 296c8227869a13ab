// op_geglu_ff: diffusers FeedForward(dim, mult, activation_fn='geglu') (src/diffusers/models/attention.py,
// GEGLU in activations.py): geglu_proj = net.0.proj(x) [..., 2F]; hidden, gate = chunk(2, -1);
// gelu_gate = gelu(gate) (exact erf); geglu = hidden * gelu_gate (geglu, fused); y = net.2(geglu).
// Weights from io under '<name>.module.*'.
import { ops } from '@cnx/tensor';
import { geglu } from '@cnx/unet';
import type { Produced, Runner } from '../golden_case.js';

export const opGegluFf: Runner = async (c, backend) => {
  const out: Produced = new Map();
  const checked = new Set(c.checkedNames());
  for (const v of c.args.variants as { name: string }[]) {
    const p = `${v.name}.module`;
    const x = c.input(`${v.name}.x`, backend);
    const w0 = c.input(`${p}.net.0.proj.weight`, backend), b0 = c.input(`${p}.net.0.proj.bias`, backend);
    const w2 = c.input(`${p}.net.2.weight`, backend), b2 = c.input(`${p}.net.2.bias`, backend);
    const h = ops.linear(x, w0, b0);
    const F = h.shape[h.rank - 1]! / 2;
    if (checked.has(`${v.name}.gelu_gate`)) {
      const gate = h.slice(-1, F, 2 * F);
      out.set(`${v.name}.gelu_gate`, ops.gelu(gate));
      gate.dispose();
    }
    const g = geglu(h);
    out.set(`${v.name}.y`, ops.linear(g, w2, b2));
    out.set(`${v.name}.geglu_proj`, h);
    out.set(`${v.name}.geglu`, g);
    [x, w0, b0, w2, b2].forEach((t) => t.dispose());
  }
  return out;
};
