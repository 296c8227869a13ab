// Image size limits decided from the header, before decoding (issue 17 item 1): a PNG or JPEG that
// declares more than MAX_IMAGE_SIDE on a side or MAX_IMAGE_PIXELS pixels is refused in milliseconds with
// the file and the declared size named; a second JPEG frame header and an interlaced-PNG zlib bomb are
// refused; image files are regular files of bounded size. The CLI's output size taken from an image
// obeys the same 4096 cap as --width / --height, checked before the image is decoded or a model loads.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, decodeImage, main, readImage, readImageHeader,
} from '@cnx/controlnext';
import { encodePngBytes, greyPng, interlacedBombPng, jpegHeaderBytes, pngBytes } from './crafted_images.js';
import { goldenControlNeXt, writeModelFolder } from './sd_model_folder.js';

const dir = mkdtempSync(join(tmpdir(), 'cnx-imglim-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await main(argv, {
    stdout: { write: (s: string) => { out += s; return true; } },
    stderr: { isTTY: false, write: (s: string) => { err += s; return true; } },
  });
  return { code, out, err };
}

/** Run fn and return its wall time (ms) and the RSS growth (MiB). */
function measure(fn: () => void): { ms: number; mib: number } {
  const rss0 = process.memoryUsage().rss, t0 = performance.now();
  fn();
  return { ms: performance.now() - t0, mib: (process.memoryUsage().rss - rss0) / 2 ** 20 };
}

describe('image headers', () => {
  it('reads the declared size of PNG and JPEG without decoding', () => {
    expect(readImageHeader(pngBytes({ width: 20000, height: 30000 }))).toMatchObject({ format: 'png', width: 20000, height: 30000, bitDepth: 8, channels: 1 });
    expect(readImageHeader(pngBytes({ width: 3, height: 5, colourType: 6, bitDepth: 16, interlace: 1 }))).toMatchObject({ width: 3, height: 5, channels: 4, bitDepth: 16, interlaced: true });
    expect(readImageHeader(jpegHeaderBytes(640, 480))).toMatchObject({ format: 'jpeg', width: 640, height: 480 });
  });
  it('refuses headers that do not follow the formats', () => {
    expect(() => readImageHeader(pngBytes({ width: 4, height: 4, colourType: 2, bitDepth: 4 }))).toThrow(/colour type 2 with bit depth 4/);
    expect(() => readImageHeader(pngBytes({ width: 4, height: 4 }).slice(0, 20))).toThrow(/inside its IHDR header/);
    expect(() => readImageHeader(jpegHeaderBytes(8, 8, { width: 60000, height: 60000 }))).toThrow(/second frame header/);
    expect(() => readImageHeader(Uint8Array.of(0xff, 0xd8, 0xff, 0xda, 0, 2))).toThrow(/SOS\) before any frame header/);
    expect(() => readImageHeader(new TextEncoder().encode('GIF89a'))).toThrow(/not a PNG or JPEG image \(the file starts with 47 49 46 38\)/);
  });
});

describe('decoding limits (before decoding)', () => {
  it('a 99-byte header-only 20000x20000 PNG is refused at once (was 2.35 GB and 8.5 s)', () => {
    const bytes = pngBytes({ width: 20000, height: 20000 });
    expect(bytes.length).toBeLessThan(100);
    let err: Error | undefined;
    const m = measure(() => { try { decodeImage(bytes, 'big.png'); } catch (e) { err = e as Error; } });
    expect(err?.message).toMatch(/^big\.png: image declares 20000x20000 pixels \(400\.0 MP\); the limit is 16384 on a side and 33554432 pixels/);
    expect(m.ms).toBeLessThan(200);
    expect(m.mib).toBeLessThan(50);
  });
  it('a 16384x16384 PNG (side at the limit, pixels over it) and a 16385-wide JPEG are refused', () => {
    expect(MAX_IMAGE_SIDE * MAX_IMAGE_SIDE).toBeGreaterThan(MAX_IMAGE_PIXELS);
    expect(() => decodeImage(pngBytes({ width: 16384, height: 16384, idat: greyPng(16, 16).subarray(41) }), 'square.png'))
      .toThrow(/square\.png: image declares 16384x16384 pixels/);
    expect(() => decodeImage(jpegHeaderBytes(16385, 8), 'wide.jpg')).toThrow(/wide\.jpg: image declares 16385x8 pixels/);
    expect(() => decodeImage(pngBytes({ width: 0, height: 5 }), 'zero.png')).toThrow(/zero\.png: image declares 0x5 pixels \(both must be at least 1\)/);
  });
  it('an interlaced PNG whose data inflates beyond its declared size is refused (pngjs does not bound that inflate)', () => {
    const bomb = interlacedBombPng(4, 4, 64 * 2 ** 20);
    expect(bomb.length).toBeLessThan(100_000);
    const m = measure(() => expect(() => decodeImage(bomb, 'bomb.png')).toThrow(/bomb\.png: cannot decode PNG image: interlaced PNG data inflates beyond the \d+ bytes its 4x4 header implies/));
    expect(m.mib).toBeLessThan(48);
  });
  it('image files must be regular files (a FIFO is refused at once, never blocks)', () => {
    const fifo = join(dir, 'fifo.png');
    execFileSync('mkfifo', [fifo]);
    expect(() => readImage(fifo)).toThrow(/cannot read image .*fifo\.png: .*expected a regular file, found a FIFO/);
    expect(() => readImage(dir)).toThrow(/expected a regular file, found a directory/);
  });
  it('valid images still decode', () => {
    const p = join(dir, 'ok.png');
    writeFileSync(p, greyPng(9, 7, (y) => y * 30));
    const img = readImage(p);
    expect(img.shape).toEqual([7, 9, 3]);
    expect(img.get(6, 8, 0)).toBeCloseTo(180 / 255, 6);
  });
});

describe('cnx generate: the output size taken from an image is capped like --width / --height', () => {
  it('a control image sets the size only for a model without sample_size: there a side over 4096 is a usage error after loading', async () => {
    const model = writeModelFolder(join(dir, 'no-sample-size'), { config: { unet: { sample_size: undefined } } });
    const p = join(dir, 'wide-ctrl.png');
    writeFileSync(p, encodePngBytes(4104, 8, 2, (x, y, c) => (x + y + c) & 255));
    const r = await run('generate', '--model', model, '--controlnext', goldenControlNeXt, '--control-image', p, '--steps', '1', '--output', join(dir, 'o.png'));
    expect(r.code, r.err).toBe(2);
    expect(r.err).toMatch(/--control-image is 4104x8 and this model has no sample_size, so the output size would be taken from it \(4104x8\), over the 4096 limit of --width \/ --height/);
    // With the tiny model (a default size of 128) the same image is only resized.
    const tiny = await run('generate', '--control-image', p, '--steps', '1', '--output', join(dir, 'o.png'));
    expect(tiny.code, tiny.err).toBe(0);
    expect(tiny.out).toMatch(/128x128/);
  });
  it('an --init-image sets the size when --width / --height do not: its cap is checked from the header, before decoding', async () => {
    const p = join(dir, 'tall.png');
    writeFileSync(p, pngBytes({ width: 64, height: 5000 }));
    const r = await run('generate', '--init-image', p, '--steps', '2', '--output', join(dir, 'o.png'));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--init-image .*tall\.png is 64x5000: the output height would be taken from it \(5000\)/);
    const r2 = await run('generate', '--init-image', p, '--steps', '2', '--width', '64', '--height', '64', '--output', join(dir, 'o.png'));
    expect(r2.code).toBe(1);
    expect(r2.err).toMatch(/tall\.png: cannot decode PNG image/);
  });
  it('the 16384x16384 PNG of the report is refused from its header in well under a second', async () => {
    const p = join(dir, 'huge.png');
    writeFileSync(p, pngBytes({ width: 16384, height: 16384 }));
    const t0 = performance.now();
    const r = await run('generate', '--control-image', p, '--width', '64', '--height', '64', '--steps', '1', '--output', join(dir, 'o.png'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/huge\.png: image declares 16384x16384 pixels \(268\.4 MP\)/);
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});
