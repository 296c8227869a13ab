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
    expect(small.get(0, 0, 0)).toBeGreaterThanOrEqual(0);
    expect(existsSync(dir)).toBe(true);
  });
});
