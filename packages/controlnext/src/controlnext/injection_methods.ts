// Injection methods: how the control map enters the denoiser feature at the variant's site, as pluggable
// functions a variant names (the role diffusers' attention processors play for attention). The released
// variants use cross normalisation (spec sections 2.7 and 9), in one of two orders, each ONE fused
// crossNorm call per forward (cross_norm.ts). A research method is an InjectionMethod object in user code
// (examples/light_down_block1_per_channel.ts: per-channel statistics), passed as `variant.method`.

import { ops, scope, type Tensor, type Trace } from '@cnx/tensor';
import { crossNorm } from './cross_norm.js';
import type { ControlNeXtVariant } from './variants.js';

/** What a method is told about the call besides its tensors. */
export interface InjectionContext {
  /** The variant being injected (its eps, name, site...). */
  readonly variant: ControlNeXtVariant;
  /**
   * Reports method-specific intermediates relative to the injection's trace prefix (the cross-norm
   * methods report control_pooled and control_normed, computed separately for inspection).
   */
  readonly trace?: Trace;
}

export interface InjectionMethod {
  readonly name: string;
  /**
   * Throw, naming what was expected and what was found, when `control` cannot enter `feature` (checked
   * before every injection). Default (when absent): the channel counts must be equal.
   */
  check?(feature: Tensor, control: Tensor, variant: ControlNeXtVariant): void;
  /**
   * feature x [N, C, h, w]; control [N or 1, C', h', w'] (a batch-1 map serves every sample); scale s: a
   * number or a per-sample [N] tensor. Returns a NEW tensor (x is freed by the UNet).
   */
  inject(x: Tensor, control: Tensor, scale: number | Tensor, ctx: InjectionContext): Tensor;
}

/** The default check: the control map's channels equal the feature's. */
export function checkSameChannels(feature: Tensor, control: Tensor, variant: ControlNeXtVariant): void {
  if (feature.shape[1] !== control.shape[1]) {
    throw new Error(`ControlNeXt ${variant.name}: control map ${control.toString()} has ${control.shape[1]} channels, the feature at ` +
      `'${variant.site}' ${feature.toString()} has ${feature.shape[1]}; the module's output width must equal the UNet width there`);
  }
}

/** Per-sample mean and unbiased std over (C, H, W) of x [N, C, H, W], as [N, 1, 1, 1] tensors. */
function sampleStats(x: Tensor): { mean: Tensor; std: Tensor } {
  return scope(() => {
    const N = x.shape[0]!;
    const n = x.size / N;
    const flat = x.reshape([N, n]);
    const mean = ops.mean(flat, 1, true);
    const ss = ops.sum(ops.unary('square', ops.sub(flat, mean)), 1, true);
    const std = ops.sqrt(ops.affine(ss, 1 / (n - 1))); // torch.std default: unbiased (N - 1)
    return { mean: mean.reshape([N, 1, 1, 1]), std: std.reshape([N, 1, 1, 1]) };
  });
}

/**
 * c_hat at the control's own resolution: (c - mu_c) * sigma_x / (sigma_c + eps) + mu_x (the un-fused
 * form, written with elementwise ops). Only used to report the intermediate of normalise-then-pool
 * variants; the injection itself is the fused crossNorm.
 */
export function crossNormalizeUnfused(x: Tensor, control: Tensor, eps: number): Tensor {
  return scope(() => {
    const N = x.shape[0]!;
    const cx = sampleStats(x);
    const cc = sampleStats(control);
    const c = control.shape[0] === N ? control : control.expand([N, ...control.shape.slice(1)]);
    const ccN = control.shape[0] === N ? cc : { mean: cc.mean.expand([N, 1, 1, 1]), std: cc.std.expand([N, 1, 1, 1]) };
    const k = ops.div(cx.std, ops.affine(ccN.std, 1, eps));
    return ops.add(ops.mul(ops.sub(c, ccN.mean), k), cx.mean);
  });
}

/** Cross normalisation, x + s * c_hat, in the given pool / normalise order (one fused crossNorm call). */
function crossNormMethod(order: 'pool_then_norm' | 'norm_then_pool'): InjectionMethod {
  return {
    name: order,
    inject(x, control, scale, { variant, trace }) {
      if (trace) {
        const h = x.shape[2]!, w = x.shape[3]!;
        if (order === 'pool_then_norm') {
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
      return crossNorm(x, control, { eps: variant.eps, order, scale });
    },
  };
}

/** The built-in methods by the name a variant gives. */
export const injectionMethods = {
  /** Pool the control to the feature size, then normalise with the pooled map's statistics (SD1.5, SD1.5-Training). */
  pool_then_norm: crossNormMethod('pool_then_norm'),
  /** Statistics at the control's own resolution, then pool (SDXL, SVD). */
  norm_then_pool: crossNormMethod('norm_then_pool'),
} as const satisfies Readonly<Record<string, InjectionMethod>>;

export type InjectionMethodName = keyof typeof injectionMethods;

/** A variant's method: a built-in by name, or the user's object; unknown names list the built-ins. */
export function resolveInjectionMethod(method: InjectionMethodName | InjectionMethod): InjectionMethod {
  if (typeof method !== 'string') {
    if (!method || typeof method.inject !== 'function') throw new Error(`injection method: expected a name (${Object.keys(injectionMethods).join(', ')}) or an object with inject(), found ${typeof method}`);
    return method;
  }
  const m = Object.hasOwn(injectionMethods, method) ? injectionMethods[method] : undefined;
  if (!m) throw new Error(`unknown injection method '${method}' (built in: ${Object.keys(injectionMethods).join(', ')}; or pass an InjectionMethod object)`);
  return m;
}
