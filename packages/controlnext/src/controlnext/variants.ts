// The released ControlNeXt variants as data: which control module, where its output enters the
// denoiser (a hook site of the UNet), by which injection method (cross normalisation pool-then-norm or
// norm-then-pool, or a user function), with which eps, scale rule and classifier-free-guidance policy.
// Source: ../shared/reference/controlnext-spec.md, table 1 (section 1) and table 9 (section 9); the file
// named with each entry is the ControlNeXt repository file that defines the behaviour.
// A research variant is a new object of this type (see examples/), not an edit here.

import type { InjectionMethod, InjectionMethodName } from './injection_methods.js';

/**
 * Where the (single) injection happens: a hook site of the denoiser's forward (@cnx/unet hooks.ts):
 * 'conv_in' (SDXL; the first skip keeps the raw conv_in output), 'down_blocks.<i>' (SD1.5-Training,
 * SVD-v2; the block's skips keep their values), 'mid_block:before' (SVD v1), 'mid_block' (SD1.5
 * release), 'up_blocks.<i>', or any module path of the UNet.
 */
export type InjectionSite = string;

/**
 * How the effective strength s of `x + s * c_hat` is formed from the module's own scale (the learned
 * `scale` parameter, or the module's float: 1.0, or SD1.5-Training's controlnext_scale) and the user
 * strength (the repo's --controlnet_scale / --controlnext_scale; 1 reproduces the release pipelines).
 */
export type ScaleRule =
  /** s = module scale * strength. */
  | { kind: 'module' }
  /** s = sigmoid(module scale) * multiplier * strength (SVD v1). */
  | { kind: 'sigmoid_module'; multiplier: number }
  /** s = module scale * factor * strength (SVD v2's "magic number" 0.2). */
  | { kind: 'module_times'; factor: number };

/**
 * What the unconditional half of a CFG batch ([uncond; cond]) receives.
 * 'both': the same control as the conditional half (the repo duplicates the control image).
 * 'uncond_zero': a per-sample scale [N] with 0 on the unconditional half (control off there).
 * 'uncond_param_zero': the *parameter* is zeroed before the sigmoid, so the unconditional half still
 *   gets sigmoid(0) * multiplier (SVD v1's behaviour, spec 6.2).
 */
export type CfgPolicy = 'both' | 'uncond_zero' | 'uncond_param_zero';

/** Control-module architecture: 'release' = ControlNeXt-SD1.5 ControlNetModel; 'light' = stride-2 stem module. */
export type ModuleArch = 'release' | 'light' | 'svd_v1';

/** How a ControlNeXt partial UNet file is merged into the base (spec section 10). */
export type UnetMerge = 'replace' | 'add' | 'full';

export interface ControlNeXtVariant {
  /** A released variant's VariantName, or any name of a user variant (used in messages). */
  readonly name: string;
  readonly description: string;
  readonly moduleArch: ModuleArch;
  /** Repository file of the module class. */
  readonly moduleSource: string;
  /** The UNet hook site the control enters at. */
  readonly site: InjectionSite;
  /** Repository file of the injection. */
  readonly injectionSource: string;
  /**
   * How the control map enters the feature: 'pool_then_norm' / 'norm_then_pool' (the fused cross
   * normalisation in that order, injection_methods.ts) or a user InjectionMethod.
   */
  readonly method: InjectionMethodName | InjectionMethod;
  /** Added to the control's std (not inside a sqrt); read by the cross-normalisation methods. */
  readonly eps: number;
  readonly scale: ScaleRule;
  readonly cfg: CfgPolicy;
  readonly unetMerge: UnetMerge;
  /** Light-module stem convolutions 2 and 3 padding (SVD-v2 inference uses 0, spec 7.1). */
  readonly stemPadding: number;
  /** Runnable here (the SVD variants through controlnext_svd.ts on the spatio-temporal UNet). */
  readonly supported: boolean;
}

export type VariantName = 'sd15' | 'sd15_training' | 'sdxl' | 'svd' | 'svd_v2';

export const variants: Readonly<Record<VariantName, ControlNeXtVariant & { readonly name: VariantName }>> = {
  sd15: {
    name: 'sd15',
    description: 'ControlNeXt-SD1.5 release (the hub weights): full-resolution module, injected after the mid block',
    moduleArch: 'release',
    moduleSource: 'ControlNeXt-SD1.5/models/controlnet.py:ControlNetModel',
    site: 'mid_block',
    injectionSource: 'ControlNeXt-SD1.5/models/unet.py (mid_block_additional_residual)',
    method: 'pool_then_norm',
    eps: 1e-12,
    scale: { kind: 'module' },
    cfg: 'both',
    unetMerge: 'replace',
    stemPadding: 1,
    supported: true,
  },
  sd15_training: {
    name: 'sd15_training',
    description: 'ControlNeXt-SD1.5-Training: light module, injected after down_blocks[0]',
    moduleArch: 'light',
    moduleSource: 'ControlNeXt-SD1.5-Training/models/controlnext.py:ControlNeXtModel',
    site: 'down_blocks.0',
    injectionSource: 'ControlNeXt-SD1.5-Training/models/unet.py (conditional_controls)',
    method: 'pool_then_norm',
    eps: 1e-12,
    // The module float is controlnext_scale (config.json; class default 1.0, 0.35 in the example).
    scale: { kind: 'module' },
    cfg: 'both',
    unetMerge: 'replace',
    stemPadding: 1,
    supported: true,
  },
  sdxl: {
    name: 'sdxl',
    description: 'ControlNeXt-SDXL: light module, normalise-then-pool injection right after conv_in',
    moduleArch: 'light',
    moduleSource: 'ControlNeXt-SDXL/models/controlnet.py:ControlNetModel',
    site: 'conv_in',
    injectionSource: 'ControlNeXt-SDXL/models/unet.py (controls)',
    method: 'norm_then_pool',
    eps: 1e-12,
    // The module float 1.0 times --controlnet_scale (default 1.0).
    scale: { kind: 'module' },
    cfg: 'both',
    unetMerge: 'add',
    stemPadding: 1,
    supported: true,
  },
  svd: {
    name: 'svd',
    description: 'ControlNeXt-SVD (v1): deeper module to 1280 channels, injected before the mid block (controlnext_svd.ts)',
    moduleArch: 'svd_v1',
    moduleSource: 'ControlNeXt-SVD/models/controlnext_vid_svd.py:ControlNeXtSDVModel',
    site: 'mid_block:before',
    injectionSource: 'ControlNeXt-SVD/models/unet_spatio_temporal_condition_controlnext.py',
    method: 'norm_then_pool',
    eps: 1e-5,
    scale: { kind: 'sigmoid_module', multiplier: 1.3 },
    cfg: 'uncond_param_zero',
    unetMerge: 'full',
    stemPadding: 0,
    supported: true,
  },
  svd_v2: {
    name: 'svd_v2',
    description: 'ControlNeXt-SVD-v2: light module (unpadded stem convs), injected after down_blocks[0] (controlnext_svd.ts)',
    moduleArch: 'light',
    moduleSource: 'ControlNeXt-SVD-v2/models/controlnext_vid_svd.py:ControlNeXtSDVModel',
    site: 'down_blocks.0',
    injectionSource: 'ControlNeXt-SVD-v2/models/unet_spatio_temporal_condition_controlnext.py',
    method: 'norm_then_pool',
    eps: 1e-5,
    scale: { kind: 'module_times', factor: 0.2 },
    cfg: 'uncond_zero',
    unetMerge: 'full',
    stemPadding: 0,
    supported: true,
  },
};

export function getVariant(name: string): ControlNeXtVariant {
  const v = (variants as Record<string, ControlNeXtVariant | undefined>)[name];
  if (!v) throw new Error(`unknown ControlNeXt variant '${name}' (known: ${Object.keys(variants).join(', ')})`);
  return v;
}

/**
 * Per-sample multipliers of the module's scale for a batch of N samples, or one number when all
 * samples get the same: with CFG the batch is [uncond x N/2; cond x N/2] and the variant's policy
 * decides the unconditional half. The sigmoid rule (SVD v1) is applied by the caller on the scale.
 */
export function sampleMultipliers(v: ControlNeXtVariant, batch: number, opts: { cfg: boolean; strength?: number }): number | number[] {
  const strength = opts.strength ?? 1;
  const m = strength * (v.scale.kind === 'module_times' ? v.scale.factor : 1);
  if (!opts.cfg || v.cfg === 'both') return m;
  if (batch % 2 !== 0) throw new Error(`ControlNeXt ${v.name}: a CFG batch is [uncond; cond], expected an even batch, found ${batch}`);
  if (v.cfg === 'uncond_param_zero') {
    throw new Error(`ControlNeXt ${v.name}: the unconditional half gets sigmoid(0) * multiplier, not a multiple of the module scale; not supported yet`);
  }
  const half = batch / 2;
  return [...new Array<number>(half).fill(0), ...new Array<number>(half).fill(m)];
}
