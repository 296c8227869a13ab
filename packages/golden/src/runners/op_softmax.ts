// op_softmax: x.softmax(dim=-1) per variant.
import { ops } from '@cnx/tensor';
import type { Produced, Runner } from '../golden_case.js';

export const opSoftmax: Runner = async (c, backend) => {
  const out: Produced = new Map();
  for (const v of c.args.variants as { name: string }[]) {
    const x = c.input(`${v.name}.x`, backend);
    out.set(`${v.name}.y`, ops.softmax(x));
    x.dispose();
  }
  return out;
};
