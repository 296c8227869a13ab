// The real SD1.5 UNet configuration with random weights runs one denoising step at 64x64 pixels
// (an 8x8 latent) on the CPU backend: every layer of the 859,520,964-parameter network executes.
import { CpuBackend, RandomWeights, fillNormal } from '@cnx/tensor';
import { UNet2DConditionModel, sd15UNetConfig } from '@cnx/unet';
import { describe, expect, it } from 'vitest';

describe('SD1.5 UNet, random weights, CPU', () => {
  it('runs one step at 64x64 pixels', async () => {
    const backend = new CpuBackend();
    const t0 = performance.now();
    const unet = new UNet2DConditionModel(sd15UNetConfig(), new RandomWeights({ seed: 7 }), backend);
    const tBuild = performance.now();
    expect(unet.numParameters()).toBe(859_520_964);
    const randn = (shape: number[], seed: number) => {
      const d = new Float32Array(shape.reduce((a, b) => a * b, 1));
      fillNormal(d, 1, seed);
      return backend.fromRaw(d, shape);
    };
    const sample = randn([1, 4, 8, 8], 1);
    const ctx = randn([1, 77, 768], 2);
    const t = backend.fromRaw(Float32Array.of(999), [1]);
    const shapes = new Map<string, readonly number[]>();
    const out = unet.forward(sample, t, ctx, { trace: (p, v) => { shapes.set(p, v.shape); } });
    const tStep = performance.now();
    expect(out.shape).toEqual([1, 4, 8, 8]);
    // The skip/upsample bookkeeping at the real depth: 12 skips, 8x8 -> 1x1 at the bottom, back to 8x8.
    expect(shapes.get('down_blocks.2.1.2')).toEqual([1, 1280, 1, 1]);
    expect(shapes.get('mid_block')).toEqual([1, 1280, 1, 1]);
    expect(shapes.get('up_blocks.0')).toEqual([1, 1280, 2, 2]);
    expect(shapes.get('up_blocks.3')).toEqual([1, 320, 8, 8]);
    const v = await out.data();
    const finite = v.every(Number.isFinite);
    const rms = Math.sqrt(v.reduce((a, x) => a + x * x, 0) / v.length);
    expect(finite).toBe(true);
    expect(rms).toBeGreaterThan(1e-3); // a live signal went through every block
    console.log(`SD1.5 UNet (CPU): build ${((tBuild - t0) / 1000).toFixed(1)} s, one step at 8x8 latent ${((tStep - tBuild) / 1000).toFixed(1)} s, output rms ${rms.toFixed(3)}`);
    [out, sample, ctx, t].forEach((x) => x.dispose());
    unet.dispose();
    expect(backend.memory().liveBytes).toBe(0); // every intermediate and parameter was freed
    backend.destroy();
  }, 600_000);
});
