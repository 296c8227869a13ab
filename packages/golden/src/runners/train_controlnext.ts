// train_controlnext: k optimizer steps of the ControlNeXt-SD1.5-Training recipe through @cnx/controlnext's
// ControlNeXtTrainer (the case's notes: DDPM add_noise, control module, UNet with the injection, MSE,
// AdamW over the control module at lr x10 and every UNet to_out tensor). args.injection picks the
// recipe's cross normalisation or our zero-conv baseline (train_zero_conv_step).
//
// Everything comes from the case: the models of kinds controlnext_training_unet / controlnext_training /
// scheduler, args.hparams, per-step inputs (leading dim = step) latents, noise, timesteps,
// encoder_hidden_states, controlnet_cond, and for the zero conv its init (io init.zero_conv.*).
// Produced: out.loss, out.lr, check.frozen_max_abs_change, sched.alphas_cumprod, step<k>.noisy_latents /
// .control / .model_pred, grad.step1.<owner>.<key>, step<k>.param.<owner>.<key>.
// Derived checks:
//  - step<k>.update.<owner>.<key>: the per-step UPDATE (param after minus param before), ours against the
//    reference's, with the case's update_tolerance (the parameters themselves move by ~lr per step, far
//    below their own max_abs, so only the updates test the step). The reference's parameter after the
//    last step comes from its checkpoint file where the case says so (outputs_in_checkpoint).
//  - checkpoint.<file>.<key>: every tensor of the checkpoint files we write (checkpointFiles(), read back
//    from the bytes) against the case's checkpoint/ files, with checkpoint.<file>.tolerance.

import { SafetensorsFile, type Backend, type Tensor, type WeightSource } from '@cnx/tensor';
import { ControlNeXt, ControlNeXtTrainer, trainingNoiseSchedule, type TrainingInjection } from '@cnx/controlnext';
import { UNet2DConditionModel } from '@cnx/unet';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DerivedCheck, GoldenCase, Produced, Runner, ToleranceSpec } from '../golden_case.js';
import { modelDirOfKind } from './unet.js';

interface Hparams {
  learning_rate: number;
  control_lr_mult: number;
  adam_beta1: number;
  adam_beta2: number;
  adam_weight_decay: number;
  adam_epsilon: number;
  max_grad_norm: number;
  clip_grad: boolean;
  lr_scheduler: string;
  steps: number;
}

interface CheckpointEntry {
  path: string;
  keys: Record<string, number[]>;
  tolerance: Record<string, ToleranceSpec>;
}

/** The case's io tensors under a prefix, as a WeightSource (the zero conv's initial weights). */
function ioWeights(c: GoldenCase, prefix: string): WeightSource {
  const source: WeightSource = {
    get: (path, shape, backend) => {
      const t = c.input(`${prefix}.${path.replace(/^conv\./, '')}`, backend);
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new Error(`${c.name}: ${prefix}.${path} is [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
      }
      return t;
    },
    has: (path) => c.io.has(`${prefix}.${path.replace(/^conv\./, '')}`),
    sub: () => source,
  };
  return source;
}

/** Step s of a per-step io tensor [steps, ...]: its [...] slice on the backend. */
function stepSlice(c: GoldenCase, name: string, s: number, backend: Backend): Tensor {
  const { shape, data } = c.expected(name);
  const inner = shape.slice(1), n = inner.reduce((a, b) => a * b, 1);
  if (s >= shape[0]!) throw new Error(`${c.name}: '${name}' has ${shape[0]} steps, step ${s + 1} asked`);
  return backend.fromRaw(data.subarray(s * n, (s + 1) * n), inner);
}

export const trainControlNeXtRunner: Runner = async (c, backend) => {
  const hp = c.args.hparams as Hparams | undefined;
  if (!hp) throw new Error(`${c.name}: args has no 'hparams'`);
  if (hp.lr_scheduler !== 'constant') throw new Error(`${c.name}: lr_scheduler '${hp.lr_scheduler}' (only 'constant' is the recipe's)`);
  const injection = (c.args.injection ?? 'cross_norm') as TrainingInjection;
  if (injection !== 'cross_norm' && injection !== 'zero_conv') throw new Error(`${c.name}: args.injection '${injection}', expected cross_norm or zero_conv`);
  const steps = hp.steps;
  const produced: Produced = new Map();
  const derived: DerivedCheck[] = [];

  const unet = UNet2DConditionModel.fromFolder(modelDirOfKind(c, 'controlnext_training_unet'), backend);
  const cnx = ControlNeXt.load(modelDirOfKind(c, 'controlnext_training'), backend, { variant: 'sd15_training' });
  const schedule = trainingNoiseSchedule(JSON.parse(readFileSync(join(modelDirOfKind(c, 'scheduler'), 'scheduler_config.json'), 'utf8')) as Record<string, unknown>);
  produced.set('sched.alphas_cumprod', Float32Array.from(schedule.alphasCumprod));
  let trainer: ControlNeXtTrainer | undefined;
  try {
    trainer = await ControlNeXtTrainer.create({
      unet, controlnext: cnx, schedule, injection,
      learningRate: hp.learning_rate, controlLrMultiplier: hp.control_lr_mult,
      betas: [hp.adam_beta1, hp.adam_beta2], eps: hp.adam_epsilon, weightDecay: hp.adam_weight_decay,
      maxGradNorm: hp.clip_grad ? hp.max_grad_norm : undefined,
      zeroConvInit: injection === 'zero_conv' ? ioWeights(c, 'init.zero_conv') : undefined,
    });
    const trained = trainer.parameters();
    const nameOf = (p: { owner: string; key: string }) => `${p.owner}.${p.key}`;
    const trainedSet = new Set(trained.map((p) => p.tensor));
    // The frozen UNet tensors before training (check.frozen_max_abs_change).
    const frozen = unet.namedParameters().filter(([, t]) => !trainedSet.has(t));
    const frozenBefore = await Promise.all(frozen.map(([, t]) => t.data()));
    // Our parameters before each step (for the updates).
    const history: Map<string, Float32Array>[] = [new Map(await Promise.all(trained.map(async (p) => [nameOf(p), await p.tensor.data()] as const)))];

    const loss = new Float32Array(steps);
    const timesteps = c.expected('timesteps');
    for (let s = 0; s < steps; s++) {
      const k = s + 1;
      const B = timesteps.shape[1]!;
      const batch = {
        latents: stepSlice(c, 'latents', s, backend),
        noise: stepSlice(c, 'noise', s, backend),
        encoderHiddenStates: stepSlice(c, 'encoder_hidden_states', s, backend),
        controlImage: stepSlice(c, 'controlnet_cond', s, backend),
        timesteps: Array.from(timesteps.data.subarray(s * B, (s + 1) * B), (t) => Math.round(t)),
      };
      try {
        const r = await trainer.forwardBackward(batch, { keep: true });
        loss[s] = r.loss;
        produced.set(`step${k}.noisy_latents`, r.kept!.noisyLatents);
        produced.set(`step${k}.control`, r.kept!.control);
        produced.set(`step${k}.model_pred`, r.kept!.modelPred);
        if (k === 1) {
          for (const p of trained) {
            if (!p.tensor.grad) throw new Error(`${c.name}: '${nameOf(p)}' has no gradient after the first backward`);
            produced.set(`grad.step1.${nameOf(p)}`, await p.tensor.grad.data());
          }
        }
        trainer.optimizerStep();
      } finally {
        [batch.latents, batch.noise, batch.encoderHiddenStates, batch.controlImage].forEach((t) => t.dispose());
      }
      const after = new Map<string, Float32Array>();
      for (const p of trained) {
        const v = await p.tensor.data();
        after.set(nameOf(p), v);
        produced.set(`step${k}.param.${nameOf(p)}`, v);
      }
      history.push(after);
    }
    produced.set('out.loss', loss);
    produced.set('out.lr', Float32Array.of(trainer.optimizer.paramGroups[0]!.lr, trainer.optimizer.paramGroups[1]!.lr));
    let frozenChange = 0;
    const frozenAfter = await Promise.all(frozen.map(([, t]) => t.data()));
    frozenAfter.forEach((a, i) => a.forEach((v, j) => { frozenChange = Math.max(frozenChange, Math.abs(v - frozenBefore[i]![j]!)); }));
    produced.set('check.frozen_max_abs_change', Float32Array.of(frozenChange));

    // Per-step updates against the reference's.
    const inCheckpoint = (c.json as { outputs_in_checkpoint?: Record<string, string> }).outputs_in_checkpoint ?? {};
    const refParam = (name: string): Float32Array => {
      const where = inCheckpoint[name];
      if (!where) return c.expected(name).data;
      const [file, key] = where.split(':') as [string, string];
      const st = SafetensorsFile.open(join(c.dir, file));
      try { return st.readFloat32(key).data; } finally { st.close(); }
    };
    const updateTol = (c.json as { update_tolerance?: Record<string, ToleranceSpec> }).update_tolerance ?? {};
    for (const p of trained) {
      const name = nameOf(p);
      for (let k = 1; k <= steps; k++) {
        const check = `step${k}.update.${name}`;
        const tol = updateTol[check];
        if (!tol) throw new Error(`${c.name}: update_tolerance has no '${check}'`);
        const refAfter = refParam(`step${k}.param.${name}`);
        const refBefore = k === 1 ? history[0]!.get(name)! : refParam(`step${k - 1}.param.${name}`);
        const ours = history[k]!.get(name)!, oursBefore = history[k - 1]!.get(name)!;
        derived.push({
          name: check, shape: p.tensor.shape, tol,
          got: Float32Array.from(ours, (v, i) => v - oursBefore[i]!),
          ref: Float32Array.from(refAfter, (v, i) => v - refBefore[i]!),
        });
      }
    }

    // The checkpoint files we write, read back, against the case's.
    const files = await trainer.checkpointFiles();
    const checkpoint = (c.json as { checkpoint?: Record<string, CheckpointEntry> }).checkpoint ?? {};
    for (const [entry, spec] of Object.entries(checkpoint)) {
      const base = spec.path.split('/').pop()!;
      const bytes = files[base];
      const ref = SafetensorsFile.open(join(c.dir, spec.path));
      try {
        const ours = bytes ? SafetensorsFile.fromBytes(bytes, base) : undefined;
        for (const [key, shape] of Object.entries(spec.keys)) {
          const tol = spec.tolerance[key] ?? { max_abs: 1e-6, rel_l2: 1e-4 };
          const want = ref.readFloat32(key).data;
          const got = ours?.has(key) ? ours.readFloat32(key).data : new Float32Array(want.length).fill(NaN);
          derived.push({ name: `checkpoint.${entry}.${key}${ours?.has(key) ? '' : ' (missing from our file)'}`, shape, tol, got, ref: want });
        }
      } finally {
        ref.close();
      }
    }
  } finally {
    trainer?.dispose();
    unet.dispose();
    cnx.dispose();
  }
  return { produced, derived };
};
