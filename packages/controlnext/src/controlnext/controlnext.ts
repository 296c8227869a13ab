// A ControlNeXt variant with its loaded control module: what a pipeline holds. Per generation:
//
//   const prepared = cnx.prepare(image);                 // image [1, 3, H, W]: stem / first-conv cache
//   each step t:  const ctrl = cnx.control(prepared, t); // [1, F, h', w'], batch 1 even under CFG
//                 const h = cnx.hooks(ctrl, x.shape[0], { cfg: true, strength });
//                 unet.forward(x, t, ctx, { hooks: h.hooks }); h.dispose();
//
// Batch 1 under CFG is exact: the module's output depends only on the control image and the timestep
// (the repo runs it on [img, img] at the UNet's batch, spec 3.3); crossNorm broadcasts the [1, ...] map
// and keeps per-sample statistics of the UNet feature. Where the variant turns control off on the
// unconditional half, the scale becomes a per-sample [N] tensor (variants.ts sampleMultipliers).
// The user strength is a per-call setting (hooks(..., { strength })); the constructor's is only the
// default, and nothing here changes between calls.

import { ops, type Backend, type Tensor, type Trace } from '@cnx/tensor';
import type { ControlModule, ControlOutput, PreparedControl } from './control_module.js';
import type { Hooks } from '@cnx/unet';
import { injectionHooks } from './injection.js';
import { loadControlModule, loadControlModuleFromFiles, type LoadControlModuleOptions } from './load_control_module.js';
import type { ModelFiles } from '@cnx/unet';
import { getVariant, sampleMultipliers, type ControlNeXtVariant, type VariantName } from './variants.js';

export interface ControlNeXtOptions {
  /**
   * Default user strength multiplying the module's scale (--controlnet_scale / --controlnext_scale),
   * for calls that do not give one. Default 1.
   */
  strength?: number;
}

export class ControlNeXt {
  readonly variant: ControlNeXtVariant;
  /** The default strength (calls pass their own). */
  readonly strength: number;

  constructor(variant: VariantName | ControlNeXtVariant, readonly module: ControlModule, private readonly backend: Backend, opts: ControlNeXtOptions = {}) {
    this.variant = typeof variant === 'string' ? getVariant(variant) : variant;
    if (!this.variant.supported) throw new Error(`ControlNeXt variant '${this.variant.name}' is described but not runnable yet (${this.variant.description})`);
    if (module.arch !== this.variant.moduleArch) {
      throw new Error(`ControlNeXt ${this.variant.name}: needs the ${this.variant.moduleArch} module, found a ${module.arch} module`);
    }
    this.strength = opts.strength ?? 1;
  }

  static load(fileOrFolder: string, backend: Backend, opts: LoadControlModuleOptions & ControlNeXtOptions): ControlNeXt {
    return new ControlNeXt(opts.variant, loadControlModule(fileOrFolder, backend, opts), backend, opts);
  }

  /** The same from the module folder's files in memory (browsers). */
  static fromFiles(files: ModelFiles, backend: Backend, opts: LoadControlModuleOptions & ControlNeXtOptions): ControlNeXt {
    return new ControlNeXt(opts.variant, loadControlModuleFromFiles(files, backend, opts), backend, opts);
  }

  /** The timestep-independent prefix for a control image [B, 3, H, W] (use B = 1 under CFG). */
  prepare(image: Tensor, opts: { trace?: Trace } = {}): PreparedControl {
    return this.module.prepare(image, opts);
  }

  /** The module output for this step, from a prepared image (cached path) or a raw one (reference path). */
  control(input: PreparedControl | Tensor, timestep: Tensor | number, opts: { trace?: Trace } = {}): ControlOutput {
    return 'first' in input ? this.module.forwardPrepared(input, timestep, opts) : this.module.forward(input, timestep, opts);
  }

  /**
   * The scale for a UNet batch of N: a number, or a [N] tensor (learned scale, or a per-sample CFG
   * policy). `cfg`: the batch is [uncond; cond]; `strength`: this call's user strength (default: the
   * constructor's).
   */
  injectionScale(moduleScale: Tensor | number, batch: number, opts: { cfg?: boolean; strength?: number } = {}): number | Tensor {
    const mult = sampleMultipliers(this.variant, batch, { cfg: opts.cfg ?? false, strength: opts.strength ?? this.strength });
    if (typeof moduleScale === 'number') {
      if (typeof mult === 'number') return moduleScale * mult;
      return this.backend.fromRaw(Float32Array.from(mult, (m) => m * moduleScale), [batch]);
    }
    // A learned [1] (or 0-d) scale stays on the device: no read-back per step.
    const one = moduleScale.reshape([1]);
    const wide = one.expand([batch]);
    let out: Tensor;
    if (typeof mult === 'number') out = ops.scale(wide, mult);
    else {
      const m = this.backend.fromRaw(Float32Array.from(mult), [batch]);
      out = ops.mul(wide, m);
      m.dispose();
    }
    one.dispose();
    wide.dispose();
    return out;
  }

  /**
   * UNet hooks (at the variant's site) for one UNet forward of batch N with this step's control output
   * (its map may be batch 1 or N). Returns the hooks, the scale they apply (a number, or a per-sample
   * [N] tensor) and a dispose() for the scale tensor they hold (call after the forward).
   */
  hooks(ctrl: ControlOutput, batch: number, opts: { cfg?: boolean; trace?: Trace; strength?: number } = {}): { hooks: Hooks; scale: number | Tensor; dispose(): void } {
    const cb = ctrl.out.shape[0]!;
    if (cb !== 1 && cb !== batch) throw new Error(`ControlNeXt ${this.variant.name}: control map batch ${cb} fits neither 1 nor the UNet batch ${batch}`);
    const scale = this.injectionScale(ctrl.scale, batch, { cfg: opts.cfg, strength: opts.strength });
    return {
      hooks: injectionHooks(this.variant, ctrl.out, scale, { trace: opts.trace }),
      scale,
      dispose() { if (typeof scale !== 'number') scale.dispose(); },
    };
  }

  numParameters(): number { return this.module.numParameters(); }

  dispose(): void { this.module.dispose(); }
}
