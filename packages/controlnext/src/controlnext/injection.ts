// ControlNeXt injection: the control module's output enters the denoiser once per forward, at the
// variant's hook site (@cnx/unet hooks.ts), by the variant's injection method (injection_methods.ts);
// for the released variants `x + s * c_hat` where c_hat is the control map cross-normalised to the
// feature's statistics (spec sections 2.7 and 9), ONE fused crossNorm call per forward.
//
// Batch-1 control under CFG: the module output depends only on the control image and the timestep, so
// a [1, C, h', w'] map is passed as is (crossNorm broadcasts it over the N samples; statistics of x stay
// per sample), and a variant that switches the control off on the unconditional half gets a per-sample
// scale tensor [N] instead of a number (see variants.ts sampleMultipliers).

import type { Tensor, Trace } from '@cnx/tensor';
import type { Hooks } from '@cnx/unet';
import { checkSameChannels, resolveInjectionMethod } from './injection_methods.js';
import type { ControlNeXtVariant } from './variants.js';

export { crossNormalizeUnfused } from './injection_methods.js';

export interface InjectionOptions {
  /**
   * Reports `sample_before`, the method's own intermediates (cross-norm: `control_pooled`,
   * `control_normed`) and `sample_after`, relative to the trace's prefix (the golden cases use `inject`).
   */
  trace?: Trace;
}

/**
 * The injection as the variant defines it, for one feature x [N, C, h, w]: the method's check, then its
 * inject. control: [N or 1, C', h', w']; scale: a number or a per-sample [N] tensor.
 */
export function injectControl(
  variant: ControlNeXtVariant, x: Tensor, control: Tensor, scale: number | Tensor, opts: InjectionOptions = {},
): Tensor {
  const { trace } = opts;
  const method = resolveInjectionMethod(variant.method);
  (method.check ?? checkSameChannels)(x, control, variant);
  trace?.('sample_before', x);
  const out = method.inject(x, control, scale, { variant, trace });
  trace?.('sample_after', out);
  return out;
}

/**
 * The UNet hooks that inject `control` at the variant's site, for ONE forward: the hook fires once (a
 * second firing would be a UNet bug and throws, since the repo injects exactly once).
 */
export function injectionHooks(
  variant: ControlNeXtVariant, control: Tensor, scale: number | Tensor, opts: InjectionOptions = {},
): Hooks {
  let fired = false;
  return {
    [variant.site]: (x: Tensor): Tensor => {
      if (fired) throw new Error(`ControlNeXt ${variant.name}: injection at '${variant.site}' fired twice in one forward`);
      fired = true;
      return injectControl(variant, x, control, scale, { trace: opts.trace });
    },
  };
}
