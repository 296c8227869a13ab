// The released ControlNeXt variants as data: which control module, where its output enters the
// denoiser, in which pool/normalise order, with which eps, scale rule and classifier-free-guidance
// policy. Source: ../shared/reference/controlnext-spec.md, table 1 (section 1) and table 9 (section 9);
// the file named with each entry is the ControlNeXt repository file that defines the behaviour.

/** Where the (single) injection happens in the denoiser's forward. */
export type InjectionPoint =
  /** Right after `conv_in` (and after the first skip was recorded). */
  | { kind: 'after_conv_in' }
  /** Right after `down_blocks[index]` returned (its skips already recorded, so they keep their value). */
  | { kind: 'after_down_block'; index: number }
  /** After the last down block, before the mid block (SVD v1). */
  | { kind: 'before_mid_block' }
  /** After the mid block, before up_blocks[0]. */
  | { kind: 'after_mid_block' };

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
  readonly name: VariantName;
  readonly description: string;
  readonly moduleArch: ModuleArch;
  /** Repository file of the module class. */
  readonly moduleSource: string;
  readonly injection: InjectionPoint;
  /** Repository file of the injection. */
  readonly injectionSource: string;
  readonly order: 'pool_then_norm' | 'norm_then_pool';
  /** Added to the control's std (not inside a sqrt). */
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

export const variants: Readonly<Record<VariantName, ControlNeXtVariant>> = {
  sd15: {
    name: 'sd15',
    description: 'ControlNeXt-SD1.5 release (the hub weights): full-resolution module, injected after the mid block',
    moduleArch: 'release',
    moduleSource: 'ControlNeXt-SD1.5/models/controlnet.py:ControlNetModel',
    injection: { kind: 'after_mid_block' },
    injectionSource: 'ControlNeXt-SD1.5/models/unet.py (mid_block_additional_residual)',
    order: 'pool_then_norm',
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
    injection: { kind: 'after_down_block', index: 0 },
    injectionSource: 'ControlNeXt-SD1.5-Training/models/unet.py (conditional_controls)',
    order: 'pool_then_norm',
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
    injection: { kind: 'after_conv_in' },
    injectionSource: 'ControlNeXt-SDXL/models/unet.py (controls)',
    order: 'norm_then_pool',
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
    injection: { kind: 'before_mid_block' },
    injectionSource: 'ControlNeXt-SVD/models/unet_spatio_temporal_condition_controlnext.py',
    order: 'norm_then_pool',
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
    injection: { kind: 'after_down_block', index: 0 },
    injectionSource: 'ControlNeXt-SVD-v2/models/unet_spatio_temporal_condition_controlnext.py',
    order: 'norm_then_pool',
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
