// op_linear: F.linear(x, weight, bias) per variant.
import { ops } from '@cnx/tensor';
import type { Produced, Runner } from '../golden_case.js';

export const opLinear: Runner = async (c, backend) => {
  const out: Produced = new Map();
  for (const v of c.args.variants as { name: string; bias?: boolean }[]) {
    const x = c.input(`${v.name}.x`, backend);
    const w = c.input(`${v.name}.weight`, backend);
    const b = v.bias === false ? undefined : c.input(`${v.name}.bias`, backend);
    out.set(`${v.name}.y`, ops.linear(x, w, b));
    [x, w, b].forEach((t) => t?.dispose());
  }
  return out;
};
