// op_upsample: F.interpolate(x, scale_factor=2.0, mode='nearest') when the variant has no `size`
// (diffusers Upsample2D's default path), else F.interpolate(x, size=size, mode='nearest').
import { ops } from '@cnx/tensor';
import type { Produced, Runner } from '../golden_case.js';

interface UpsampleVariant { name: string; size?: [number, number]; scale_factor?: number }

export const opUpsample: Runner = async (c, backend) => {
  const out: Produced = new Map();
  for (const v of c.args.variants as UpsampleVariant[]) {
    const x = c.input(`${v.name}.x`, backend);
    const [H, W] = x.shape.slice(2) as [number, number];
    // torch's output size for a scale factor is floor(in * scale).
    const f = v.scale_factor ?? 2;
    const size: [number, number] = v.size ?? [Math.floor(H * f), Math.floor(W * f)];
    out.set(`${v.name}.y`, ops.upsampleNearest(x, size));
    x.dispose();
  }
  return out;
};
