// Generation for the convergence experiment's evaluations: DDIM (eta 0, so deterministic given the initial
// noise) on the pixel-grid latents, with the noise schedule and prediction type the models are trained on
// (TRAINING_SCHEDULER_CONFIG) and clip_sample on: the latents are pixel values in [-1, 1], so the predicted x_0 is clipped to that range
// at every step, as DDPM / DDIM do for pixel-space models (diffusers' DDIMScheduler default; SD's latent
// space turns it off). The control is
// injected the way each arm trains it:
//   cross_norm: ControlNeXt.hooks(module(control, t)): the variant's cross normalisation at its site, as
//               ControlNeXtTrainer's forward does for injection 'cross_norm';
//   zero_conv:  h + conv1x1(adaptive_avg_pool2d(module(control, t), h's size)) with the trainer's zero conv
//               weights, the forward of ControlNeXtTrainer's 'zero_conv' hook restated here because the
//               trainer keeps its hook private (bench/test/convergence_experiment.test.ts checks that both
//               injectors give the trainer's own prediction on the same inputs);
//   none:       the base model alone (prompt only).
// Shape fidelity of the result: shapeIoU (training/shape_iou.ts) of the decoded image against the sample's mask.

import { noGrad, ops, scope, type Backend, type Tensor } from '@cnx/tensor';
import { createScheduler, type Hooks, type UNet2DConditionModel } from '@cnx/unet';
import { SD15_SCHEDULER_CONFIG, shapeIoU, type ControlNeXt, type ShapeSample } from '@cnx/controlnext';
import { decodePixelLatents } from './pixel_latents.js';

/** Hooks of one UNet forward at timesteps tT [B]; tensors made inside are freed by the caller's scope. */
export type ControlInjector = (tT: Tensor, batch: number) => Hooks;

export function crossNormInjector(cnx: ControlNeXt, controlImage: Tensor): ControlInjector {
  return (tT, batch) => {
    const ctrl = cnx.control(controlImage, tT);
    const h = cnx.hooks(ctrl, batch);
    // The scale tensor (if any) is made in the caller's scope and freed with it.
    return h.hooks;
  };
}

export function zeroConvInjector(cnx: ControlNeXt, controlImage: Tensor, weight: Tensor, bias: Tensor): ControlInjector {
  return (tT) => {
    const ctrl = cnx.control(controlImage, tT);
    return {
      [cnx.variant.site]: (h: Tensor): Tensor => ops.add(h, ops.conv2d(ops.adaptiveAvgPool2d(ctrl.out, [h.shape[2]!, h.shape[3]!]), weight, bias)),
    };
  };
}

/** The model's noise prediction at (latents, timesteps) with an injector (one forward, no tape). */
export function predictNoise(unet: UNet2DConditionModel, latents: Tensor, timesteps: readonly number[], ehs: Tensor, injector?: ControlInjector): Tensor {
  return noGrad(() => scope(() => {
    const tT = unet.backend.fromRaw(Float32Array.from(timesteps), [timesteps.length]);
    return unet.forward(latents, tT, ehs, injector ? { hooks: injector(tT, timesteps.length) } : {});
  }));
}

/**
 * The schedule the experiment trains with: SD1.5's (scaled_linear, 1000 steps) with v_prediction. Why v: with
 * epsilon the tiny base model's predicted x_0 at high t is eps's error divided by sqrt(alphabar_t) (0.07 at
 * t = 999): measured after 800 steps, eps MSE 0.14 at t = 999, so x_0 errors of ~5 and DDIM samples that stay
 * noise even with clipping. v's x_0 = sqrt(ac) x_t - sqrt(1 - ac) v carries v's error unamplified
 * (Salimans & Ho 2022, progressive distillation, section 4). ControlNeXtTrainer supports v_prediction (SD2.1-style).
 */
export const TRAINING_SCHEDULER_CONFIG = { ...SD15_SCHEDULER_CONFIG, prediction_type: 'v_prediction' };

/** The sampler's scheduler config: the training schedule with clip_sample (see the file header). */
export const SAMPLER_CONFIG = { ...TRAINING_SCHEDULER_CONFIG, clip_sample: true, clip_sample_range: 1 };

/** DDIM (the training schedule, eta 0, x_0 clipped to [-1, 1]) from `noise` [B, C, h, w]; returns the final latents on the host. */
export async function generateLatents(unet: UNet2DConditionModel, ehs: Tensor, noise: Float32Array, shape: readonly number[], ddimSteps: number, injector?: ControlInjector): Promise<Float32Array> {
  const backend: Backend = unet.backend;
  const scheduler = createScheduler('ddim', SAMPLER_CONFIG);
  scheduler.setTimesteps(ddimSteps);
  const B = shape[0]!;
  let latents = backend.fromRaw(Float32Array.from(noise, (v) => v * scheduler.initNoiseSigma), [...shape]);
  try {
    for (const t of scheduler.timesteps) {
      const next = noGrad(() => scope(() => {
        const input = scheduler.scaleModelInput(latents, t);
        const eps = predictNoise(unet, input, new Array<number>(B).fill(t), ehs, injector);
        return scheduler.step(eps, t, latents).prevSample;
      }));
      latents.dispose();
      latents = next;
    }
    return await latents.data();
  } finally {
    latents.dispose();
    scheduler.dispose();
  }
}

export interface FidelityResult {
  /** Per held-out sample, in order. */
  ious: number[];
  mean: number;
  /** The decoded images (interleaved 8-bit RGB, size x size). */
  images: Uint8Array[];
}

/** Generate the held-out set and measure each image's shape IoU against its sample's mask. */
export async function measureFidelity(unet: UNet2DConditionModel, ehs: Tensor, noise: Float32Array, samples: readonly ShapeSample[], latentShape: readonly number[], ddimSteps: number, injector?: ControlInjector): Promise<FidelityResult> {
  const latents = await generateLatents(unet, ehs, noise, latentShape, ddimSteps, injector);
  const images = decodePixelLatents(latents, samples.length, latentShape[2]!);
  const ious = images.map((rgb, k) => shapeIoU({ rgb, height: samples[k]!.size, width: samples[k]!.size }, samples[k]!).iou);
  return { ious, mean: ious.reduce((a, b) => a + b, 0) / ious.length, images };
}
