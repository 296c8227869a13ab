// op_adaptive_avg_pool: F.adaptive_avg_pool2d(x, size) per variant (divisible and non-divisible bins).
import { ops } from '@cnx/tensor';
import type { Produced, Runner } from '../golden_case.js';

interface PoolVariant { name: string; size: number | [number, number] }

export const opAdaptiveAvgPool: Runner = async (c, backend) => {
  const out: Produced = new Map();
  for (const v of c.args.variants as PoolVariant[]) {
    if (v.size === undefined) throw new Error(`${c.name}: variant '${v.name}' has no 'size'`);
    const size: [number, number] = typeof v.size === 'number' ? [v.size, v.size] : v.size;
    const x = c.input(`${v.name}.x`, backend);
    out.set(`${v.name}.y`, ops.adaptiveAvgPool2d(x, size));
    x.dispose();
  }
  return out;
};
