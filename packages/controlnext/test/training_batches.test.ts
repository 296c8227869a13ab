// Training batches (training/training_batches.ts): the script's transforms (PIL bilinear resize of the
// shorter side, torchvision centre crop, [-1, 1] targets, [0, 1] controls), and the cache: encoders run
// once, batches are a pure function of (seed, step), every epoch is a permutation, the empty-prompt
// proportion holds, latents are the VAE posterior's mean or a draw from it times scaling_factor.

import { describe, expect, it } from 'vitest';
import ndarray from 'ndarray';
import { CpuBackend } from '@cnx/tensor';
import {
  ClipPromptEncoder, TrainingDataCache, arrayExampleSource, centerCrop, controlPixels, disposeTrainingBatch, imageToRgbBytes, pilResize,
  planarToImage, resizeAndCrop, rgbBytesToImage, shapesExampleSource, shorterSideSize, targetPixels, tinyModels,
} from '@cnx/controlnext';

const backend = new CpuBackend();

/** The 9x6 test pattern used for the Pillow reference below. */
function pattern(H: number, W: number) {
  const b = new Uint8Array(H * W * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < 3; c++) b[(y * W + x) * 3 + c] = (x * 37 + y * 91 + c * 53 + x * y * 7) % 256;
  return rgbBytesToImage(b, H, W);
}

// Produced by Pillow 12.3.0: Image.frombytes('RGB', (9, 6), pattern).resize((5, 4) | (3, 11), Image.BILINEAR).tobytes().
const PIL_5x4 = [57, 110, 156, 119, 142, 147, 119, 150, 165, 141, 114, 117, 84, 126, 131, 151, 143, 119, 123, 122, 124, 117, 135, 148, 142, 123, 127, 113, 141, 139, 98, 132, 134, 142, 147, 140, 157, 134, 127, 138, 135, 125, 146, 120, 112, 124, 171, 102, 122, 127, 112, 149, 117, 110, 139, 144, 137, 95, 141, 126];
const PIL_3x11 = [46, 99, 152, 148, 173, 169, 90, 79, 100, 78, 121, 153, 131, 147, 152, 103, 113, 124, 132, 158, 155, 103, 103, 124, 126, 171, 164, 148, 142, 131, 110, 118, 131, 123, 150, 152, 150, 110, 99, 128, 152, 149, 111, 103, 122, 120, 125, 130, 147, 143, 139, 132, 121, 110, 93, 143, 161, 163, 131, 127, 152, 141, 101, 130, 145, 128, 150, 135, 131, 140, 129, 124, 149, 147, 104, 141, 134, 130, 128, 126, 138, 116, 149, 106, 144, 121, 117, 116, 149, 126, 97, 150, 107, 146, 113, 109, 109, 162, 119];

describe('transforms', () => {
  it('pilResize reproduces Pillow\'s BILINEAR resize exactly (shrinking and enlarging)', () => {
    expect([...imageToRgbBytes(pilResize(pattern(6, 9), 4, 5))]).toEqual(PIL_5x4);
    expect([...imageToRgbBytes(pilResize(pattern(6, 9), 11, 3))]).toEqual(PIL_3x11);
    // Same size: unchanged; a constant image stays constant at any size.
    expect([...imageToRgbBytes(pilResize(pattern(6, 9), 6, 9))]).toEqual([...imageToRgbBytes(pattern(6, 9))]);
    const flat = rgbBytesToImage(new Uint8Array(20 * 30 * 3).fill(77), 20, 30);
    expect(new Set(imageToRgbBytes(pilResize(flat, 7, 13)))).toEqual(new Set([77]));
  });

  it('shrinks with antialiasing: a 1-pixel line survives an 8x reduction, dimmed', () => {
    const b = new Uint8Array(64 * 64 * 3);
    for (let y = 0; y < 64; y++) b.fill(255, (y * 64 + 21) * 3, (y * 64 + 22) * 3);
    const small = imageToRgbBytes(pilResize(rgbBytesToImage(b, 64, 64), 8, 8));
    const row = Array.from({ length: 8 }, (_, x) => small[x * 3]!);
    const peak = Math.max(...row);
    expect(peak).toBeGreaterThan(10);
    expect(peak).toBeLessThan(80); // spread over the ~8-pixel-wide filter, not sampled or missed
    expect(row.reduce((s, v) => s + v, 0)).toBeGreaterThan(255 / 8 - 3); // the line's energy is kept (~1/8 of 255)
  });

  it('resizes the shorter side and centre-crops with torchvision\'s rounding', () => {
    expect(shorterSideSize(512, 768, 256)).toEqual([256, 384]);
    expect(shorterSideSize(100, 61, 32)).toEqual([52, 32]); // int(32 * 100 / 61) = 52
    expect(shorterSideSize(5, 5, 3)).toEqual([3, 3]);
    const tall = (H: number) => ndarray(Float32Array.from({ length: H * 8 * 3 }, (_, i) => Math.floor(i / 24)), [H, 8, 3]);
    // (35 - 8) / 2 = 13.5 -> 14 (round half to even); (33 - 8) / 2 = 12.5 -> 12.
    expect(centerCrop(tall(35), 8).get(0, 0, 0)).toBe(14);
    expect(centerCrop(tall(33), 8).get(0, 0, 0)).toBe(12);
    expect(centerCrop(tall(34), 8).get(7, 3, 2)).toBe(13 + 7);
    expect(() => centerCrop(tall(5), 8)).toThrow(/the image is 8x5, smaller than the 8x8 crop/);
    const r = resizeAndCrop(pattern(40, 70), 16);
    expect(r.shape).toEqual([16, 16, 3]);
  });

  it('targets are normalised to [-1, 1], controls stay in [0, 1]', () => {
    const img = pattern(20, 24);
    const t = targetPixels(img, 16), c = controlPixels(img, 16);
    expect(t.length).toBe(3 * 16 * 16);
    for (let i = 0; i < t.length; i++) expect(t[i]).toBeCloseTo(2 * c[i]! - 1, 6);
    expect(Math.min(...c)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...c)).toBeLessThanOrEqual(1);
    // Planar [3, H, W] layout: channel 1 of pixel (2, 5) is at (1 * 16 + 2) * 16 + 5.
    const crop = resizeAndCrop(img, 16);
    expect(c[(1 * 16 + 2) * 16 + 5]).toBeCloseTo(crop.get(2, 5, 1), 6);
    expect(planarToImage(t, 16, 16, true).get(2, 5, 1)).toBeCloseTo(crop.get(2, 5, 1), 6);
  });
});

describe('training data cache', () => {
  const models = tinyModels(backend, { seed: 1, control: false });
  const textEncoder = new ClipPromptEncoder(models.tokenizer, models.textModel);
  const shapeOpts = { size: 24, seed: 5 };
  const source = shapesExampleSource(10, shapeOpts);
  const base = { backend, vae: models.vae, textEncoder, resolution: 16, batchSize: 4, seed: 7 };

  it('encodes once, covers every example once per epoch, and is a pure function of (seed, step)', async () => {
    let encodes = 0;
    const countingVae = { scalingFactor: models.vae.scalingFactor, encode: (x: Parameters<typeof models.vae.encode>[0]) => { encodes += x.shape[0]!; return models.vae.encode(x); } };
    const progress: number[] = [];
    const cache = await TrainingDataCache.build(source, { ...base, vae: countingVae, onProgress: (d) => progress.push(d) });
    expect(encodes).toBe(10);
    expect(progress).toEqual([4, 8, 10]);
    expect(cache.latentShape).toEqual([4, 2, 2]);
    expect(cache.promptShape).toEqual([77, 32]);
    expect(cache.batchesPerEpoch).toBe(3);
    const orders: number[][] = [];
    for (let e = 0; e < 3; e++) {
      const seen: number[] = [];
      for (let k = 0; k < 3; k++) {
        const b = cache.batch(3 * e + k);
        expect(b.epoch).toBe(e);
        expect(b.latents.shape).toEqual([k === 2 ? 2 : 4, 4, 2, 2]);
        expect(b.encoderHiddenStates.shape).toEqual([k === 2 ? 2 : 4, 77, 32]);
        expect(b.controlImage.shape).toEqual([k === 2 ? 2 : 4, 3, 16, 16]);
        seen.push(...b.indices);
        disposeTrainingBatch(b);
      }
      expect([...seen].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      orders.push(seen);
    }
    expect(orders[0]).not.toEqual(orders[1]);
    // Random access (resume): step 4 after step 8 equals step 4 fetched first, values included.
    const a = cache.batch(4);
    cache.batch(8);
    const b = cache.batch(4);
    expect(b.indices).toEqual(a.indices);
    expect(await b.latents.data()).toEqual(await a.latents.data());
    // Another step draws other latent noise for the same example.
    const ia = a.indices[0]!;
    const c = [15, 16, 17].map((s) => cache.batch(s)).find((x) => x.indices.includes(ia))!; // epoch 5 holds it once
    const ic = c.indices.indexOf(ia);
    expect((await c.latents.data()).slice(ic * 16, ic * 16 + 16)).not.toEqual((await a.latents.data()).slice(0, 16));
    [a, b, c].forEach(disposeTrainingBatch);
    const gen = [...cache.batches(2, 2)].map((x) => x.step);
    expect(gen).toEqual([2, 3]);
    const dl = await TrainingDataCache.build(source, { ...base, dropLast: true });
    expect(dl.batchesPerEpoch).toBe(2);
    expect(dl.batch(2).epoch).toBe(1);
  });

  it('latents are the posterior mean (or a draw around it) times scaling_factor; prompts and controls are the encoders\' and transforms\'', async () => {
    const cache = await TrainingDataCache.build(source, { ...base, latents: 'mean' });
    const sampled = await TrainingDataCache.build(source, base);
    const batch = cache.batch(0), sb = sampled.batch(0);
    expect(sb.indices).toEqual(batch.indices);
    const lat = await batch.latents.data(), slat = await sb.latents.data();
    const hs = await batch.encoderHiddenStates.data(), ctl = await batch.controlImage.data();
    for (const [b, ix] of batch.indices.entries()) {
      const ex = await source.get(ix);
      const x = backend.fromRaw(targetPixels(ex.target, 16), [1, 3, 16, 16]);
      const post = models.vae.encode(x);
      const mean = await post.mean.data(), std = await post.std.data();
      for (let i = 0; i < 16; i++) {
        expect(lat[b * 16 + i]).toBeCloseTo(mean[i]! * 0.18215, 5);
        // The draw stays within a few standard deviations of the mean.
        const z = (slat[b * 16 + i]! / 0.18215 - mean[i]!) / std[i]!;
        expect(Math.abs(z)).toBeLessThan(6);
      }
      expect(slat.slice(b * 16, b * 16 + 16)).not.toEqual(lat.slice(b * 16, b * 16 + 16));
      [x, post.mean, post.std, post.logvar].forEach((t) => t.dispose());
      const direct = textEncoder.encode([ex.prompt]);
      const d = await direct.data();
      direct.dispose();
      expect(batch.prompts[b]).toBe(ex.prompt);
      expect(Array.from(hs.slice(b * 77 * 32, (b + 1) * 77 * 32))).toEqual(Array.from(d));
      expect(Array.from(ctl.slice(b * 768, (b + 1) * 768))).toEqual(Array.from(controlPixels(ex.control, 16)));
    }
    disposeTrainingBatch(batch); disposeTrainingBatch(sb);
  });

  it('replaces prompts by the empty-prompt text with the given proportion', async () => {
    const half = await TrainingDataCache.build(source, { ...base, proportionEmptyPrompts: 0.5 });
    let empty = 0, total = 0;
    const pbh = textEncoder.encode(['PBH']);
    const pbhData = await pbh.data();
    pbh.dispose();
    for (let s = 0; s < 60; s++) {
      const b = half.batch(s);
      const hs = await b.encoderHiddenStates.data();
      b.prompts.forEach((p, k) => {
        total++;
        if (p === 'PBH') {
          empty++;
          if (empty === 1) expect(Array.from(hs.slice(k * 77 * 32, (k + 1) * 77 * 32))).toEqual(Array.from(pbhData));
        }
      });
      disposeTrainingBatch(b);
    }
    expect(total).toBe(200);
    expect(empty / total).toBeGreaterThan(0.38);
    expect(empty / total).toBeLessThan(0.62);
    const all = await TrainingDataCache.build(arrayExampleSource([await source.get(0), await source.get(1)]), { ...base, batchSize: 2, proportionEmptyPrompts: 1, emptyPromptText: '' });
    expect(all.batch(0).prompts).toEqual(['', '']);
    const none = await TrainingDataCache.build(source, base);
    for (let s = 0; s < 10; s++) {
      const b = none.batch(s);
      expect(b.prompts.includes('PBH')).toBe(false);
      disposeTrainingBatch(b);
    }
    expect(none.promptState('PBH')).toBeUndefined();
  });

  it('refuses bad options naming them', async () => {
    await expect(TrainingDataCache.build(source, { ...base, resolution: 12 })).rejects.toThrow(/resolution must be a positive multiple of 8 \(the script's check\), found 12/);
    await expect(TrainingDataCache.build(source, { ...base, proportionEmptyPrompts: 1.5 })).rejects.toThrow(/proportionEmptyPrompts must be in \[0, 1\], found 1.5/);
    await expect(TrainingDataCache.build(source, { ...base, batchSize: 0 })).rejects.toThrow(/batchSize must be an integer >= 1, found 0/);
    await expect(TrainingDataCache.build(source, { ...base, maxCacheBytes: 1000 })).rejects.toThrow(/needs about .* GiB of host memory, over the .* limit \(maxCacheBytes\)/);
    await expect(TrainingDataCache.build(shapesExampleSource(3, shapeOpts), { ...base, dropLast: true })).rejects.toThrow(/dropLast with 3 examples and batch size 4 leaves no batch/);
    expect(() => shapesExampleSource(2, shapeOpts).get(2)).toThrow(/index 2 out of range \[0, 2\)/);
  });
});
