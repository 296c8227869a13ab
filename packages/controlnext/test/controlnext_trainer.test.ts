// ControlNeXtTrainer beyond the golden cases (train_controlnext_step / train_zero_conv_step check the
// recipe's arithmetic): exact resume from checkpoint files, the zero-conv ablation's blocked first
// gradient, the v-prediction target, the checkpoint's increments, and refused resumes.

import {
  ControlNeXt, ControlNeXtLightModule, ControlNeXtTrainer, SD15_SCHEDULER_CONFIG, TINY_LIGHT_CONTROLNEXT_STRUCTURE, TINY_UNET_CONFIG,
  trainingNoiseSchedule, type ControlNeXtTrainerOptions,
} from '@cnx/controlnext';
import { CpuBackend, RandomWeights, SafetensorsFile, type Backend, type Tensor } from '@cnx/tensor';
import { UNet2DConditionModel } from '@cnx/unet';
import { describe, expect, it } from 'vitest';
import { randomArray } from '../../../test/harness/allclose.js';

const B = 2;

function models(backend: Backend) {
  const unet = new UNet2DConditionModel({ ...TINY_UNET_CONFIG, sample_size: 8 }, new RandomWeights({ seed: 3 }), backend);
  const module = new ControlNeXtLightModule(new RandomWeights({ seed: 4 }), backend, { ...TINY_LIGHT_CONTROLNEXT_STRUCTURE, scale: 0.35 });
  return { unet, cnx: new ControlNeXt('sd15_training', module, backend) };
}

function batch(backend: Backend, step: number) {
  const t = (shape: number[], seed: number, scale = 1) => backend.fromRaw(randomArray(shape.reduce((a, b) => a * b, 1), seed + 97 * step, scale), shape);
  return { latents: t([B, 4, 8, 8], 1), encoderHiddenStates: t([B, 7, 32], 2), controlImage: t([B, 3, 64, 64], 3, 0.5) };
}

function dispose(b: Record<string, Tensor>): void { Object.values(b).forEach((x) => x.dispose()); }

async function run(backend: Backend, steps: number, extra: Partial<ControlNeXtTrainerOptions> = {}, from = 0) {
  const { unet, cnx } = models(backend);
  const trainer = await ControlNeXtTrainer.create({
    unet, controlnext: cnx, schedule: trainingNoiseSchedule(SD15_SCHEDULER_CONFIG), learningRate: 1e-3, seed: 11, ...extra,
  });
  const losses: number[] = [];
  for (let s = from; s < from + steps; s++) {
    const b = batch(backend, s);
    losses.push((await trainer.trainStep(b)).loss);
    dispose(b);
  }
  const params = await Promise.all(trainer.parameters().map((p) => p.tensor.data()));
  return { trainer, losses, params, close: () => { trainer.dispose(); unet.dispose(); cnx.dispose(); } };
}

describe('ControlNeXtTrainer (CPU)', () => {
  it('f16 weight storage: trained parameters become f32 master weights, the frozen rest stays f16 and unchanged', async () => {
    const cpu = new CpuBackend({ weightDtype: 'f16' });
    const { unet, cnx } = models(cpu);
    const frozenBefore = unet.namedParameters().filter(([k]) => !k.includes('to_out') && k.endsWith('.weight') && k.includes('resnets'));
    expect(frozenBefore.length).toBeGreaterThan(0);
    expect(frozenBefore.every(([, t]) => t.dtype === 'f16')).toBe(true);
    const before = await Promise.all(frozenBefore.map(([, t]) => t.data()));
    // without the widening, AdamW refuses: "expected f32 parameters (the compute dtype)"
    const trainer = await ControlNeXtTrainer.create({ unet, controlnext: cnx, schedule: trainingNoiseSchedule(SD15_SCHEDULER_CONFIG), learningRate: 1e-3, seed: 11 });
    expect(trainer.parameters().every((p) => p.tensor.dtype === 'f32')).toBe(true);
    const losses: number[] = [];
    for (let s = 0; s < 2; s++) {
      const b = batch(cpu, s);
      losses.push((await trainer.trainStep(b)).loss); // gradients pass through f16 convs, norms and Linears
      dispose(b);
    }
    expect(losses.every(Number.isFinite)).toBe(true);
    const frozenAfter = unet.namedParameters().filter(([k]) => frozenBefore.some(([f]) => f === k));
    expect(frozenAfter.every(([, t]) => t.dtype === 'f16')).toBe(true);
    (await Promise.all(frozenAfter.map(([, t]) => t.data()))).forEach((d, i) => expect(d).toEqual(before[i]));
    trainer.dispose(); unet.dispose(); cnx.dispose();
  }, 300_000);

  it('resuming from a checkpoint reproduces the uninterrupted run exactly', async () => {
    const cpu = new CpuBackend();
    const full = await run(cpu, 4);
    full.close();
    const first = await run(cpu, 2);
    const files = await first.trainer.checkpointFiles();
    first.close();
    const rest = await run(cpu, 2, { resume: files }, 2);
    expect(rest.trainer.step).toBe(4);
    expect([...first.losses, ...rest.losses]).toEqual(full.losses);
    rest.params.forEach((p, i) => expect(p, `parameter ${rest.trainer.parameters()[i]!.key}`).toEqual(full.params[i]));
    rest.close();
    expect(cpu.memory().liveBytes).toBe(0);
  }, 300_000);

  it('checkpoint: repo key names, increments = trained - pretrained, refused resumes name the mismatch', async () => {
    const cpu = new CpuBackend();
    const { unet } = models(cpu);
    const pre = new Map(await Promise.all(unet.namedParameters().filter(([k]) => k.includes('to_out')).map(async ([k, t]) => [k, await t.data()] as const)));
    unet.dispose();
    const r = await run(cpu, 1);
    const files = await r.trainer.checkpointFiles();
    const ctrl = SafetensorsFile.fromBytes(files['controlnext.safetensors']!);
    expect(ctrl.keys()).toContain('embedding.0.weight');
    expect(ctrl.keys()).toContain('mid_convs.1.weight');
    const trained = SafetensorsFile.fromBytes(files['unet.safetensors']!);
    const inc = SafetensorsFile.fromBytes(files['unet_weight_increasements.safetensors']!);
    expect(trained.keys().sort()).toEqual([...pre.keys()].sort());
    for (const k of trained.keys()) {
      const after = trained.readFloat32(k).data, d = inc.readFloat32(k).data, before = pre.get(k)!;
      expect(d.some((v) => v !== 0), k).toBe(true);
      after.forEach((v, i) => expect(d[i]).toBe(Math.fround(v - before[i]!)));
    }
    r.close();
    await expect(run(cpu, 0, { resume: files, seed: 12 })).rejects.toThrow(/seed 11.*12/);
    await expect(run(cpu, 0, { resume: files, injection: 'zero_conv' })).rejects.toThrow(/injection "cross_norm".*"zero_conv"/);
    const { 'optimizer.safetensors': _, ...noOpt } = files;
    await expect(run(cpu, 0, { resume: noOpt })).rejects.toThrow(/no optimizer.safetensors/);
  }, 300_000);

  it('zero_conv: the control module gets exactly zero gradient at step 1, the zero conv does not', async () => {
    const cpu = new CpuBackend();
    const { unet, cnx } = models(cpu);
    const trainer = await ControlNeXtTrainer.create({ unet, controlnext: cnx, schedule: trainingNoiseSchedule(SD15_SCHEDULER_CONFIG), learningRate: 1e-3, injection: 'zero_conv' });
    const b = batch(cpu, 0);
    await trainer.forwardBackward(b);
    dispose(b);
    for (const p of trainer.parameters()) {
      const g = await p.tensor.grad!.data();
      if (p.owner === 'controlnext') expect(g.every((v) => v === 0), p.key).toBe(true);
      if (p.owner === 'zero_conv' && p.key === 'bias') expect(g.some((v) => v !== 0)).toBe(true);
    }
    expect(trainer.parameters().filter((p) => p.owner === 'zero_conv').map((p) => p.key).sort()).toEqual(['bias', 'weight']);
    trainer.dispose(); unet.dispose(); cnx.dispose();
  }, 300_000);

  it('v-prediction: the loss is the MSE against sqrt(ac) noise - sqrt(1 - ac) latents', async () => {
    const cpu = new CpuBackend();
    const losses: number[] = [];
    for (const prediction_type of ['epsilon', 'v_prediction']) {
      const { unet, cnx } = models(cpu);
      const schedule = trainingNoiseSchedule({ ...SD15_SCHEDULER_CONFIG, prediction_type });
      const trainer = await ControlNeXtTrainer.create({ unet, controlnext: cnx, schedule, learningRate: 1e-3 });
      const b = batch(cpu, 0);
      const r = await trainer.forwardBackward(b, { keep: true });
      losses.push(r.loss);
      // the same loss from the kept prediction and the target computed here on the host
      const [pred, lat] = [await r.kept!.modelPred.data(), await b.latents.data()];
      const noise = trainer.drawNoise(0, b.latents.shape).noise;
      const n = lat.length / B;
      let sum = 0;
      for (let i = 0; i < lat.length; i++) {
        const ac = schedule.alphasCumprod[r.timesteps[Math.floor(i / n)]!]!;
        const target = prediction_type === 'epsilon' ? noise[i]! : Math.sqrt(ac) * noise[i]! - Math.sqrt(1 - ac) * lat[i]!;
        sum += (pred[i]! - target) ** 2;
      }
      expect(Math.abs(sum / lat.length - r.loss)).toBeLessThan(1e-5 * r.loss);
      Object.values(r.kept!).forEach((t) => t.dispose());
      dispose(b);
      trainer.dispose(); unet.dispose(); cnx.dispose();
    }
    expect(losses[0]).not.toBe(losses[1]);
  }, 300_000);
});
