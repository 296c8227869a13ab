// A ControlNeXt training step through the autograd tape: a tiny SD1.5-layout UNet (random weights) with a
// light ControlNeXt module injected after down_blocks[0] by cross normalisation (the SD1.5-Training
// recipe), MSE loss on the predicted noise, gradients for the control module and every UNet `to_out`
// weight (what that recipe trains). Checks: with gradient checkpointing (@cnx/unet
// enableGradientCheckpointing: every resnet and transformer block) the gradients equal those without it,
// the tape holds far less between forward and backward, and memory returns to the parameters alone after
// backward, over several steps. On CPU; then the same step on WebGPU against the CPU (small shapes).

import { ControlNeXt, ControlNeXtLightModule, TINY_UNET_CONFIG } from '@cnx/controlnext';
import { CpuBackend, RandomWeights, backward, ops, scope, zeroGrad, type Backend, type Tensor } from '@cnx/tensor';
import { UNet2DConditionModel, enableGradientCheckpointing } from '@cnx/unet';
import { describe, expect, it } from 'vitest';
import { expectAllClose, randomArray } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

interface Setup {
  unet: UNet2DConditionModel;
  module: ControlNeXtLightModule;
  cnx: ControlNeXt;
  trained: Tensor[];
  batch: { noisy: Tensor; t: Tensor; ehs: Tensor; image: Tensor; noise: Tensor };
  dispose(): void;
}

function setup(backend: Backend): Setup {
  const unet = new UNet2DConditionModel({ ...TINY_UNET_CONFIG, sample_size: 8 }, new RandomWeights({ seed: 3 }), backend);
  const module = new ControlNeXtLightModule(new RandomWeights({ seed: 4 }), backend, {
    timeProjDim: 16, timeEmbedDim: 32, stemChannels: [8, 8, 16], stemPadding: 1, inChannels: [16, 16], outChannels: [16, 32],
    groups: [4, 8], midChannels: 32, finalChannels: TINY_UNET_CONFIG.block_out_channels[0]!, scale: 1,
  });
  const cnx = new ControlNeXt('sd15_training', module, backend);
  // SD1.5-Training trains the control module and every UNet attention to_out (weight and bias).
  const trained = [...module.namedParameters().map(([, p]) => p), ...unet.namedParameters().filter(([k]) => k.includes('.to_out.')).map(([, p]) => p)];
  for (const p of trained) p.requiresGrad = true;
  const B = 2;
  const data = (shape: number[], seed: number, scale = 1) => backend.fromRaw(randomArray(shape.reduce((a, b) => a * b, 1), seed, scale), shape);
  const batch = {
    noisy: data([B, 4, 8, 8], 5), t: backend.fromRaw(Float32Array.from([17, 503]), [B]), ehs: data([B, 7, 32], 6),
    image: data([B, 3, 32, 32], 7, 0.5), noise: data([B, 4, 8, 8], 8),
  };
  return {
    unet, module, cnx, trained, batch,
    dispose() {
      zeroGrad(trained);
      unet.dispose();
      module.dispose();
      Object.values(batch).forEach((t) => t.dispose());
    },
  };
}

/** One forward (loss) with the control module and the UNet; the tape records it. */
function lossOf(s: Setup): Tensor {
  return scope(() => {
    const { noisy, t, ehs, image, noise } = s.batch;
    const ctrl = s.cnx.control(image, t);
    const hooks = s.cnx.hooks(ctrl, noisy.shape[0]!);
    const pred = s.unet.forward(noisy, t, ehs, { hooks: hooks.hooks });
    hooks.dispose();
    return ops.mseLoss(pred, noise);
  });
}

/** Forward + backward; returns the loss, the gradients and the bytes the tape held between them. */
async function step(s: Setup, backend: Backend): Promise<{ loss: number; grads: Float32Array[]; held: number }> {
  zeroGrad(s.trained);
  const before = backend.memory().liveBytes;
  const loss = lossOf(s);
  const held = backend.memory().liveBytes - before;
  backward(loss);
  const value = (await loss.data())[0]!;
  loss.dispose();
  const grads = await Promise.all(s.trained.map((p) => p.grad!.data()));
  const gradBytes = s.trained.reduce((n, p) => n + p.grad!.storage.byteLength, 0); // (WebGPU: size-class buffers)
  expect(backend.memory().liveBytes - before, 'after backward only the gradients stay').toBe(gradBytes);
  return { loss: value, grads, held };
}

describe('ControlNeXt training step with gradient checkpointing (CPU)', () => {
  it('same gradients as without checkpointing, less held, flat memory over steps', async () => {
    const cpu = new CpuBackend();
    const s = setup(cpu);
    const plain = await step(s, cpu);
    expect(Number.isFinite(plain.loss)).toBe(true);
    plain.grads.forEach((g) => expect(g.some((v) => v !== 0)).toBe(true));
    const undoUnet = enableGradientCheckpointing(s.unet);
    const undoModule = enableGradientCheckpointing(s.module);
    const ck = await step(s, cpu);
    expect(ck.loss).toBe(plain.loss);
    ck.grads.forEach((g, i) => expectAllClose(g, plain.grads[i]!, { atol: 1e-6, rtol: 1e-5 }, `grad ${i}`));
    expect(ck.held).toBeLessThan(plain.held / 2);
    console.log(`[training step] tape between forward and backward: ${plain.held} B plain, ${ck.held} B checkpointed`);
    const base = cpu.memory().liveBytes;
    for (let i = 0; i < 2; i++) {
      await step(s, cpu);
      expect(cpu.memory().liveBytes).toBe(base);
    }
    undoUnet();
    undoModule();
    s.dispose();
    expect(cpu.memory().liveBytes).toBe(0);
  }, 600_000);
});

describeEachBackend('ControlNeXt training step with gradient checkpointing vs the CPU', (test) => {
  test('gradients agree with the CPU; memory flat', async (backend) => {
    const cpu = new CpuBackend();
    const ref = setup(cpu);
    const want = await step(ref, cpu);
    ref.dispose();
    const s = setup(backend);
    const undo = [enableGradientCheckpointing(s.unet), enableGradientCheckpointing(s.module)];
    const got = await step(s, backend);
    const base = backend.memory().liveBytes;
    await step(s, backend);
    expect(backend.memory().liveBytes).toBe(base);
    expect(Math.abs(got.loss - want.loss)).toBeLessThan(1e-4 * Math.abs(want.loss));
    got.grads.forEach((g, i) => {
      const scale = want.grads[i]!.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      // f32 through a whole UNet forward and backward: 1e-3 of the gradient's scale
      expectAllClose(g, want.grads[i]!, { atol: 1e-3 * scale, rtol: 1e-3 }, `grad ${i}`);
    });
    undo.forEach((u) => u());
    s.dispose();
  }, 900_000);
}, ['webgpu']);
