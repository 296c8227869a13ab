// One ControlNeXt training step as `npm run bench -- --train` times it: the SD1.5 UNet (random weights)
// with the light module (SD1.5-Training) injected after down_blocks[0], the recipe's trainable set (every
// module parameter at 10x the learning rate, every UNet parameter whose name holds `to_out` at the base
// rate: ControlNeXt-SD1.5-Training train_controlnext.py), the fused AdamW (`place` re-homes each group into
// one flat storage through Module.setParameter, as a trainer does), and MSE against the noise.
// A step is three phases, each timed up to the backend's queue drain (step_timing.ts measure): forward
// (module + UNet + loss, recorded on the tape), backward, optimizer (AdamW step + zero_grad).

import { AdamW, backward, ops, scope, type Backend, type Tensor } from '@cnx/tensor';
import { ControlNeXt, type ControlNeXtLightModule } from '@cnx/controlnext';
import type { UNet2DConditionModel } from '@cnx/unet';
import { buildLightModule, buildUnet, mulberry, randomTensor } from './sd15_step.js';
import { SD15_SEQ_LEN } from './sd15_configs.js';
import { measure, type Clock } from './step_timing.js';
import { latentOf, type Geometry } from './variants.js';

/** SD1.5-Training's learning rate (train_controlnext.py --learning_rate 1e-5); the module gets 10x. */
export const TRAIN_LR = 1e-5;
/** torch.optim.AdamW's defaults, which train_controlnext.py keeps (adam_beta1/2, epsilon, weight_decay). */
export const TRAIN_ADAMW = { betas: [0.9, 0.999] as const, eps: 1e-8, weightDecay: 1e-2 };

export interface PhaseTimes {
  forwardMs: number;
  backwardMs: number;
  optimizerMs: number;
  /** Summed GPU pass times per phase (timestamp queries), where the backend has them. */
  gpuMs?: { forward: number; backward: number; optimizer: number };
}

export interface TrainStep {
  readonly unet: UNet2DConditionModel;
  readonly module: ControlNeXtLightModule;
  readonly optimizer: AdamW;
  /** Trainable parameters as built: the module's and the UNet's `to_out` ones. */
  readonly params: { module: number; unetToOut: number };
  /** One training step; `round` picks the timesteps (their values do not change the cost). */
  step(round: number, clock?: Clock): Promise<PhaseTimes>;
  dispose(): void;
}

export function buildTrainStep(backend: Backend, g: Geometry, seed: number): TrainStep {
  const B = g.images, [H, W] = g.resolution, [h, w] = latentOf(g);
  const unet = buildUnet(backend, seed);
  const module = buildLightModule(backend, seed + 2);
  const cnx = new ControlNeXt('sd15_training', module, backend);
  const moduleParams = module.namedParameters().map(([k, p]) => [`module.${k}`, p] as const);
  const unetParams = unet.namedParameters().filter(([k]) => k.includes('to_out')).map(([k, p]) => [`unet.${k}`, p] as const);
  for (const [, p] of [...moduleParams, ...unetParams]) p.requiresGrad = true;
  const params = { module: moduleParams.reduce((s, [, p]) => s + p.size, 0), unetToOut: unetParams.reduce((s, [, p]) => s + p.size, 0) };
  const optimizer = new AdamW([{ params: moduleParams, lr: 10 * TRAIN_LR }, { params: unetParams, lr: TRAIN_LR }], {
    ...TRAIN_ADAMW,
    place: (name, view) => (name.startsWith('module.') ? module.setParameter(name.slice(7), view) : unet.setParameter(name.slice(5), view)),
  });
  // A training batch: noisy latents, the noise they were noised with (the target), text states and control images.
  const rnd = mulberry(seed + 11);
  const inputs = {
    noisy: randomTensor(backend, [B, 4, h, w], rnd, -1, 1),
    noise: randomTensor(backend, [B, 4, h, w], rnd, -1, 1),
    context: randomTensor(backend, [B, SD15_SEQ_LEN, 768], rnd, -1, 1),
    image: randomTensor(backend, [B, 3, H, W], rnd, 0, 1),
  };
  return {
    unet, module, optimizer, params,
    async step(round, clock) {
      const t = backend.fromRaw(Float32Array.from({ length: B }, (_, i) => (137 * (round * B + i)) % 1000), [B]);
      let loss: Tensor | undefined;
      try {
        const fwd = await measure(backend, () => {
          loss = scope(() => {
            const ctrl = cnx.control(inputs.image, t);
            const hooks = cnx.hooks(ctrl, B);
            const pred = unet.forward(inputs.noisy, t, inputs.context, { hooks: hooks.hooks });
            hooks.dispose();
            return ops.mseLoss(pred, inputs.noise);
          });
        }, clock);
        const bwd = await measure(backend, () => backward(loss!), clock);
        const opt = await measure(backend, () => { optimizer.step(); optimizer.zeroGrad(); }, clock);
        const gpu = fwd.gpuMs !== undefined && bwd.gpuMs !== undefined && opt.gpuMs !== undefined
          ? { gpuMs: { forward: fwd.gpuMs, backward: bwd.gpuMs, optimizer: opt.gpuMs } } : {};
        return { forwardMs: fwd.wallMs, backwardMs: bwd.wallMs, optimizerMs: opt.wallMs, ...gpu };
      } finally {
        loss?.dispose();
        t.dispose();
      }
    },
    dispose() {
      optimizer.zeroGrad();
      optimizer.dispose();
      cnx.dispose();
      unet.dispose();
      Object.values(inputs).forEach((x) => x.dispose());
    },
  };
}
