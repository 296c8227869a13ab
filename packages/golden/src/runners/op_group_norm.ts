// op_group_norm: y = F.group_norm(x, groups, weight, bias, eps); y_silu = F.silu(y), computed with the
// fused SiLU epilogue (diffusers ResnetBlock2D's norm -> nonlinearity pattern).
import { ops } from '@cnx/tensor';
import type { Produced, Runner } from '../golden_case.js';

interface GroupNormVariant { name: string; groups: number; eps: number; affine?: boolean }

export const opGroupNorm: Runner = async (c, backend) => {
  const out: Produced = new Map();
  for (const v of c.args.variants as GroupNormVariant[]) {
    if (typeof v.groups !== 'number' || typeof v.eps !== 'number') {
      throw new Error(`${c.name}: variant '${v.name}' needs numeric 'groups' and 'eps', found ${JSON.stringify(v)}`);
    }
    const x = c.input(`${v.name}.x`, backend);
    const affine = v.affine !== false;
    const w = affine ? c.input(`${v.name}.weight`, backend) : undefined;
    const b = affine ? c.input(`${v.name}.bias`, backend) : undefined;
    out.set(`${v.name}.y`, ops.groupNorm(x, v.groups, w, b, v.eps));
    if (c.checkedNames().includes(`${v.name}.y_silu`)) out.set(`${v.name}.y_silu`, ops.groupNorm(x, v.groups, w, b, v.eps, true));
    [x, w, b].forEach((t) => t?.dispose());
  }
  return out;
};
