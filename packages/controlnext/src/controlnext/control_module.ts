// What every ControlNeXt control module offers, whatever its architecture (controlnext_sd15.ts: the
// SD1.5 release module; controlnext_light.ts: the stride-2-stem module of SD1.5-Training / SDXL / SVD-v2).
//
// Two paths that give the same result:
//  - forward(image, t): the reference, everything every step, at the image's batch (the repo's code);
//  - prepare(image) once per generation, then forwardPrepared(prepared, t) each step: the
//    timestep-independent prefix (stem, first ResNet block's conv1(silu(norm1(x))) and shortcut) is
//    computed once and reused.
// Under CFG the output depends only on (image, t), so both are meant to run at batch 1 and the [1, ...]
// map is broadcast by the injection (injection.ts).

import type { Backend, Tensor, Trace } from '@cnx/tensor';
import type { ResnetPrefix } from '@cnx/unet';

export interface ControlOutput {
  /** The control map [B, C_out, h', w']. */
  out: Tensor;
  /**
   * The module's own scale: the learned `scale` parameter as a [1] tensor (release module) or the
   * constructor float (light module; 1.0 for SDXL, controlnext_scale for SD1.5-Training).
   */
  scale: Tensor | number;
}

/** The timestep-independent part of a module's forward for one control image batch. */
export interface PreparedControl {
  /** Batch of the prepared image. */
  readonly batch: number;
  /** The first ResNet block's input-only part (ResnetBlock2D.prefix). */
  readonly first: ResnetPrefix;
  dispose(): void;
}

export interface ControlModule {
  /** 'svd_v1': ControlNeXt-SVD v1's module (controlnext_svd_modules.ts). */
  readonly arch: 'release' | 'light' | 'svd_v1';
  /** Output channels (must equal the UNet width at the injection point). */
  readonly outChannels: number;
  forward(image: Tensor, timestep: Tensor | number, opts?: { trace?: Trace }): ControlOutput;
  prepare(image: Tensor, opts?: { trace?: Trace }): PreparedControl;
  forwardPrepared(prepared: PreparedControl, timestep: Tensor | number, opts?: { trace?: Trace }): ControlOutput;
  numParameters(): number;
  dispose(): void;
}

/**
 * The timestep as a [B] f32 tensor: the repo passes a scalar (0-d) tensor and the module does
 * `timesteps.expand(sample.shape[0])` (spec 2.1). Accepts a number, a [1] / 0-d tensor, or [B].
 */
export function timestepBatch(backend: Backend, timestep: Tensor | number, batch: number): Tensor {
  if (typeof timestep === 'number') return backend.fromRaw(new Float32Array(batch).fill(timestep), [batch]);
  if (timestep.size === 1) {
    const one = timestep.reshape([1]);
    const e = one.expand([batch]);
    const c = e.contiguous();
    one.dispose();
    e.dispose();
    return c;
  }
  if (timestep.rank !== 1 || timestep.shape[0] !== batch) {
    throw new Error(`control module: expected a scalar timestep or one per sample [${batch}], found ${timestep.toString()}`);
  }
  return timestep.contiguous();
}

/** PreparedControl over a ResnetPrefix. */
export function preparedFrom(batch: number, first: ResnetPrefix): PreparedControl {
  return {
    batch,
    first,
    dispose() {
      first.h.dispose();
      first.skip.dispose();
    },
  };
}
