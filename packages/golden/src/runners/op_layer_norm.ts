// op_layer_norm: F.layer_norm(x, (D,), weight, bias, eps) over the last dim, affine or not.
import { ops } from '@cnx/tensor';
import type { Produced, Runner } from '../golden_case.js';

interface LayerNormVariant { name: string; eps: number; affine?: boolean }

export const opLayerNorm: Runner = async (c, backend) => {
  const out: Produced = new Map();
  for (const v of c.args.variants as LayerNormVariant[]) {
    if (typeof v.eps !== 'number') throw new Error(`${c.name}: variant '${v.name}' needs a numeric 'eps', found ${JSON.stringify(v)}`);
    const x = c.input(`${v.name}.x`, backend);
    const affine = v.affine !== false;
    const w = affine ? c.input(`${v.name}.weight`, backend) : undefined;
    const b = affine ? c.input(`${v.name}.bias`, backend) : undefined;
    out.set(`${v.name}.y`, ops.layerNorm(x, w, b, v.eps));
    [x, w, b].forEach((t) => t?.dispose());
  }
  return out;
};
