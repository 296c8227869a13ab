// UNetSpatioTemporalConditionModel: the hook sites (names, order, shapes, replacement), input errors and
// memory (a forward frees everything it allocates). Numerics against diffusers: the svd_unet golden case.
import { CpuBackend, RandomWeights, type Tensor, type WeightSource } from '@cnx/tensor';
import { UNetSpatioTemporalConditionModel } from '@cnx/unet';
import { describe, expect, it } from 'vitest';

const config = {
  in_channels: 8, out_channels: 4,
  down_block_types: ['CrossAttnDownBlockSpatioTemporal', 'DownBlockSpatioTemporal'],
  up_block_types: ['UpBlockSpatioTemporal', 'CrossAttnUpBlockSpatioTemporal'],
  block_out_channels: [32, 64], addition_time_embed_dim: 4, projection_class_embeddings_input_dim: 12,
  layers_per_block: 1, cross_attention_dim: 16, num_attention_heads: [2, 4], num_frames: 3,
};

describe('UNetSpatioTemporalConditionModel', () => {
  const backend = new CpuBackend();
  const unet = new UNetSpatioTemporalConditionModel(config, new RandomWeights({ seed: 1 }), backend);
  const inputs = () => ({
    sample: backend.fromRaw(Float32Array.from({ length: 2 * 3 * 8 * 4 * 6 }, (_, i) => Math.sin(i * 0.7)), [2, 3, 8, 4, 6]),
    t: backend.fromRaw(Float32Array.of(0.4), [1]),
    ctx: backend.fromRaw(Float32Array.from({ length: 2 * 16 }, (_, i) => Math.cos(i)), [2, 1, 16]),
    ids: backend.fromRaw(Float32Array.of(6, 127, 0.02), [1, 3]),
  });

  it('offers the named sites in forward order, with their widths, and applies replacements', async () => {
    expect(unet.siteNames).toEqual(['conv_in', 'down_blocks.0', 'down_blocks.1', 'mid_block:before', 'mid_block', 'up_blocks.0', 'up_blocks.1']);
    const seen: [string, number[]][] = [];
    const hooks = Object.fromEntries(unet.siteNames.map((s) => [s, (x: Tensor) => { seen.push([s, [...x.shape]]); return x; }]));
    const { sample, t, ctx, ids } = inputs();
    const plain = await unet.forward(sample, t, ctx, ids).data();
    const hooked = await unet.forward(sample, t, ctx, ids, { hooks }).data();
    expect(hooked).toEqual(plain);
    expect(seen).toEqual([
      ['conv_in', [6, 32, 4, 6]], ['down_blocks.0', [6, 32, 2, 3]], ['down_blocks.1', [6, 64, 2, 3]],
      ['mid_block:before', [6, 64, 2, 3]], ['mid_block', [6, 64, 2, 3]], ['up_blocks.0', [6, 64, 4, 6]], ['up_blocks.1', [6, 32, 4, 6]],
    ]);
    for (const s of unet.siteNames) expect(unet.channelsAt(s)).toBe(seen.find(([n]) => n === s)![1][1]);
    // A replacing hook changes the output.
    const zeroed = await unet.forward(sample, t, ctx, ids, { hooks: { 'mid_block:before': (x) => backend.zeros(x.shape) } }).data();
    expect(zeroed).not.toEqual(plain);
  });

  it('frees every intermediate of a forward', () => {
    const { sample, t, ctx, ids } = inputs();
    const before = backend.memory().liveBytes;
    const out = unet.forward(sample, t, ctx, ids);
    out.dispose();
    expect(backend.memory().liveBytes).toBe(before);
  });

  it('names bad inputs', () => {
    const { sample, t, ctx, ids } = inputs();
    expect(() => unet.forward(sample, t, ctx, ids, { hooks: { 'mid_block:after': (x) => x } })).toThrow(/hook 'mid_block:after': no module at 'mid_block:after'/);
    const odd = backend.zeros([1, 2, 8, 3, 6]);
    expect(() => unet.forward(odd, t, backend.zeros([1, 1, 16]), ids)).toThrow(/multiple of 2/);
    expect(() => unet.forward(sample, t, ctx, backend.zeros([2, 2]))).toThrow(/added_time_ids \[2, 3\]/);
    expect(() => new UNetSpatioTemporalConditionModel({ ...config, projection_class_embeddings_input_dim: 10 }, new RandomWeights(), backend))
      .toThrow(/3 x addition_time_embed_dim = 12/);
  });
});

describe('16-bit weight storage', () => {
  it('stores matrices as f16 on an f16 backend and computes what f32 storage of the same rounded weights computes', async () => {
    const halfBackend = new CpuBackend({ weightDtype: 'f16' });
    const backend = new CpuBackend();
    const half = new UNetSpatioTemporalConditionModel(config, new RandomWeights({ seed: 7 }), halfBackend);
    // The f32 model gets exactly the half model's stored values, widened.
    const params = new Map(half.namedParameters());
    const fromHalf = (prefix = ''): WeightSource => ({
      get: (path, shape, b) => b.fromRaw(halfBackend.values(params.get(prefix + path)!), shape),
      has: (path) => params.has(prefix + path),
      sub: (q) => fromHalf(`${prefix}${q}.`),
    });
    const full = new UNetSpatioTemporalConditionModel(config, fromHalf(), backend);
    const bytes = (m: UNetSpatioTemporalConditionModel) => m.namedParameters().reduce((n, [, t]) => n + t.storage.byteLength, 0);
    expect(half.namedParameters().filter(([, t]) => t.rank >= 2).every(([, t]) => t.dtype === 'f16')).toBe(true);
    expect(bytes(half)).toBeLessThan(0.55 * bytes(full));
    const inputs = (b: CpuBackend) => [
      b.fromRaw(Float32Array.from({ length: 1 * 2 * 8 * 4 * 6 }, (_, i) => Math.cos(i)), [1, 2, 8, 4, 6]),
      b.fromRaw(Float32Array.of(-1.2), [1]),
      b.fromRaw(Float32Array.from({ length: 16 }, (_, i) => Math.sin(i)), [1, 1, 16]),
      b.fromRaw(Float32Array.of(6, 127, 0.02), [1, 3]),
    ] as const;
    const [hx, ht, hc, hi] = inputs(halfBackend), [fx, ft, fc, fi] = inputs(backend);
    const live = halfBackend.memory().liveBytes;
    const a = half.forward(hx, ht, hc, hi);
    const b = full.forward(fx, ft, fc, fi);
    expect(await a.data()).toEqual(await b.data());
    a.dispose();
    expect(halfBackend.memory().liveBytes).toBe(live); // nothing widened is kept
  });
});

describe('feed-forward chunking under a storage-binding limit', () => {
  it('runs rows in chunks that fit the binding and gives the unchunked result', async () => {
    const { FeedForward } = await import('@cnx/unet');
    const plain = new CpuBackend();
    const capped = Object.assign(new CpuBackend(), { limits: { maxStorageBufferBindingSize: 8 * 64 * 4 * 3 } }); // 3 rows of 2 x 32 x 4
    const data = Float32Array.from({ length: 2 * 13 * 8 }, (_, i) => Math.sin(i * 0.37));
    const run = async (b: CpuBackend) => {
      const ff = new FeedForward(new RandomWeights({ seed: 2 }), b, { dim: 8 });
      const y = ff.forward(b.fromRaw(data, [2, 13, 8]));
      expect(y.shape).toEqual([2, 13, 8]);
      return y.data();
    };
    expect(await run(capped)).toEqual(await run(plain));
  });
});

describe('module-path hooks on the spatio-temporal UNet (hooks.ts)', () => {
  it('reach a temporal ResNet inside a down block, and must fire', async () => {
    const backend = new CpuBackend();
    const unet = new UNetSpatioTemporalConditionModel(config, new RandomWeights({ seed: 1 }), backend);
    const sample = backend.fromRaw(Float32Array.from({ length: 2 * 3 * 8 * 4 * 6 }, (_, i) => Math.sin(i * 0.7)), [2, 3, 8, 4, 6]);
    const t = backend.fromRaw(Float32Array.of(0.4), [1]);
    const ctx = backend.fromRaw(Float32Array.from({ length: 2 * 16 }, (_, i) => Math.cos(i)), [2, 1, 16]);
    const ids = backend.fromRaw(Float32Array.of(6, 127, 0.02), [1, 3]);
    const seen: number[][] = [];
    const y = unet.forward(sample, t, ctx, ids, { hooks: { 'down_blocks.0.resnets.0.temporal_res_block': (x) => { seen.push([...x.shape]); return x; } } });
    expect(seen).toEqual([[2, 32, 3, 24]]); // [B, C, F, H*W]
    y.dispose();
  });
});
