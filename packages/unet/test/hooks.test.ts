// Forward hooks (hooks.ts) on a tiny random UNet: the sites see the hidden stream (mid_block:before is the
// input of the mid block), module-path hooks see a module's own output (also where the forward fuses an
// epilogue into it), replace it when they return a new tensor, are removed after the call, and bad keys
// fail naming the path and the model's sites. Also: config.sample_size is kept, block types come from
// the table.
import { ops, RandomWeights, type Backend, type Tensor } from '@cnx/tensor';
import { downBlockTypes, parseUNetConfig, UNet2DConditionModel } from '@cnx/unet';
import { expect } from 'vitest';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';

const TINY = {
  sample_size: 6, in_channels: 4, out_channels: 4,
  down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'],
  block_out_channels: [8, 16], layers_per_block: 1, cross_attention_dim: 8, attention_head_dim: 2, norm_num_groups: 4,
};

function setup(backend: Backend) {
  const unet = new UNet2DConditionModel(TINY, new RandomWeights({ seed: 3 }), backend);
  const sample = backend.fromRaw(randomArray(2 * 4 * 6 * 6, 1), [2, 4, 6, 6]);
  const ctx = backend.fromRaw(randomArray(2 * 3 * 8, 2), [2, 3, 8]);
  const t = backend.fromRaw(Float32Array.of(321), [1]);
  return { unet, sample, ctx, t, dispose: () => { [sample, ctx, t].forEach((x) => x.dispose()); unet.dispose(); } };
}

describeEachBackend('UNet hooks', (test) => {
  test('sites: forward order, mid_block:before is the mid block input, replacing values changes the output', async (backend) => {
    const { unet, sample, ctx, t, dispose } = setup(backend);
    expect(unet.sites).toEqual(['conv_in', 'down_blocks.0', 'down_blocks.1', 'mid_block:before', 'mid_block', 'up_blocks.0', 'up_blocks.1']);
    const before = backend.memory().liveBytes;
    const base = unet.forward(sample, t, ctx);
    const seen: Record<string, readonly number[]> = {};
    const observed = unet.forward(sample, t, ctx, { hooks: Object.fromEntries(unet.sites.map((s) => [s, (x: Tensor) => { seen[s] = x.shape; return x; }])) });
    expect(Object.keys(seen)).toEqual(unet.sites);
    expect(seen['mid_block:before']).toEqual([2, 16, 3, 3]);
    expectAllClose(await observed.data(), await base.data(), { atol: 0, rtol: 0 }, 'observing hooks');
    // The same shift applied after the last down block or before the mid block is the same change.
    const shift = (x: Tensor) => ops.affine(x, 1, 0.25);
    const a = unet.forward(sample, t, ctx, { hooks: { 'down_blocks.1': shift } });
    const b = unet.forward(sample, t, ctx, { hooks: { 'mid_block:before': shift } });
    expectAllClose(await a.data(), await b.data(), { atol: 0, rtol: 0 }, 'down_blocks.1 == mid_block:before');
    const d = await a.data(), e = await base.data();
    expect(d.some((v, i) => Math.abs(v - e[i]!) > 1e-4)).toBe(true);
    // conv_in: the stream changes, the first skip keeps the raw conv_in output (so this is not a conv_in module hook).
    const c1 = unet.forward(sample, t, ctx, { hooks: { conv_in: shift } });
    expect((await c1.data()).some((v, i) => Math.abs(v - e[i]!) > 1e-4)).toBe(true);
    [base, observed, a, b, c1].forEach((x) => x.dispose());
    expect(backend.memory().liveBytes).toBe(before);
    dispose();
  });

  test('module paths: a hook sees the module output (fused epilogues split off), is removed afterwards, errors name the path', async (backend) => {
    const { unet, sample, ctx, t, dispose } = setup(backend);
    const traced = new Map<string, Float32Array>();
    // hook path -> its trace name (Transformer2DModel reports its python output tuple's element '0').
    const traceName: Record<string, string> = { 'down_blocks.0.resnets.0': 'down_blocks.0.resnets.0', conv_norm_out: 'conv_norm_out', 'down_blocks.0.attentions.0': 'down_blocks.0.attentions.0.0' };
    const wanted = new Set(Object.values(traceName));
    const reads: Promise<void>[] = [];
    const base = unet.forward(sample, t, ctx, { trace: (p, v) => { if (wanted.has(p)) { const c = v.contiguous(); reads.push(c.data().then((d) => { traced.set(p, d); c.dispose(); })); } } });
    await Promise.all(reads);
    const before = backend.memory().liveBytes;
    const got = new Map<string, Float32Array>();
    const pending: Promise<void>[] = [];
    const observe = (p: string) => (x: Tensor) => { const c = x.contiguous(); pending.push(c.data().then((d) => { got.set(p, d); c.dispose(); })); return x; };
    // The same (unused) trace as the reference run: a trace makes norm + SiLU run unfused to report the norm.
    const y = unet.forward(sample, t, ctx, { trace: () => {}, hooks: Object.fromEntries(Object.keys(traceName).map((p) => [p, observe(p)])) });
    await Promise.all(pending);
    for (const [p, n] of Object.entries(traceName)) expectAllClose(got.get(p)!, traced.get(n)!, { atol: 0, rtol: 0 }, `hook value at ${p} == trace`);
    // conv_norm_out runs fused with SiLU without hooks; with an identity hook it runs unfused: same result to rounding.
    expectAllClose(await y.data(), await base.data(), tolFor('f32', 64, 8), 'identity module hooks');
    expect(Object.hasOwn(unet.conv_norm_out, 'forward')).toBe(false);
    expect(Object.hasOwn(unet.down_blocks[0]!.resnets[0]!, 'forward')).toBe(false);
    // A replacing hook on a conv with a fused residual (resnet conv2: skip + conv2(h)) and a pre-hook.
    const zero = unet.forward(sample, t, ctx, { hooks: { 'up_blocks.1.resnets.0.conv2': (x) => ops.scale(x, 0), 'up_blocks.0:before': (x) => ops.affine(x, 1, 0) } });
    const baseData = await base.data();
    expect((await zero.data()).some((v, i) => Math.abs(v - baseData[i]!) > 1e-5)).toBe(true);
    [y, zero].forEach((x) => x.dispose());
    expect(backend.memory().liveBytes).toBe(before);
    expect(() => unet.forward(sample, t, ctx, { hooks: { 'down_blocks.0.resnetz.0': (x) => x } }))
      .toThrow(/hook 'down_blocks.0.resnetz.0': no module at 'down_blocks.0.resnetz'.*children of 'down_blocks.0': attentions, resnets, downsamplers.*own sites are conv_in/);
    expect(() => unet.forward(sample, t, ctx, { hooks: { 'down_blocks.0.resnets': (x) => x } })).toThrow(/no module at 'down_blocks.0.resnets'/);
    expect(Object.hasOwn(unet.down_blocks[0]!, 'forward')).toBe(false);
    base.dispose();
    dispose();
  });

  test('config: sample_size is kept; block classes come from the type table', async (backend) => {
    expect(parseUNetConfig(TINY).sample_size).toBe(6);
    expect(parseUNetConfig({ ...TINY, sample_size: [4, 6] }).sample_size).toEqual([4, 6]);
    const { sample_size: _omitted, ...noSize } = TINY;
    expect(parseUNetConfig(noSize).sample_size).toBe(null);
    expect(() => parseUNetConfig({ ...TINY, sample_size: 0 })).toThrow(/sample_size=0/);
    expect(Object.keys(downBlockTypes)).toEqual(['DownBlock2D', 'CrossAttnDownBlock2D']);
    expect(() => parseUNetConfig({ ...TINY, down_block_types: ['AttnDownBlock2D', 'DownBlock2D'] }))
      .toThrow(/down_block_types=\["AttnDownBlock2D","DownBlock2D"\]: expected block types among DownBlock2D, CrossAttnDownBlock2D \('AttnDownBlock2D' is not supported\)/);
    const { unet, dispose } = setup(backend);
    expect(unet.defaultSampleSize).toEqual([6, 6]);
    expect(unet.down_blocks.map((b) => b.constructor.name)).toEqual(['CrossAttnDownBlock2D', 'DownBlock2D']);
    dispose();
  });
});
