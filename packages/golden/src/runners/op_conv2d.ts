// op_conv2d: F.conv2d(x, weight, bias, stride, padding) per variant. `asym_pad` variants reproduce
// diffusers Downsample2D with padding=0 (models/downsampling.py): F.pad(x, (0, 1, 0, 1)) then a conv
// without padding, i.e. padding [top 0, bottom 1, left 0, right 1] here (no copy of the input).
import { ops } from '@cnx/tensor';
import type { Produced, Runner } from '../golden_case.js';

interface Conv2dVariant {
  name: string;
  stride?: number | [number, number];
  padding?: number | [number, number];
  groups?: number;
  bias?: boolean;
  asym_pad?: boolean;
}

/** [top, bottom, left, right] from torch's symmetric padding plus the Downsample2D asymmetric pad. */
function paddingOf(v: Conv2dVariant): [number, number, number, number] {
  const p = v.padding ?? 0;
  const [ph, pw] = typeof p === 'number' ? [p, p] : p;
  const extra = v.asym_pad ? 1 : 0;
  return [ph, ph + extra, pw, pw + extra];
}

export const opConv2d: Runner = async (c, backend) => {
  const out: Produced = new Map();
  for (const v of c.args.variants as Conv2dVariant[]) {
    const x = c.input(`${v.name}.x`, backend);
    const w = c.input(`${v.name}.weight`, backend);
    const b = v.bias === false ? undefined : c.input(`${v.name}.bias`, backend);
    const stride = v.stride ?? 1;
    out.set(`${v.name}.y`, ops.conv2d(x, w, b, {
      stride: typeof stride === 'number' ? [stride, stride] : stride,
      padding: paddingOf(v),
      groups: v.groups ?? 1,
    }));
    [x, w, b].forEach((t) => t?.dispose());
  }
  return out;
};
