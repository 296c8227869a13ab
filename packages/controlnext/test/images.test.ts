// Images: PNG round trips exactly at 8 bits, JPEG decodes close to its source, bad files fail naming
// the file, writes are atomic (a failed write leaves the old file and no temporary behind), and the
// tensor <-> ndarray conversions keep the layout.

import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import ndarray from 'ndarray';
import jpeg from 'jpeg-js';
import { CpuBackend } from '@cnx/tensor';
import { decodeImage, imageToTensor, readImage, resizeImage, tensorToImages, writePng } from '@cnx/controlnext';

const dir = mkdtempSync(join(tmpdir(), 'cnx-img-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function gradient(h: number, w: number) {
  const d = new Float32Array(h * w * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    d[(y * w + x) * 3] = x / (w - 1);
    d[(y * w + x) * 3 + 1] = y / (h - 1);
    d[(y * w + x) * 3 + 2] = ((x * 7 + y * 13) % 256) / 255;
  }
  return ndarray(d, [h, w, 3]);
}

describe('PNG', () => {
  it('round trips to within half an 8-bit step, shape [H, W, 3]', () => {
    const img = gradient(13, 17);
    const p = join(dir, 'g.png');
    writePng(p, img);
    const back = readImage(p);
    expect(back.shape).toEqual([13, 17, 3]);
    for (let i = 0; i < img.data.length; i++) expect(Math.abs(back.data[i]! - img.data[i]!)).toBeLessThanOrEqual(0.5 / 255 + 1e-7);
  });
  it('clamps out-of-range values and maps NaN to 0', () => {
    const p = join(dir, 'c.png');
    writePng(p, ndarray(Float32Array.of(-1, 2, NaN), [1, 1, 3]));
    expect([...readImage(p).data]).toEqual([0, 1, 0]);
  });
  it('writes atomically: a failed write keeps the old file and leaves no temporary file', () => {
    const sub = join(dir, 'atomic');
    mkdirSync(sub);
    const target = join(sub, 'out.png');
    writePng(target, gradient(4, 4));
    const old = readFileSync(target);
    // A folder where the file should go makes the rename fail after the temporary file was written.
    const blocked = join(sub, 'blocked.png');
    mkdirSync(blocked);
    writeFileSync(join(blocked, 'x'), 'keep the folder non-empty');
    expect(() => writePng(blocked, gradient(4, 4))).toThrow(/cannot write .*blocked\.png/);
    expect(readdirSync(sub).sort()).toEqual(['blocked.png', 'out.png']);
    expect(readFileSync(target)).toEqual(old);
    expect(() => writePng(join(dir, 'missing-folder', 'x.png'), gradient(2, 2))).toThrow(/cannot write .*missing-folder/);
  });
});

describe('JPEG and bad files', () => {
  it('decodes a JPEG close to its source', () => {
    const w = 16, h = 8;
    const rgba = new Uint8Array(w * h * 4);
    for (let i = 0; i < w * h; i++) { rgba[4 * i] = 200; rgba[4 * i + 1] = 100; rgba[4 * i + 2] = 50; rgba[4 * i + 3] = 255; }
    const p = join(dir, 'x.jpg');
    writeFileSync(p, jpeg.encode({ data: rgba, width: w, height: h }, 95).data);
    const img = readImage(p);
    expect(img.shape).toEqual([8, 16, 3]);
    expect(Math.abs(img.get(3, 5, 0) - 200 / 255)).toBeLessThan(0.03);
    expect(Math.abs(img.get(3, 5, 2) - 50 / 255)).toBeLessThan(0.03);
  });
  it('names the file for missing, unknown and corrupt images', () => {
    expect(() => readImage(join(dir, 'nope.png'))).toThrow(/cannot read image .*nope\.png: no such file/);
    const txt = join(dir, 'notes.png');
    writeFileSync(txt, 'hello');
    expect(() => readImage(txt)).toThrow(/notes\.png: not a PNG or JPEG image \(the file starts with 68 65 6c 6c\)/);
    const png = join(dir, 'g.png');
    const cut = join(dir, 'cut.png');
    writeFileSync(cut, readFileSync(png).subarray(0, 40));
    expect(() => readImage(cut)).toThrow(/cut\.png: cannot decode PNG image/);
    expect(() => decodeImage(Uint8Array.of(0xff, 0xd8, 0xff, 0, 1), 'bad.jpg')).toThrow(/bad\.jpg: cannot decode JPEG image/);
  });
});

describe('conversions', () => {
  it('ndarray [H, W, 3] <-> tensor [1, 3, H, W] keep every value in place; resize is identity at the same size', async () => {
    const b = new CpuBackend();
    const img = gradient(5, 6);
    const t = imageToTensor(img, b);
    expect(t.shape).toEqual([1, 3, 5, 6]);
    const d = await t.data();
    expect(d[1 * 30 + 2 * 6 + 4]).toBeCloseTo(img.get(2, 4, 1), 6);
    const [back] = await tensorToImages(t);
    expect([...back!.data]).toEqual([...img.data]);
    expect(resizeImage(img, 5, 6)).toBe(img);
    const small = resizeImage(img, 3, 3);
    expect(small.shape).toEqual([3, 3, 3]);
    // Channels 0 and 1 are linear in x and y, so bilinear sampling at the half-pixel source positions
    // (x: 0.5, 2.5, 4.5 of 0..5; y: 1/3, 2, 11/3 of 0..4) gives their values exactly.
    for (let y = 0; y < 3; y++) for (let x = 0; x < 3; x++) {
      expect(small.get(y, x, 0)).toBeCloseTo([0.5, 2.5, 4.5][x]! / 5, 6);
      expect(small.get(y, x, 1)).toBeCloseTo([1 / 3, 2, 11 / 3][y]! / 4, 6);
    }
    expect(existsSync(dir)).toBe(true);
  });

  it('resize is bilinear with half-pixel centres, edges clamped (torch interpolate, align_corners=False)', () => {
    const img = (h: number, w: number, v: (y: number, x: number) => number) =>
      ndarray(Float32Array.from({ length: h * w * 3 }, (_, i) => v(Math.floor(i / 3 / w), Math.floor(i / 3) % w) * (1 + (i % 3))), [h, w, 3]);
    const table = (im: { shape: number[]; get(y: number, x: number, c: number): number }, c: number) =>
      Array.from({ length: im.shape[0]! }, (_, y) => Array.from({ length: im.shape[1]! }, (_, x) => im.get(y, x, c)));
    // F.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=(4, 4), mode='bilinear', align_corners=False)
    const up = resizeImage(img(2, 2, (y, x) => 1 + x + 2 * y), 4, 4);
    const torchUp = [[1, 1.25, 1.75, 2], [1.5, 1.75, 2.25, 2.5], [2.5, 2.75, 3.25, 3.5], [3, 3.25, 3.75, 4]];
    for (const c of [0, 1, 2]) expect(table(up, c)).toEqual(torchUp.map((r) => r.map((v) => v * (1 + c))));
    // 4x4 -> 2x2 samples at 0.5 and 2.5 (no antialiasing): 4y + x there.
    expect(table(resizeImage(img(4, 4, (y, x) => 4 * y + x), 2, 2), 0)).toEqual([[2.5, 4.5], [10.5, 12.5]]);
    // 3 -> 5 rows: sources -0.2 (clamped to 0), 0.4, 1, 1.6, 2.2 (past the last row: clamped).
    expect(table(resizeImage(img(3, 1, (y) => 10 * y), 5, 1), 0).flat().map((v) => +v.toFixed(5))).toEqual([0, 4, 10, 16, 20]);
  });
});
