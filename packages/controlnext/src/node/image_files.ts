// PNG and JPEG files (Node only: the package's Node entry, src/node.ts). Decoding and encoding use the
// pure-JS codecs pngjs (PNG, any bit depth / colour type, interlaced; it needs Node's zlib and streams)
// and jpeg-js (baseline and progressive JPEG). PNG output is written atomically: encoded in memory,
// written to a temporary file next to the target, then renamed over it, so a failure never leaves a
// half-written image. In a browser, decode with the platform (createImageBitmap + canvas) and pass the
// RGBA bytes to rgbaToImage (images.ts).

import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { NdArray } from 'ndarray';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { MAX_IMAGE_SIDE, rgbaToImage, type ImageArray } from '../images.js';

function sniff(bytes: Uint8Array): 'png' | 'jpeg' | undefined {
  if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return undefined;
}

/** Decode PNG or JPEG bytes (format sniffed from the signature); `name` is used in error messages. */
export function decodeImage(bytes: Uint8Array, name = '<buffer>'): ImageArray {
  const kind = sniff(bytes);
  if (!kind) {
    throw new Error(`${name}: not a PNG or JPEG image (the file starts with ${[...bytes.slice(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ') || 'nothing'})`);
  }
  try {
    if (kind === 'png') {
      // 16-bit PNGs are reduced to 8 bits per channel by pngjs (skipRescale false).
      const png = PNG.sync.read(Buffer.from(bytes));
      if (png.width > MAX_IMAGE_SIDE || png.height > MAX_IMAGE_SIDE) throw new Error(`image is ${png.width}x${png.height}, larger than ${MAX_IMAGE_SIDE} on a side`);
      return rgbaToImage(png.data, png.width, png.height);
    }
    const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: (MAX_IMAGE_SIDE * MAX_IMAGE_SIDE) / 1e6 });
    return rgbaToImage(img.data, img.width, img.height);
  } catch (e) {
    throw new Error(`${name}: cannot decode ${kind.toUpperCase()} image: ${(e as Error).message}`);
  }
}

/** Read a PNG or JPEG file as [H, W, 3] RGB in [0, 1]; errors name the file. */
export function readImage(path: string): ImageArray {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read image ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  return decodeImage(bytes, path);
}

/** Encode [H, W, 3|4] values in [0, 1] (clamped, rounded) as an 8-bit RGBA PNG. */
export function encodePng(image: NdArray): Buffer {
  const [H, W, C] = image.shape as [number, number, number];
  if (image.shape.length !== 3 || (C !== 3 && C !== 4)) {
    throw new Error(`encodePng: expected an ndarray [H, W, 3] or [H, W, 4], found [${image.shape.join(', ')}]`);
  }
  const png = new PNG({ width: W, height: H });
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const o = 4 * (y * W + x);
      for (let c = 0; c < 4; c++) {
        const v = c < C ? Number(image.get(y, x, c)) : 1;
        png.data[o + c] = Math.round(Math.min(Math.max(Number.isNaN(v) ? 0 : v, 0), 1) * 255);
      }
    }
  }
  return PNG.sync.write(png);
}

/** Write `bytes` to `path` atomically (temporary file in the same folder, then rename). */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`cannot write ${path}: ${(e as Error).message}`);
  }
}

/** Write an image ndarray [H, W, 3|4] (values in [0, 1]) as a PNG file, atomically. */
export function writePng(path: string, image: NdArray): void {
  writeFileAtomic(path, encodePng(image));
}

