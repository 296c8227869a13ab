// UNet2DConditionModel forward options on the golden tiny SD1.5 UNet: identity hooks and zero ControlNet
// residuals leave the output unchanged, hooks are called at their points in order, and the forward
// frees every intermediate it creates.
import { join } from 'node:path';
import { fillNormal, ops, type Backend, type Tensor } from '@cnx/tensor';
import { UNet2DConditionModel } from '@cnx/unet';
import { expect } from 'vitest';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';

const golden = GOLDEN_ROOT;

function randn(backend: Backend, shape: number[], seed: number): Tensor {
  const d = new Float32Array(shape.reduce((a, b) => a * b, 1));
  fillNormal(d, 1, seed);
  return backend.fromRaw(d, shape);
}

async function maxAbsDiff(a: Tensor, b: Tensor): Promise<number> {
  const [x, y] = [await a.data(), await b.data()];
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

describeEachBackend('UNet2DConditionModel forward options', (test) => {
  test('identity hooks and zero residuals change nothing; intermediates are freed', async (backend) => {
    const unet = UNet2DConditionModel.fromFolder(join(golden, 'sd15_unet', 'unet'), backend);
    const sample = randn(backend, [1, 4, 8, 8], 1);
    const ctx = randn(backend, [1, 5, unet.config.cross_attention_dim as number], 2);
    const t = backend.fromRaw(Float32Array.of(500), [1]);
    const before = backend.memory().liveBytes;
    const base = unet.forward(sample, t, ctx);
    // One residual per skip: conv_in's output, then each down block's resnets and downsampler.
    const nSkips = unet.numSkips;
    const shapes: Record<string, readonly number[]> = {};
    const probe = unet.forward(sample, t, ctx, { trace: (p, v) => { shapes[p] = v.shape; } });
    probe.dispose();
    const zeros: Tensor[] = [backend.zeros(shapes.conv_in!)];
    unet.down_blocks.forEach((b, i) => {
      for (let j = 0; j < b.resnets.length + (b.downsamplers ? 1 : 0); j++) zeros.push(backend.zeros(shapes[`down_blocks.${i}.1.${j}`]!));
    });
    expect(zeros.length).toBe(nSkips);
    expect(nSkips).toBe(4); // conv_in + (resnet, downsampler) + resnet for the golden 2-block, 1-layer config
    const midZero = backend.zeros(shapes.mid_block!);
    const calls: string[] = [];
    const id = (name: string) => (x: Tensor) => { calls.push(name); return ops.affine(x, 1, 0); };
    const hooked = unet.forward(sample, t, ctx, {
      downBlockAdditionalResiduals: zeros,
      midBlockAdditionalResidual: midZero,
      hooks: Object.fromEntries(unet.sites.map((site) => [site, id(site)])),
    });
    expect(calls).toEqual(['conv_in', ...unet.down_blocks.map((_, i) => `down_blocks.${i}`), 'mid_block:before', 'mid_block', ...unet.up_blocks.map((_, i) => `up_blocks.${i}`)]);
    expect(calls).toEqual(unet.sites);
    expect(await maxAbsDiff(hooked, base)).toBe(0);
    // A hook that changes the features changes the output.
    const shifted = unet.forward(sample, t, ctx, { hooks: { mid_block: (x) => ops.affine(x, 1, 0.5) } });
    expect(await maxAbsDiff(shifted, base)).toBeGreaterThan(1e-3);
    expect(() => unet.forward(sample, t, ctx, { downBlockAdditionalResiduals: zeros.slice(1) }))
      .toThrow(new RegExp(`expected ${nSkips} down block residuals, found ${nSkips - 1}`));
    [base, hooked, shifted, midZero, ...zeros].forEach((x) => x.dispose());
    expect(backend.memory().liveBytes).toBe(before);
    [sample, ctx, t].forEach((x) => x.dispose());
    unet.dispose();
  }, 600_000);
});
