// ControlNeXt-SVD v1 and v2 as a pipeline holds them: the loaded control module (controlnext_svd_modules.ts)
// with its variant (variants.ts 'svd' / 'svd_v2'), the per-sample strengths under classifier-free guidance,
// and the injection as a hook on the spatio-temporal UNet's named site. What the repos do (spec 6.2, 7.2):
//
//  v1 (ControlNeXt-SVD/models/unet_spatio_temporal_condition_controlnext.py): before the mid block,
//     x += pool(crossnorm(c, x)) * sigmoid(scale) * 1.3, scale = the learned parameter. Under CFG the
//     pipeline zeroes the PARAMETER on the unconditional half, so that half still gets sigmoid(0) * 1.3 = 0.65.
//  v2 (ControlNeXt-SVD-v2/...): after down_blocks[0], x += pool(crossnorm(c, x)) * scale * 0.2, scale = 1.0;
//     the unconditional half gets 0 (no control).
//  crossnorm: per (video, frame) sample, mean and UNBIASED std over (C, H, W), eps 1e-5 added to the
//  control's std, computed at the control map's own size, THEN adaptive-avg-pooled to the feature size.
//
// The repo runs the module on the CFG-doubled batch [cond frames; cond frames]. Here it runs once on the
// F frames of a window (the halves are the same frames), and the injection broadcasts the [F, ...] map:
// v2 injects into the conditional half only (the unconditional half passes through untouched, exactly
// x + 0 * c_hat); v1 tiles the small [F, 1280, h/8, w/8] map over both halves with per-sample strengths.
// `strength` (ours, default 1 = the release behaviour) multiplies both halves' strengths.

import { ops, WeightStore, type Backend, type Tensor, type Trace } from '@cnx/tensor';
import type { FeatureHook } from '@cnx/unet';
import type { ControlOutput, PreparedControl } from './control_module.js';
import { inferLightStructure } from './controlnext_light.js';
import { crossNorm } from './cross_norm.js';
import { crossNormalizeUnfused } from './injection.js';
import { getVariant, type ControlNeXtVariant } from './variants.js';
import { ControlNeXtSVDv1Module, ControlNeXtSVDv2Module, type SvdControlModule } from './controlnext_svd_modules.js';

export type SvdVariantName = 'svd' | 'svd_v2';

/** v1's class hard-codes groups [4, 8, 8] (its constructor arguments are ignored); v2's default is [4, 8]. */
const V1_GROUPS = [4, 8, 8] as const;

export interface LoadSvdControlOptions {
  /** The variant the file is for; detected from the file when absent (v1 stores `scale`, v2 does not). */
  variant?: SvdVariantName;
  /** down_res GroupNorm groups (not in the file): default config.json `groups` (v2), else the class default. */
  groups?: readonly number[];
  /** User strength multiplying the release strengths (default 1). */
  strength?: number;
}

function numberArray(v: unknown): number[] | undefined {
  return Array.isArray(v) && v.every((x) => typeof x === 'number') ? (v as number[]) : undefined;
}

/** Load a ControlNeXt-SVD control module file (or its folder) strictly, detecting v1 / v2. */
export function loadSvdControlModule(fileOrFolder: string, backend: Backend, opts: LoadSvdControlOptions = {}): { module: SvdControlModule; variant: SvdVariantName } {
  const store = WeightStore.open(fileOrFolder);
  let module: SvdControlModule | undefined;
  try {
    if (!store.has('embedding.0.weight')) {
      throw new Error(`${store.source}: not a ControlNeXt-SVD control module: no 'embedding.0.weight' (the stride-2 stem both SVD modules have)`);
    }
    const detected: SvdVariantName = store.has('scale') ? 'svd' : 'svd_v2';
    if (opts.variant && opts.variant !== detected) {
      throw new Error(`${store.source}: wrong variant: the file is a ControlNeXt-SVD ${detected === 'svd' ? 'v1 module (it stores the learned `scale`)' : 'v2 module (no stored `scale`)'}, ` +
        `but variant '${opts.variant}' was asked for`);
    }
    const shapeOf = (p: string) => store.shapeOf(p);
    const variant = getVariant(detected);
    if (detected === 'svd') {
      const s = inferLightStructure(shapeOf, { groups: opts.groups ?? V1_GROUPS, stemPadding: variant.stemPadding });
      const { scale: _unused, ...structure } = s;
      module = new ControlNeXtSVDv1Module(store, backend, structure);
    } else {
      const s = inferLightStructure(shapeOf, { groups: opts.groups ?? numberArray(store.config?.groups), stemPadding: variant.stemPadding, scale: 1 });
      module = new ControlNeXtSVDv2Module(store, backend, s);
    }
    store.finish();
    return { module, variant: detected };
  } catch (e) {
    module?.dispose();
    throw e;
  } finally {
    store.close();
  }
}

/** Strengths of the two CFG halves: numbers, or [1] device tensors (v1's learned parameter). */
interface HalfScales {
  uncond: number;
  cond: number | Tensor;
}

export interface SvdHookOptions {
  /** Frames of the window: the control map's batch. */
  frames: number;
  /** The UNet batch is [uncond frames; cond frames] (2 x frames); otherwise only the cond frames. */
  cfg: boolean;
  /** Reports sample_before, control_normed, control_pooled, sample_after (the golden cases' `inject.*`). */
  trace?: Trace;
}

export class ControlNeXtSVD {
  readonly variant: ControlNeXtVariant;
  strength: number;

  constructor(variant: SvdVariantName, readonly module: SvdControlModule, private readonly backend: Backend, opts: { strength?: number } = {}) {
    this.variant = getVariant(variant);
    if ((variant === 'svd') !== (module.svdVersion === 1)) {
      throw new Error(`ControlNeXt-SVD: variant '${variant}' needs the v${variant === 'svd' ? 1 : 2} module, found a v${module.svdVersion} module`);
    }
    this.strength = opts.strength ?? 1;
  }

  static load(fileOrFolder: string, backend: Backend, opts: LoadSvdControlOptions = {}): ControlNeXtSVD {
    const { module, variant } = loadSvdControlModule(fileOrFolder, backend, opts);
    return new ControlNeXtSVD(variant, module, backend, { strength: opts.strength });
  }

  /** The cross-normalisation order (both SVD variants: normalise at the control's size, then pool). */
  private get order(): 'pool_then_norm' | 'norm_then_pool' {
    const m = this.variant.method;
    if (typeof m !== 'string') throw new Error(`ControlNeXt-SVD ${this.variant.name}: a user injection method is not supported by the video injection (controlnext_svd.ts)`);
    return m;
  }

  /** The UNet site the control enters at. */
  get site(): string { return this.variant.site; }

  /** The timestep-independent prefix of frames [F, 3, H, W] in [0, 1] (once per window per generation). */
  prepare(frames: Tensor, opts: { trace?: Trace } = {}): PreparedControl {
    return this.module.prepare(frames, opts);
  }

  /** The control map [F, C, h', w'] for this step: from a prepared set of frames, or frames [F, 3, H, W]. */
  control(input: PreparedControl | Tensor, timestep: Tensor | number, opts: { trace?: Trace } = {}): ControlOutput {
    return 'first' in input ? this.module.forwardPrepared(input, timestep, opts) : this.module.forward(input, timestep, opts);
  }

  /**
   * What the repo's pipeline puts in controlnext_output['scale'] for a batch of `frames` per half: the
   * module scale repeated, uncond half zeroed under CFG ([2F] or [F] values; v1: the raw parameter).
   */
  pipelineScale(moduleScale: Tensor | number, frames: number, cfg: boolean): Tensor {
    const n = cfg ? 2 * frames : frames;
    const one = typeof moduleScale === 'number' ? this.backend.fromRaw(Float32Array.of(moduleScale), [1]) : moduleScale.reshape([1]);
    const e = one.expand([frames]);
    const cond = e.contiguous();
    [one, e].forEach((t) => t.dispose());
    if (!cfg) return cond;
    const zeros = this.backend.zeros([frames]);
    const out = ops.concat([zeros, cond], 0);
    [zeros, cond].forEach((t) => t.dispose());
    if (out.shape[0] !== n) throw new Error('ControlNeXtSVD.pipelineScale: internal shape error');
    return out;
  }

  /** The effective strengths of the two halves (see the header). */
  private halfScales(moduleScale: Tensor | number): HalfScales {
    const k = this.strength;
    const rule = this.variant.scale;
    if (rule.kind === 'sigmoid_module') {
      // uncond: sigmoid(0) * m (the zeroed parameter); cond: sigmoid(scale) * m.
      const m = rule.multiplier * k;
      if (typeof moduleScale === 'number') return { uncond: 0.5 * m, cond: m / (1 + Math.exp(-moduleScale)) };
      const s = ops.sigmoid(moduleScale);
      const cond = ops.affine(s, m);
      s.dispose();
      return { uncond: 0.5 * m, cond };
    }
    // v2: scale * 0.2; its CFG policy gives the unconditional half nothing.
    const factor = rule.kind === 'module_times' ? rule.factor : 1;
    const cond = typeof moduleScale === 'number' ? moduleScale * factor * k : ops.affine(moduleScale, factor * k);
    return { uncond: 0, cond };
  }

  /**
   * The hooks that inject `ctrl` (the module's output for the window's F frames) into ONE UNet forward
   * of batch 2F (cfg) or F. dispose() frees what the hooks hold (per-sample scale tensors).
   */
  hooks(ctrl: ControlOutput, opts: SvdHookOptions): { hooks: Record<string, FeatureHook>; dispose(): void } {
    const F = opts.frames;
    const control = ctrl.out;
    if (control.shape[0] !== F) throw new Error(`ControlNeXt-SVD: the control map ${control.toString()} must have one row per frame (${F})`);
    const hs = this.halfScales(ctrl.scale);
    const held: Tensor[] = typeof hs.cond === 'number' ? [] : [hs.cond];
    const eps = this.variant.eps;
    const order = this.order;
    const uncondOff = this.variant.cfg === 'uncond_zero' && hs.uncond === 0;
    let fired = false;
    const inject: FeatureHook = (x) => {
      if (fired) throw new Error(`ControlNeXt-SVD: the injection at ${this.site} fired twice in one forward`);
      fired = true;
      const N = opts.cfg ? 2 * F : F;
      if (x.shape[0] !== N) throw new Error(`ControlNeXt-SVD: the UNet feature at ${this.site} has batch ${x.shape[0]}, expected ${N} (${F} frames${opts.cfg ? ' x 2 for CFG' : ''})`);
      if (x.shape[1] !== control.shape[1]) {
        throw new Error(`ControlNeXt-SVD ${this.variant.name}: the control map has ${control.shape[1]} channels, the UNet feature at ${this.site} ` +
          `${x.toString()} has ${x.shape[1]}; the module's output width must equal the UNet width there`);
      }
      const trace = opts.trace;
      if (trace) {
        // Inspection only, as the repo computes it on the doubled batch; the output below is the fused path.
        trace('sample_before', x);
        const full = opts.cfg ? ops.concat([control, control], 0) : control.contiguous();
        const normed = crossNormalizeUnfused(x, full, eps);
        trace('control_normed', normed);
        const pooled = ops.adaptiveAvgPool2d(normed, [x.shape[2]!, x.shape[3]!]);
        trace('control_pooled', pooled);
        [full, normed, pooled].forEach((t) => t.dispose());
      }
      const perFrame = (s: number | Tensor): number | Tensor => {
        if (typeof s === 'number') return s;
        const e = s.expand([F]);
        const c = e.contiguous();
        e.dispose();
        held.push(c);
        return c;
      };
      let out: Tensor;
      if (!opts.cfg) {
        out = crossNorm(x, control, { eps, order, scale: perFrame(hs.cond) });
      } else if (uncondOff) {
        const xu = x.slice(0, 0, F), xc = x.slice(0, F, 2 * F);
        const yc = crossNorm(xc, control, { eps, order, scale: perFrame(hs.cond) });
        out = ops.concat([xu, yc], 0);
        [xu, xc, yc].forEach((t) => t.dispose());
      } else {
        const full = ops.concat([control, control], 0);
        const u = this.backend.fromRaw(new Float32Array(F).fill(hs.uncond), [F]);
        const c = perFrame(hs.cond);
        const scale = typeof c === 'number' ? this.backend.fromRaw(new Float32Array(F).fill(c), [F]) : c;
        const s2 = ops.concat([u, scale], 0);
        out = crossNorm(x, full, { eps, order, scale: s2 });
        [full, u, s2].forEach((t) => t.dispose());
        if (scale !== c) scale.dispose();
      }
      trace?.('sample_after', out);
      return out;
    };
    return { hooks: { [this.site]: inject }, dispose: () => held.forEach((t) => t.dispose()) };
  }

  /**
   * The repo's injection for a control map computed on the UNet's own batch (forwardVideo on the
   * CFG-doubled frames: [2F, ...] or [F, ...] rows): one crossNorm with a per-sample strength [N]
   * (zero / sigmoid(0) x 1.3 on the unconditional half). The reference the benchmark compares against.
   */
  referenceHooks(ctrl: ControlOutput, opts: { frames: number; cfg: boolean }): { hooks: Record<string, FeatureHook>; dispose(): void } {
    const F = opts.frames, N = opts.cfg ? 2 * F : F;
    if (ctrl.out.shape[0] !== N) throw new Error(`ControlNeXt-SVD: the reference control map ${ctrl.out.toString()} must have ${N} rows`);
    const hs = this.halfScales(ctrl.scale);
    const rows = (s: number | Tensor): Tensor => {
      if (typeof s === 'number') return this.backend.fromRaw(new Float32Array(F).fill(s), [F]);
      const e = s.expand([F]);
      const c = e.contiguous();
      e.dispose();
      return c;
    };
    const cond = rows(hs.cond);
    let scale = cond;
    if (opts.cfg) {
      const u = rows(hs.uncond);
      scale = ops.concat([u, cond], 0);
      [u, cond].forEach((t) => t.dispose());
    }
    if (typeof hs.cond !== 'number') hs.cond.dispose();
    const inject: FeatureHook = (x) => crossNorm(x, ctrl.out, { eps: this.variant.eps, order: this.order, scale });
    return { hooks: { [this.site]: inject }, dispose: () => scale.dispose() };
  }

  numParameters(): number { return this.module.numParameters(); }
  dispose(): void { this.module.dispose(); }
}
