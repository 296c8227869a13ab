// op_cross_norm: ControlNeXt cross normalisation + injection (ControlNeXt-SD1.5 models/unet.py, after
// the mid block; spec sections 2.7 and 9):
//   pooled = adaptive_avg_pool2d(control, sample.shape[-2:])
//   normed = (pooled - mean(pooled)) * (std(sample) / (std(pooled) + eps)) + mean(sample)   (per sample, unbiased std)
//   y      = sample + normed * scale
// `pooled` checks the pooling alone, `normed` the fused op with residual: false and scale 1, `y` the full op.
// The scale comes from io.safetensors (`<v>.scale`: a 0-dim scalar or one value per sample) or from the
// variant's `scale`. eps and order default to the SD1.5 release (1e-12, pool then normalise) unless the
// case names them (`eps`, `order` in the variant or in args).
import { ops, type Tensor } from '@cnx/tensor';
import { crossNorm, type CrossNormOptions } from '@cnx/controlnext';
import type { GoldenCase, Produced, Runner } from '../golden_case.js';

interface CrossNormVariant {
  name: string;
  scale?: number;
  eps?: number;
  order?: CrossNormOptions['order'];
}

/** ControlNeXt-SD1.5 models/unet.py: `(std_s / (std_c + 1e-12))`. */
const SD15_CROSS_NORM_EPS = 1e-12;

function scaleOf(c: GoldenCase, v: CrossNormVariant, x: Tensor): number | Tensor {
  const name = `${v.name}.scale`;
  if (c.io.has(name)) {
    const { shape, data } = c.expected(name);
    if (data.length === 1) return data[0]!; // 0-dim (or [1]) scalar
    if (shape.length !== 1 || shape[0] !== x.shape[0]) {
      throw new Error(`${c.name}: '${name}' must be a scalar or [${x.shape[0]}] (one per sample), found [${shape.join(', ')}]`);
    }
    return x.backend.fromRaw(data, shape);
  }
  if (typeof v.scale === 'number') return v.scale;
  throw new Error(`${c.name}: variant '${v.name}' has no scale (neither io tensor '${name}' nor a numeric 'scale')`);
}

export const opCrossNorm: Runner = async (c, backend) => {
  const out: Produced = new Map();
  for (const v of c.args.variants as CrossNormVariant[]) {
    const x = c.input(`${v.name}.sample`, backend);
    const control = c.input(`${v.name}.control`, backend);
    const eps = v.eps ?? (c.args.eps as number | undefined) ?? SD15_CROSS_NORM_EPS;
    const order = v.order ?? (c.args.order as CrossNormOptions['order'] | undefined) ?? 'pool_then_norm';
    const scale = scaleOf(c, v, x);
    const [h, w] = x.shape.slice(2) as [number, number];
    const want = new Set(c.checkedNames());
    if (want.has(`${v.name}.pooled`)) out.set(`${v.name}.pooled`, ops.adaptiveAvgPool2d(control, [h, w]));
    if (want.has(`${v.name}.normed`)) out.set(`${v.name}.normed`, crossNorm(x, control, { eps, order, scale: 1, residual: false }));
    out.set(`${v.name}.y`, crossNorm(x, control, { eps, order, scale }));
    [x, control].forEach((t) => t.dispose());
    if (typeof scale !== 'number') scale.dispose();
  }
  return out;
};
