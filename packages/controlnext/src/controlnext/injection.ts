// ControlNeXt injection: the control module's output enters the denoiser once per forward, at the
// variant's point, as `x + s * c_hat` where c_hat is the control map cross-normalised to the feature's
// statistics (spec sections 2.7 and 9). It is ONE fused crossNorm call (controlnext/cross_norm.ts) per forward.
//
// Batch-1 control under CFG: the module output depends only on the control image and the timestep, so
// a [1, C, h', w'] map is passed as is (crossNorm broadcasts it over the N samples; statistics of x stay
// per sample), and a variant that switches the control off on the unconditional half gets a per-sample
// scale tensor [N] instead of a number (see variants.ts cfgScales).

import { ops, type Tensor, type Trace } from '@cnx/tensor';
import { crossNorm } from './cross_norm.js';
import type { UNetForwardOptions } from '@cnx/unet';
import type { ControlNeXtVariant, InjectionPoint } from './variants.js';

/** The UNet's feature hooks (@cnx/unet UNetForwardOptions.featureHooks); the UNet owns what they return. */
export type FeatureHooks = NonNullable<UNetForwardOptions['featureHooks']>;

export interface InjectionOptions {
  /**
   * Reports `sample_before`, `control_pooled`, `control_normed` (both computed separately, for
   * inspection only) and `sample_after`, relative to the trace's prefix (the golden cases use `inject`).
   */
  trace?: Trace;
}

/** Per-sample mean and unbiased std over (C, H, W) of x [N, C, H, W], as [N, 1, 1, 1] tensors. */
function sampleStats(x: Tensor): { mean: Tensor; std: Tensor } {
  const N = x.shape[0]!;
  const n = x.size / N;
  const flat = x.reshape([N, n]);
  const mean = ops.mean(flat, 1, true);
  const centered = ops.sub(flat, mean);
  const sq = ops.unary('square', centered);
  const ss = ops.sum(sq, 1, true);
  const variance = ops.affine(ss, 1 / (n - 1)); // torch.std default: unbiased (N - 1)
  const std = ops.sqrt(variance);
  const out = { mean: mean.reshape([N, 1, 1, 1]), std: std.reshape([N, 1, 1, 1]) };
  [flat, mean, centered, sq, ss, variance, std].forEach((t) => t.dispose());
  return out;
}

/**
 * c_hat at the control's own resolution: (c - mu_c) * sigma_x / (sigma_c + eps) + mu_x (the un-fused
 * form, written with elementwise ops). Only used to report the intermediate of normalise-then-pool
 * variants; the injection itself is the fused crossNorm.
 */
export function crossNormalizeUnfused(x: Tensor, control: Tensor, eps: number): Tensor {
  const N = x.shape[0]!;
  const cx = sampleStats(x);
  const cc = sampleStats(control);
  const c = control.shape[0] === N ? control : control.expand([N, ...control.shape.slice(1)]);
  const ccN = control.shape[0] === N ? cc : { mean: cc.mean.expand([N, 1, 1, 1]), std: cc.std.expand([N, 1, 1, 1]) };
  const denom = ops.affine(ccN.std, 1, eps);
  const k = ops.div(cx.std, denom);
  const centered = ops.sub(c, ccN.mean);
  const scaled = ops.mul(centered, k);
  const out = ops.add(scaled, cx.mean);
  const tmp = [cx.mean, cx.std, cc.mean, cc.std, denom, k, centered, scaled];
  if (c !== control) tmp.push(c);
  if (ccN !== cc) tmp.push(ccN.mean, ccN.std);
  tmp.forEach((t) => t.dispose());
  return out;
}

/**
 * x + s * c_hat for one feature: the injection as the variant defines it, in one crossNorm call.
 * control: [N or 1, C, h', w']; scale: a number or a per-sample [N] tensor.
 */
export function injectControl(
  variant: ControlNeXtVariant, x: Tensor, control: Tensor, scale: number | Tensor, opts: InjectionOptions = {},
): Tensor {
  const { trace } = opts;
  if (x.shape[1] !== control.shape[1]) {
    throw new Error(`ControlNeXt ${variant.name}: control map ${control.toString()} has ${control.shape[1]} channels, the feature at ` +
      `${describeInjectionPoint(variant.injection)} ${x.toString()} has ${x.shape[1]}; the module's output width must equal the UNet width there`);
  }
  if (trace) {
    trace('sample_before', x);
    const h = x.shape[2]!, w = x.shape[3]!;
    if (variant.order === 'pool_then_norm') {
      const pooled = ops.adaptiveAvgPool2d(control, [h, w]);
      trace('control_pooled', pooled);
      const normed = crossNorm(x, pooled, { eps: variant.eps, order: 'pool_then_norm', scale: 1, residual: false });
      trace('control_normed', normed);
      pooled.dispose();
      normed.dispose();
    } else {
      const normed = crossNormalizeUnfused(x, control, variant.eps);
      trace('control_normed', normed);
      const pooled = ops.adaptiveAvgPool2d(normed, [h, w]);
      trace('control_pooled', pooled);
      normed.dispose();
      pooled.dispose();
    }
  }
  const out = crossNorm(x, control, { eps: variant.eps, order: variant.order, scale });
  trace?.('sample_after', out);
  return out;
}

export function describeInjectionPoint(p: InjectionPoint): string {
  switch (p.kind) {
    case 'after_conv_in': return 'conv_in';
    case 'after_down_block': return `down_blocks.${p.index}`;
    case 'before_mid_block': return 'the input of mid_block';
    case 'after_mid_block': return 'mid_block';
  }
}

/**
 * The UNet feature hooks that inject `control` at the variant's point, for ONE forward: the hook fires
 * once (a second firing would be a UNet bug and throws, since the repo injects exactly once).
 */
export function injectionHooks(
  variant: ControlNeXtVariant, control: Tensor, scale: number | Tensor, opts: InjectionOptions = {},
): FeatureHooks {
  let fired = false;
  const inject = (x: Tensor): Tensor => {
    if (fired) throw new Error(`ControlNeXt ${variant.name}: injection at ${describeInjectionPoint(variant.injection)} fired twice in one forward`);
    fired = true;
    return injectControl(variant, x, control, scale, { trace: opts.trace });
  };
  const p = variant.injection;
  switch (p.kind) {
    case 'after_conv_in': return { afterConvIn: inject };
    case 'after_down_block': return { afterDownBlock: (i, x) => (i === p.index ? inject(x) : x) };
    case 'before_mid_block':
      throw new Error(`ControlNeXt ${variant.name}: the UNet has no hook before the mid block (SVD v1's injection point; not supported yet)`);
    case 'after_mid_block': return { afterMidBlock: inject };
  }
}
