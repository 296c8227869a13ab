// The convergence experiment's base model (issue 12, step 1): a tiny text-to-image UNet trained from
// scratch on the shapes set, every parameter, so that the control arms have a model that already draws
// "a red circle" to steer. The objective is the one the ControlNeXt trainer uses (DDPM noising, MSE;
// controlnext_trainer.ts), without a control: for each step
//   t ~ U{0..T-1}, eps ~ N(0, 1) per sample  (a pure function of (seed, step): mixSeed stream 7)
//   x_t = sqrt(ac[t]) x_0 + sqrt(1 - ac[t]) eps
//   target = eps (epsilon) or sqrt(ac[t]) eps - sqrt(1 - ac[t]) x_0 (v_prediction, the schedule says which)
//   loss = mse(unet(x_t, t, text), target);  AdamW over every UNet parameter (betas 0.9/0.999, eps 1e-8, wd 1e-2)
// The experiment uses v_prediction (convergence_experiment.ts says why).
// The text states come from a frozen random tiny CLIP (tiny_model.ts): distinct prompts give distinct
// states, which is all the cross-attention needs to tell "red circle" from "blue star".

import { AdamW, backward, noGrad, ops, scope, RandomWeights, type Backend, type NamedParameter } from '@cnx/tensor';
import { RandomGenerator, UNet2DConditionModel } from '@cnx/unet';
import { TINY_UNET_CONFIG, mixSeed, type TrainingDataCache, type TrainingNoiseSchedule } from '@cnx/controlnext';
import { LATENT_CHANNELS } from './pixel_latents.js';

/** Host copy of a model's parameters: name -> shape and values. */
export type HostWeights = Map<string, { shape: number[]; data: Float32Array }>;

/** The tiny UNet of tiny_model.ts on 12-channel pixel-grid latents (pixel_latents.ts) of latentSize. */
export function baseUnetConfig(latentSize: number): Record<string, unknown> {
  return { ...TINY_UNET_CONFIG, in_channels: LATENT_CHANNELS, out_channels: LATENT_CHANNELS, sample_size: latentSize };
}

/** A UNet with `weights` (or its random initialisation, seed `seed`, when none are given). */
export function createBaseUnet(backend: Backend, latentSize: number, weights?: HostWeights, seed = 0): UNet2DConditionModel {
  const unet = new UNet2DConditionModel(baseUnetConfig(latentSize) as never, new RandomWeights({ seed: 100 + seed }), backend);
  if (weights) setWeights(unet, weights);
  return unet;
}

/** Replace every parameter of `unet` by the host copy (all must be present, same shapes). */
export function setWeights(unet: UNet2DConditionModel, weights: HostWeights): void {
  for (const [k, t] of unet.namedParameters()) {
    const w = weights.get(k);
    if (!w) throw new Error(`base model weights: no tensor '${k}' (have ${weights.size} tensors)`);
    if (w.shape.length !== t.shape.length || w.shape.some((d, i) => d !== t.shape[i])) {
      throw new Error(`base model weights: '${k}' is [${w.shape.join(', ')}], the UNet's [${t.shape.join(', ')}]`);
    }
    unet.setParameter(k, unet.backend.fromRaw(w.data.slice(), w.shape));
  }
}

export async function hostWeights(unet: UNet2DConditionModel): Promise<HostWeights> {
  const out: HostWeights = new Map();
  for (const [k, t] of unet.namedParameters()) out.set(k, { shape: [...t.shape], data: await t.data() });
  return out;
}

export interface BaseTrainingRow {
  step: number;
  loss: number;
  lr: number;
  it_per_s: number;
  elapsed_s: number;
}

export interface BaseTrainingOptions {
  steps: number;
  learningRate: number;
  seed: number;
  onStep?: (row: BaseTrainingRow) => void;
}

const STREAM_BASE_NOISE = 7;

/** Train every parameter of `unet` on the cache's batches (see the file header); returns the per-step log. */
export async function trainBaseModel(unet: UNet2DConditionModel, data: TrainingDataCache, schedule: TrainingNoiseSchedule, o: BaseTrainingOptions): Promise<BaseTrainingRow[]> {
  const v = schedule.predictionType === 'v_prediction';
  const backend = unet.backend;
  const params: NamedParameter[] = unet.namedParameters().map(([k, t]) => { t.requiresGrad = true; return [k, t] as const; });
  const optimizer = new AdamW(params, {
    lr: o.learningRate, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2, place: (name, view) => unet.setParameter(name, view),
  });
  const ac = schedule.alphasCumprod, T = ac.length;
  const rows: BaseTrainingRow[] = [];
  const t0 = performance.now();
  try {
    for (let step = 0; step < o.steps; step++) {
      const ts = performance.now();
      const batch = data.batch(step);
      const [B, C, h, w] = batch.latents.shape as [number, number, number, number];
      const rng = new RandomGenerator(mixSeed(o.seed, STREAM_BASE_NOISE, step));
      const timesteps = Array.from({ length: B }, () => Math.min(T - 1, Math.floor(rng.uniform() * T)));
      const noise = backend.fromRaw(rng.normal(B * C * h * w), [B, C, h, w]);
      const a = backend.fromRaw(Float32Array.from(timesteps, (t) => Math.sqrt(ac[t]!)), [B, 1, 1, 1]);
      const s = backend.fromRaw(Float32Array.from(timesteps, (t) => Math.sqrt(1 - ac[t]!)), [B, 1, 1, 1]);
      const tT = backend.fromRaw(Float32Array.from(timesteps), [B]);
      let value: number;
      try {
        const loss = scope(() => {
          const { noisy, target } = noGrad(() => ({
            noisy: ops.add(ops.mul(batch.latents, a), ops.mul(noise, s)),
            target: v ? ops.sub(ops.mul(noise, a), ops.mul(batch.latents, s)) : noise,
          }));
          return ops.mseLoss(unet.forward(noisy, tT, batch.encoderHiddenStates), target);
        });
        backward(loss);
        value = (await loss.data())[0]!;
        loss.dispose();
      } finally {
        for (const t of [noise, a, s, tT, batch.latents, batch.encoderHiddenStates, batch.controlImage]) t.dispose();
      }
      if (!Number.isFinite(value)) throw new Error(`base model step ${step}: the loss is ${value} (lower --base-lr)`);
      optimizer.step();
      optimizer.zeroGrad({ setToNone: false });
      const now = performance.now();
      const row = { step, loss: value, lr: o.learningRate, it_per_s: 1000 / (now - ts), elapsed_s: (now - t0) / 1000 };
      rows.push(row);
      o.onStep?.(row);
    }
  } finally {
    optimizer.zeroGrad();
    optimizer.dispose();
    for (const [, t] of unet.namedParameters()) t.requiresGrad = false;
  }
  return rows;
}
