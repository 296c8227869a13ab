// The synthetic shapes dataset (training/shapes.ts): deterministic per (seed, index) and independent of
// the order samples are asked in, the images agree with the mask and the documented rasterisation rules,
// shape areas match their formulas, prompts name colour and shape, and bad options are refused naming them.

import { describe, expect, it } from 'vitest';
import {
  SHAPE_COLOURS, SHAPE_COLOUR_NAMES, SHAPE_KINDS, STAR_INNER_RATIO, SeededRandom, imageToRgbBytes, insideShape, maskOutline,
  parseShapePrompt, rasteriseShape, rgbBytesToImage, shapeSample, shapeSamples, type ShapeKind,
} from '@cnx/controlnext';

const sum = (a: Uint8Array) => a.reduce((s, v) => s + v, 0);

describe('shapes dataset', () => {
  it('is deterministic per (seed, index) and independent of the order of requests', () => {
    const opts = { size: 32, seed: 7 };
    const all = [...shapeSamples(12, opts)];
    const again = shapeSample(9, opts);
    expect(again.prompt).toBe(all[9]!.prompt);
    expect(Buffer.from(again.target).equals(Buffer.from(all[9]!.target))).toBe(true);
    expect(Buffer.from(again.control).equals(Buffer.from(all[9]!.control))).toBe(true);
    const fromFive = [...shapeSamples(3, opts, 5)];
    expect(fromFive.map((s) => s.cx)).toEqual(all.slice(5, 8).map((s) => s.cx));
    // Different indices and seeds give different samples.
    const distinct = new Set(all.map((s) => `${s.prompt} ${s.cx.toFixed(3)} ${s.cy.toFixed(3)}`));
    expect(distinct.size).toBe(12);
    const other = shapeSample(9, { size: 32, seed: 8 });
    expect(other.cx === again.cx && other.cy === again.cy).toBe(false);
  });

  it('target, control and mask agree with each other and with the colours', () => {
    for (const control of ['outline', 'mask'] as const) {
      for (const s of shapeSamples(20, { size: 48, seed: 3, control })) {
        const n = s.size * s.size;
        expect(s.mask.length).toBe(n);
        expect(s.target.length).toBe(3 * n);
        expect(s.control.length).toBe(3 * n);
        expect(sum(s.mask)).toBeGreaterThan(0);
        expect(s.rgb).toEqual(SHAPE_COLOURS[s.colour]);
        // Expected images built from the mask, compared in one go (an expect per pixel is slow).
        const target = new Uint8Array(3 * n), ctl = new Uint8Array(3 * n);
        let outlineOffShape = 0;
        for (let i = 0; i < n; i++) {
          target.set(s.mask[i] ? s.rgb : s.backgroundRgb, 3 * i);
          const c = s.control[3 * i]!;
          ctl.fill(c === 255 || c === 0 ? c : 1, 3 * i, 3 * i + 3);
          if (control === 'mask') ctl.fill(s.mask[i] ? 255 : 0, 3 * i, 3 * i + 3);
          else if (c && !s.mask[i]) outlineOffShape++;
        }
        expect(Buffer.from(s.target).equals(Buffer.from(target))).toBe(true);
        expect(Buffer.from(s.control).equals(Buffer.from(ctl))).toBe(true); // grey-free, channels equal, = mask for 'mask'
        expect(outlineOffShape).toBe(0); // the outline lies on the shape
        // The 1-pixel border stays background.
        for (let k = 0; k < s.size; k++) {
          expect(s.mask[k]! + s.mask[(s.size - 1) * s.size + k]! + s.mask[k * s.size]! + s.mask[k * s.size + s.size - 1]!).toBe(0);
        }
      }
    }
  });

  it('the outline is the mask pixels next to the outside, thickness as asked', () => {
    const s = shapeSample(4, { size: 64, seed: 11, shapes: ['circle'] });
    const W = s.size;
    const outline = maskOutline(s.mask, W, W, 1);
    for (let y = 0; y < W; y++) {
      for (let x = 0; x < W; x++) {
        const i = y * W + x;
        const touchesOutside = !s.mask[i - W] || !s.mask[i + W] || (x > 0 && !s.mask[i - 1]) || (x < W - 1 && !s.mask[i + 1]);
        expect(outline[i]).toBe(s.mask[i] && touchesOutside ? 1 : 0);
        expect(s.control[3 * i]).toBe(outline[i] ? 255 : 0); // size 64: default thickness 1
      }
    }
    const thick = maskOutline(s.mask, W, W, 3);
    expect(sum(thick)).toBeGreaterThan(2 * sum(outline));
    for (let i = 0; i < thick.length; i++) if (outline[i]) expect(thick[i]).toBe(1);
    // The image edge counts as outside: a full mask's outline is its border ring.
    expect(sum(maskOutline(new Uint8Array(25).fill(1), 5, 5))).toBe(16);
  });

  it('rasterises by pixel centres with the documented rules (boundary included)', () => {
    // Centre on a pixel corner so that centres sit at half-integers offsets.
    expect(insideShape('square', 12.5, 10, 10, 10, 2.5)).toBe(true);
    expect(insideShape('square', 12.51, 10, 10, 10, 2.5)).toBe(false);
    expect(insideShape('circle', 13, 14, 10, 10, 5)).toBe(true); // 3-4-5: on the circle
    expect(insideShape('circle', 13.01, 14, 10, 10, 5)).toBe(false);
    expect(insideShape('diamond', 12, 13, 10, 10, 5)).toBe(true);
    expect(insideShape('diamond', 12.01, 13, 10, 10, 5)).toBe(false);
    expect(insideShape('triangle', 10, 5.01, 10, 10, 5)).toBe(true); // just under the apex
    expect(insideShape('triangle', 10, 4.99, 10, 10, 5)).toBe(false);
    expect(insideShape('triangle', 10, 12.6, 10, 10, 5)).toBe(false); // below the base (cy + r/2)
    expect(insideShape('star', 10, 5.1, 10, 10, 5)).toBe(true); // the top point
    expect(insideShape('star', 12, 6, 10, 10, 5)).toBe(false); // between two points
    // A 3x3 square at pixel centres 1.5..3.5: exactly pixels 1..3 of each axis.
    const m = rasteriseShape('square', 2.5, 2.5, 1, 6);
    for (let y = 0; y < 6; y++) for (let x = 0; x < 6; x++) expect(m[y * 6 + x]).toBe(x >= 1 && x <= 3 && y >= 1 && y <= 3 ? 1 : 0);
  });

  it('shape areas match their formulas', () => {
    const r = 40, size = 128, c = 64.3;
    const area: Record<ShapeKind, number> = {
      circle: Math.PI * r * r,
      square: 4 * r * r,
      diamond: 2 * r * r,
      triangle: ((3 * Math.sqrt(3)) / 4) * r * r,
      star: 5 * r * r * STAR_INNER_RATIO * Math.sin(Math.PI / 5),
    };
    for (const shape of SHAPE_KINDS) {
      const got = sum(rasteriseShape(shape, c, c - 0.2, r, size));
      expect(Math.abs(got - area[shape]) / area[shape], shape).toBeLessThan(0.03);
    }
  });

  it('draws every shape and colour, and prompts name them', () => {
    const seen = new Set<string>();
    for (const s of shapeSamples(300, { size: 16, seed: 1 })) {
      seen.add(s.shape); seen.add(s.colour);
      expect(s.prompt).toBe(`a ${s.colour} ${s.shape}`);
      expect(parseShapePrompt(s.prompt)).toEqual({ colour: s.colour, shape: s.shape });
      expect(sum(s.mask)).toBeGreaterThan(0);
      expect(sum(s.control)).toBeGreaterThan(0);
    }
    for (const k of [...SHAPE_KINDS, ...SHAPE_COLOUR_NAMES]) expect(seen.has(k), k).toBe(true);
    expect(parseShapePrompt('nothing here')).toEqual({});
  });

  it('palette backgrounds differ from the shape colour and are named in the prompt; restrictions apply', () => {
    for (const s of shapeSamples(40, { size: 16, seed: 2, background: 'palette', colours: ['red', 'blue', 'green'], shapes: ['star', 'square'] })) {
      expect(s.background).not.toBe(s.colour);
      expect(['red', 'blue', 'green']).toContain(s.background);
      expect(['star', 'square']).toContain(s.shape);
      expect(s.prompt).toBe(`a ${s.colour} ${s.shape} on a ${s.background} background`);
      expect(s.target.slice(0, 3)).toEqual(new Uint8Array(SHAPE_COLOURS[s.background as 'red']));
    }
    const g = shapeSample(0, { size: 16, seed: 2, background: 'grey', radiusRange: [0.3, 0.3] });
    expect(g.radius).toBeCloseTo(4.8, 10);
    expect([...g.target.slice(0, 3)]).toEqual([128, 128, 128]);
  });

  it('refuses bad options naming them', () => {
    expect(() => shapeSample(0, { size: 4, seed: 0 })).toThrow(/size must be an integer in \[8, 4096\], found 4/);
    expect(() => shapeSample(0, { size: 16, seed: -1 })).toThrow(/seed must be/);
    expect(() => shapeSample(-1, { size: 16, seed: 0 })).toThrow(/index must be/);
    expect(() => shapeSample(0, { size: 16, seed: 0, shapes: ['hexagon' as ShapeKind] })).toThrow(/unknown shape 'hexagon'/);
    expect(() => shapeSample(0, { size: 16, seed: 0, colours: ['mauve' as 'red'] })).toThrow(/unknown colour 'mauve'/);
    expect(() => shapeSample(0, { size: 16, seed: 0, control: 'edges' as 'mask' })).toThrow(/control must be 'outline' or 'mask', found 'edges'/);
    expect(() => shapeSample(0, { size: 16, seed: 0, radiusRange: [0.3, 0.6] })).toThrow(/radiusRange/);
    expect(() => shapeSample(0, { size: 16, seed: 0, background: 'palette', colours: ['red'] })).toThrow(/at least 2 colours/);
  });

  it('byte <-> float image conversions round-trip, and the seeded generator is reproducible', () => {
    const s = shapeSample(1, { size: 16, seed: 5 });
    const img = rgbBytesToImage(s.target, 16, 16);
    expect(img.shape).toEqual([16, 16, 3]);
    expect(Buffer.from(imageToRgbBytes(img)).equals(Buffer.from(s.target))).toBe(true);
    expect(() => rgbBytesToImage(s.target, 16, 15)).toThrow(/expected 16x15x3 = 720 bytes, found 768/);
    const a = new SeededRandom(42), b = new SeededRandom(42);
    const xs = Array.from({ length: 1000 }, () => a.next());
    expect(xs).toEqual(Array.from({ length: 1000 }, () => b.next()));
    const mean = xs.reduce((p, v) => p + v, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.05);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    expect(new SeededRandom(42).shuffle([1, 2, 3, 4, 5, 6]).sort()).toEqual([1, 2, 3, 4, 5, 6]);
  });
});
