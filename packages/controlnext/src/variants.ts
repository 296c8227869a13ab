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

/** How the effective strength s of `x + s * c_hat` is formed. */
export type ScaleRule =
  /** s = learned scalar `scale` stored in the module file, times the user strength (default 1). */
  | { kind: 'learned' }
  /** s = user strength; the module has no stored scale (a Python float in the repo). */
  | { kind: 'user'; defaultStrength: number }
  /** s = sigmoid(learned scale) * multiplier * user strength (SVD v1). */
  | { kind: 'sigmoid_learned'; multiplier: number }
  /** s = factor * user strength (SVD v2's "magic number" 0.2). */
  | { kind: 'constant'; factor: number };

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
  /** Runnable here (SVD needs the spatio-temporal UNet, which does not exist yet). */
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
    scale: { kind: 'learned' },
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
    // controlnext_scale is a constructor float (config.json); 1.0 is the class default, 0.35 the example.
    scale: { kind: 'user', defaultStrength: 1.0 },
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
    // scale 1.0 (Python float) times --controlnet_scale (default 1.0).
    scale: { kind: 'user', defaultStrength: 1.0 },
    cfg: 'both',
    unetMerge: 'add',
    stemPadding: 1,
    supported: true,
  },
  svd: {
    name: 'svd',
    description: 'ControlNeXt-SVD (v1): deeper module to 1280 channels, injected before the mid block (described, not runnable yet)',
    moduleArch: 'svd_v1',
    moduleSource: 'ControlNeXt-SVD/models/controlnext_vid_svd.py:ControlNeXtSDVModel',
    injection: { kind: 'before_mid_block' },
    injectionSource: 'ControlNeXt-SVD/models/unet_spatio_temporal_condition_controlnext.py',
    order: 'norm_then_pool',
    eps: 1e-5,
    scale: { kind: 'sigmoid_learned', multiplier: 1.3 },
    cfg: 'uncond_param_zero',
    unetMerge: 'full',
    stemPadding: 0,
    supported: false,
  },
  svd_v2: {
    name: 'svd_v2',
    description: 'ControlNeXt-SVD-v2: light module (unpadded stem convs), injected after down_blocks[0] (described, not runnable yet)',
    moduleArch: 'light',
    moduleSource: 'ControlNeXt-SVD-v2/models/controlnext_vid_svd.py:ControlNeXtSDVModel',
    injection: { kind: 'after_down_block', index: 0 },
    injectionSource: 'ControlNeXt-SVD-v2/models/unet_spatio_temporal_condition_controlnext.py',
    order: 'norm_then_pool',
    eps: 1e-5,
    scale: { kind: 'constant', factor: 0.2 },
    cfg: 'uncond_zero',
    unetMerge: 'full',
    stemPadding: 0,
    supported: false,
  },
};

export function getVariant(name: string): ControlNeXtVariant {
  const v = (variants as Record<string, ControlNeXtVariant | undefined>)[name];
  if (!v) throw new Error(`unknown ControlNeXt variant '${name}' (known: ${Object.keys(variants).join(', ')})`);
  return v;
}

/**
 * The effective strength s for the conditional samples. `learned` is the module's stored `scale`
 * (release / SVD v1 files), `strength` the user multiplier (the repo's --controlnext_scale or
 * --controlnet_scale; for the release SD1.5 variant the repo has none, so 1 reproduces it).
 */
export function effectiveScale(v: ControlNeXtVariant, opts: { learned?: number; strength?: number }): number {
  const r = v.scale;
  switch (r.kind) {
    case 'learned': {
      if (opts.learned === undefined) throw new Error(`variant ${v.name}: the scale rule needs the module's learned 'scale', none was given`);
      return opts.learned * (opts.strength ?? 1);
    }
    case 'user': return opts.strength ?? r.defaultStrength;
    case 'sigmoid_learned': {
      if (opts.learned === undefined) throw new Error(`variant ${v.name}: the scale rule needs the module's learned 'scale', none was given`);
      return (1 / (1 + Math.exp(-opts.learned))) * r.multiplier * (opts.strength ?? 1);
    }
    case 'constant': return r.factor * (opts.strength ?? 1);
  }
}

/**
 * Per-sample scales for a CFG batch [uncond x half; cond x half] under the variant's policy, or the
 * single number when both halves get the same strength.
 */
export function cfgScales(v: ControlNeXtVariant, condScale: number, batch: number, opts: { strength?: number } = {}): number | number[] {
  if (batch % 2 !== 0) throw new Error(`cfgScales: a CFG batch is [uncond; cond], expected an even batch, found ${batch}`);
  const half = batch / 2;
  switch (v.cfg) {
    case 'both': return condScale;
    case 'uncond_zero': return [...new Array<number>(half).fill(0), ...new Array<number>(half).fill(condScale)];
    case 'uncond_param_zero': {
      if (v.scale.kind !== 'sigmoid_learned') throw new Error(`variant ${v.name}: 'uncond_param_zero' needs a sigmoid scale rule`);
      const uncond = 0.5 * v.scale.multiplier * (opts.strength ?? 1);
      return [...new Array<number>(half).fill(uncond), ...new Array<number>(half).fill(condScale)];
    }
  }
}
