// The control a pipeline applies at each denoising step, behind one small interface so that the loop in
// pipeline.ts reads the same with ControlNeXt, a diffusers ControlNet, or no control at all.
//
// ControlNeXt (spec 3.3): the control module runs once per step on the control image at the image's own
// batch (1 when one image serves every sample, B for one image per sample); under CFG the repo runs it on
// [img, img] so both halves get the same control. A batch-1 map is broadcast by the injection itself; a
// batch-B map is repeated to [map; map]. The timestep-independent prefix is prepared once per generation.
//
// ControlNet (diffusers pipeline_controlnet.py, v0.29.2): the ControlNet runs on the UNet's own batch
// (cond image duplicated under CFG) and its residuals, multiplied by controlnet_conditioning_scale, are
// added to the UNet's skips and mid block output.

import { ops, type Tensor, type Trace } from '@cnx/tensor';
import type { UNetForwardOptions } from '@cnx/unet';
import type { ControlOutput, PreparedControl } from '../controlnext/control_module.js';
import type { ControlNeXt } from '../controlnext/controlnext.js';

/** What the control contributes to one UNet forward. */
export interface StepControl {
  unetOptions: UNetForwardOptions;
  /** ControlNeXt: the module output of this step (map at the image batch, and the module scale). */
  controlnext?: ControlOutput;
  /** ControlNeXt: the scale the injection applies (variant rule x module scale x the call's strength). */
  injectionScale?: number | Tensor;
  /** Free what this step's control holds (the step's memory scope does it too). */
  dispose(): void;
}

/** Traces for one step's control (names relative to each). */
export interface StepTraces {
  /** The control model's intermediates (ControlNeXt: its module's state-dict paths). */
  moduleTrace?: Trace;
  /** ControlNeXt: the injection's (sample_before, control_pooled, control_normed, sample_after). */
  injectionTrace?: Trace;
}

/** A control bound to one generation's control image. */
export interface ActiveControl {
  /**
   * Control for the step at timestep t: sample is the UNet input [N, 4, h, w] (N = B, or 2B under CFG
   * as [uncond; cond]), timestep the [1] tensor of t, ctx the text states [N, L, D].
   */
  step(t: number, timestep: Tensor, sample: Tensor, ctx: Tensor, traces?: StepTraces): StepControl;
  dispose(): void;
}

/** A control method a pipeline can hold. */
export interface PipelineControl {
  readonly kind: 'controlnext' | 'controlnet';
  /**
   * Bind to a control image [1 or B, 3, H, W] in [0, 1] for a generation of batch B (cfg: the UNet
   * batch is [uncond; cond]); `scale` is the user's control strength.
   */
  begin(image: Tensor, batch: number, cfg: boolean, scale: number): ActiveControl;
  /** Free the control model's weights. */
  dispose(): void;
}

/** Check the control image batch against the generation batch. */
function checkImageBatch(kind: string, image: Tensor, batch: number): void {
  const b = image.shape[0]!;
  if (image.rank !== 4 || image.shape[1] !== 3 || (b !== 1 && b !== batch)) {
    throw new Error(`${kind}: expected a control image [1 or ${batch}, 3, H, W] (one image for all samples or one per sample), found ${image.toString()}`);
  }
}

/** ControlNeXt: the module output injected once per UNet forward through the variant's feature hook. */
export class ControlNeXtControl implements PipelineControl {
  readonly kind = 'controlnext' as const;

  constructor(readonly controlnext: ControlNeXt) {}

  dispose(): void { this.controlnext.dispose(); }

  begin(image: Tensor, batch: number, cfg: boolean, scale: number): ActiveControl {
    checkImageBatch('ControlNeXt', image, batch);
    const cnx = this.controlnext;
    const prepared: PreparedControl = cnx.prepare(image);
    return {
      step(_t, timestep, sample, _ctx, traces = {}) {
        const ctrl = cnx.control(prepared, timestep, { trace: traces.moduleTrace });
        const N = sample.shape[0]!;
        // A per-sample map [B, ...] is repeated for the two CFG halves; a [1, ...] map is broadcast.
        const map = ctrl.out.shape[0] !== 1 && ctrl.out.shape[0] !== N ? ops.concat([ctrl.out, ctrl.out], 0) : ctrl.out;
        const hooks = cnx.hooks({ out: map, scale: ctrl.scale }, N, { cfg, strength: scale, trace: traces.injectionTrace });
        return {
          unetOptions: { hooks: hooks.hooks },
          controlnext: ctrl,
          injectionScale: hooks.scale,
          dispose() {
            hooks.dispose();
            if (map !== ctrl.out) map.dispose();
            ctrl.out.dispose();
            if (typeof ctrl.scale !== 'number') ctrl.scale.dispose();
          },
        };
      },
      dispose() { prepared.dispose(); },
    };
  }
}

/** What the pipeline needs of a diffusers ControlNetModel. */
export interface ControlNetModelLike {
  dispose(): void;
  /**
   * sample [N, 4, h, w], timestep [1] or [N], ctx [N, L, D], cond [N, 3, H, W] in [0, 1] ->
   * residuals for the UNet's skips (conv_in output first) and its mid block, already multiplied by
   * `conditioningScale`.
   */
  forward(sample: Tensor, timestep: Tensor, ctx: Tensor, cond: Tensor, conditioningScale: number): { down: Tensor[]; mid: Tensor };
}

/** A diffusers ControlNet: residuals added to the UNet's skips and mid block output. */
export class ControlNetControl implements PipelineControl {
  readonly kind = 'controlnet' as const;

  constructor(readonly controlnet: ControlNetModelLike) {}

  dispose(): void { this.controlnet.dispose(); }

  begin(image: Tensor, batch: number, cfg: boolean, scale: number): ActiveControl {
    checkImageBatch('ControlNet', image, batch);
    const per = image.shape[0] === batch ? image.contiguous() : image.expand([batch, ...image.shape.slice(1)]).contiguous();
    const cond = cfg ? ops.concat([per, per], 0) : per;
    if (cond !== per) per.dispose();
    const net = this.controlnet;
    return {
      step(_t, timestep, sample, ctx) {
        const r = net.forward(sample, timestep, ctx, cond, scale);
        return {
          unetOptions: { downBlockAdditionalResiduals: r.down, midBlockAdditionalResidual: r.mid },
          dispose() { r.down.forEach((d) => d.dispose()); r.mid.dispose(); },
        };
      },
      dispose() { cond.dispose(); },
    };
  }
}
