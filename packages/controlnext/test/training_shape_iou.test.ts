// Control fidelity metric (training/shape_iou.ts): the exact target of a shapes sample scores IoU 1, noise
// that stays nearer the shape colour than the background keeps it, a shifted shape scores the IoU of the
// shifted mask, a shape in the wrong colour or a blank image scores 0, and mismatched inputs are refused.

import { describe, expect, it } from 'vitest';
import ndarray from 'ndarray';
import {
  SeededRandom, maskIoU, meanShapeIoU, rgbBytesToImage, segmentShape, shapeIoU, shapeSample, shapeSamples, SHAPE_COLOURS,
} from '@cnx/controlnext';

const opts = { size: 32, seed: 4 };

/** The sample's target with the shape moved by (dx, dy) pixels (background filled in), and the moved mask. */
function shifted(s: ReturnType<typeof shapeSample>, dx: number, dy: number) {
  const N = s.size, rgb = new Uint8Array(N * N * 3), mask = new Uint8Array(N * N);
  for (let y = 0; y < N; y++) {
    for (let x = 0; x < N; x++) {
      const sx = x - dx, sy = y - dy, i = y * N + x;
      const inside = sx >= 0 && sy >= 0 && sx < N && sy < N && s.mask[sy * N + sx] === 1;
      mask[i] = inside ? 1 : 0;
      rgb.set(inside ? s.rgb : s.backgroundRgb, 3 * i);
    }
  }
  return { rgb, mask };
}

describe('shape IoU', () => {
  it('scores the exact target 1, through bytes and through float images', () => {
    for (const s of shapeSamples(10, opts)) {
      expect(shapeIoU({ rgb: s.target, height: 32, width: 32 }, s).iou).toBe(1);
      const r = shapeIoU(rgbBytesToImage(s.target, 32, 32), s);
      expect(r.iou).toBe(1);
      expect(r.predictedPixels).toBe(r.targetPixels);
    }
  });

  it('keeps 1 under noise that stays nearer the shape colour, and drops when the noise crosses over', () => {
    const s = shapeSample(2, { ...opts, colours: ['red'] });
    const rng = new SeededRandom(9);
    const noisy = (amp: number) => s.target.map((v) => Math.min(255, Math.max(0, Math.round(v + rng.uniform(-amp, amp)))));
    // red (230, 25, 25) vs black: the decision boundary is ~118 away; |noise| <= 40*sqrt(3) = 69 never crosses it.
    expect(shapeIoU({ rgb: noisy(40), height: 32, width: 32 }, s).iou).toBe(1);
    const heavy = shapeIoU({ rgb: noisy(250), height: 32, width: 32 }, s).iou;
    expect(heavy).toBeLessThan(0.9);
    expect(heavy).toBeGreaterThan(0);
  });

  it('a shifted shape scores the IoU of the shifted mask', () => {
    for (const [dx, dy] of [[2, 0], [0, -3], [4, 4]] as const) {
      const s = shapeSample(5, opts);
      const m = shifted(s, dx, dy);
      const got = shapeIoU({ rgb: m.rgb, height: 32, width: 32 }, s).iou;
      expect(got).toBeCloseTo(maskIoU(m.mask, s.mask), 12);
      expect(got).toBeLessThan(1);
      expect(got).toBeGreaterThan(0.2);
    }
  });

  it('a wrong colour or a blank image scores 0; both-empty masks agree (1)', () => {
    const s = shapeSample(0, { ...opts, colours: ['red'] });
    const blue = s.target.slice();
    for (let i = 0; i < 32 * 32; i++) if (s.mask[i]) blue.set(SHAPE_COLOURS.blue, 3 * i);
    expect(shapeIoU({ rgb: blue, height: 32, width: 32 }, s).iou).toBe(0);
    expect(shapeIoU({ rgb: new Uint8Array(32 * 32 * 3), height: 32, width: 32 }, s).iou).toBe(0);
    // The 'background' rule (no colour) still finds the blue shape.
    expect(maskIoU(segmentShape({ rgb: blue, height: 32, width: 32 }, { background: s.backgroundRgb }), s.mask)).toBe(1);
    expect(maskIoU(new Uint8Array(9), new Uint8Array(9))).toBe(1);
    expect(maskIoU(new Uint8Array([1, 1, 0, 0]), new Uint8Array([0, 1, 1, 0]))).toBeCloseTo(1 / 3, 12);
  });

  it('maxDistance limits the shape pixels to near the named colour; NaN pixels are background', () => {
    const img = ndarray(new Float32Array([230 / 255, 25 / 255, 25 / 255, 0.5, 0.05, 0.05, NaN, NaN, NaN]), [1, 3, 3]);
    expect([...segmentShape(img, { background: [0, 0, 0], colour: 'red' })]).toEqual([1, 1, 0]);
    expect([...segmentShape(img, { background: [0, 0, 0], colour: 'red', maxDistance: 50 })]).toEqual([1, 0, 0]);
    expect([...segmentShape(img, { background: [0, 0, 0], rule: 'background', threshold: 200 })]).toEqual([1, 0, 0]);
  });

  it('averages over a set and refuses mismatched inputs', () => {
    const samples = [...shapeSamples(3, opts)];
    const images = samples.map((s, k) => ({ rgb: k === 1 ? new Uint8Array(32 * 32 * 3) : s.target, height: 32, width: 32 }));
    const m = meanShapeIoU(images, samples);
    expect(m.ious).toEqual([1, 0, 1]);
    expect(m.mean).toBeCloseTo(2 / 3, 12);
    expect([m.min, m.max]).toEqual([0, 1]);
    expect(() => shapeIoU({ rgb: new Uint8Array(16 * 16 * 3), height: 16, width: 16 }, samples[0]!)).toThrow(/image is 16x16 but the sample's control mask is 32x32/);
    expect(() => segmentShape({ rgb: new Uint8Array(10), height: 2, width: 2 }, { background: [0, 0, 0] })).toThrow(/expected 2x2x3 = 12 RGB bytes, found 10/);
    expect(() => segmentShape({ rgb: new Uint8Array(12), height: 2, width: 2 }, { background: [0, 0, 0], rule: 'nearest' })).toThrow(/needs the shape colour/);
    expect(() => maskIoU(new Uint8Array(3), new Uint8Array(4))).toThrow(/3 vs 4/);
    expect(() => meanShapeIoU(images.slice(1), samples)).toThrow(/2 images for 3 samples/);
  });
});
