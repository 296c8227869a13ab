// SVD's CLIP image preprocessing (clip_image_processor.ts) on hand-checkable inputs, and the vision
// tower's shapes, non-causal attention and config errors. The numerics against transformers / diffusers
// are the clip_vision golden case.
import { CpuBackend, RandomWeights } from '@cnx/tensor';
import { CLIPVisionModelWithProjection, clipImagePreprocess, gaussianKernel1d, parseClipVisionConfig, resizeWithAntialiasing } from '@cnx/unet';
import { describe, expect, it } from 'vitest';

describe('SVD CLIP preprocessing', () => {
  it('gaussian kernels are normalised and symmetric', () => {
    const k = gaussianKernel1d(7, 1.3);
    expect(k.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    for (let i = 0; i < 3; i++) expect(k[i]).toBeCloseTo(k[6 - i]!, 15);
  });

  it('keeps a constant image constant (blur, reflect padding and bicubic all preserve constants)', () => {
    const data = new Float32Array(2 * 3 * 17 * 29).fill(0.375);
    const r = resizeWithAntialiasing({ data, shape: [2, 3, 17, 29] }, [8, 8]);
    expect(r.shape).toEqual([2, 3, 8, 8]);
    for (const v of r.data) expect(v).toBeCloseTo(0.375, 6);
  });

  it('align_corners keeps the corner pixels of an identity-size resize of a ramp', () => {
    const W = 9, data = Float32Array.from({ length: W * W }, (_, i) => (i % W) / (W - 1));
    const r = resizeWithAntialiasing({ data, shape: [1, 1, W, W] }, [W, W]);
    // sigma 0.001: the blur is (numerically) the identity, and so is the bicubic at the same size.
    for (let i = 0; i < r.data.length; i++) expect(r.data[i]).toBeCloseTo(data[i]!, 5);
  });

  it('normalises with the CLIP mean and std per channel', () => {
    const data = new Float32Array(3 * 4 * 4).fill(0.5);
    const p = clipImagePreprocess({ data, shape: [1, 3, 4, 4] }, 4);
    expect(p.pixelValues.data[0]).toBeCloseTo((0.5 - 0.48145466) / 0.26862954, 5);
    expect(p.pixelValues.data[16]).toBeCloseTo((0.5 - 0.4578275) / 0.26130258, 5);
    expect(() => clipImagePreprocess({ data, shape: [1, 3, 4, 5] }, 4)).toThrow(/B\*C\*H\*W/);
  });
});

describe('CLIPVisionModelWithProjection', () => {
  const config = {
    hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 2, image_size: 8, patch_size: 4,
    projection_dim: 6, hidden_act: 'gelu', layer_norm_eps: 1e-5, num_channels: 3, model_type: 'clip_vision_model',
  };

  it('gives [B, projection_dim] embeddings and a non-causal class token', async () => {
    const backend = new CpuBackend();
    const m = new CLIPVisionModelWithProjection(config, new RandomWeights({ seed: 5 }), backend);
    const px = backend.fromRaw(Float32Array.from({ length: 2 * 3 * 64 }, (_, i) => Math.sin(i)), [2, 3, 8, 8]);
    const o = m.forward(px);
    expect(o.imageEmbeds.shape).toEqual([2, 6]);
    expect(o.lastHiddenState.shape).toEqual([2, 5, 16]);
    // Changing the LAST patch changes the class token's output (a causal mask would hide it).
    const d = await px.data();
    d[2 * 3 * 64 - 1] = 5;
    const o2 = m.forward(backend.fromRaw(d, [2, 3, 8, 8]));
    const a = await o.imageEmbeds.data(), b = await o2.imageEmbeds.data();
    expect(Math.abs(a[6]! - b[6]!)).toBeGreaterThan(1e-6);
    expect(a[0]).toBe(b[0]); // batch item 0 untouched
    m.dispose();
  });

  it('names bad config values', () => {
    expect(() => parseClipVisionConfig({ ...config, hidden_act: 'swish' })).toThrow(/hidden_act="swish"/);
    expect(() => parseClipVisionConfig({ ...config, image_size: 10 })).toThrow(/image_size=10 is not a multiple of patch_size=4/);
    expect(() => parseClipVisionConfig({ ...config, model_type: 'clip_text_model' })).toThrow(/clip_vision_model/);
  });
});
