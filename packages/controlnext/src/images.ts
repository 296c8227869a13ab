// Images in and out, with ndarray at the library boundary: readImage() gives an ndarray [H, W, 3] of
// RGB floats in [0, 1]; writePng() takes one ([H, W, 3] or [H, W, 4], floats in [0, 1]). Decoding and
// encoding use the pure-JS codecs pngjs (PNG, any bit depth / colour type, interlaced) and jpeg-js
// (baseline and progressive JPEG). PNG output is written atomically: encoded in memory, written to a
// temporary file next to the target, then renamed over it, so a failure never leaves a half-written image.

import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import ndarray, { type NdArray } from 'ndarray';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { ops, type Backend, type Tensor } from '@cnx/tensor';
import type { RgbImage } from './control_types/control_type.js';

/** An RGB image as the library passes it around: [H, W, 3], values in [0, 1]. */
export type ImageArray = NdArray<Float32Array>;

/** The largest image side accepted when decoding (guards against decompression bombs). */
export const MAX_IMAGE_SIDE = 16384;

function sniff(bytes: Uint8Array): 'png' | 'jpeg' | undefined {
  if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return undefined;
}

/** RGBA bytes -> [H, W, 3] floats in [0, 1] (alpha dropped, as PIL's convert('RGB') does). */
function rgbaToArray(rgba: Uint8Array, width: number, height: number): ImageArray {
  const out = new Float32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    out[3 * i] = rgba[4 * i]! / 255;
    out[3 * i + 1] = rgba[4 * i + 1]! / 255;
    out[3 * i + 2] = rgba[4 * i + 2]! / 255;
  }
  return ndarray(out, [height, width, 3]);
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
      return rgbaToArray(png.data, png.width, png.height);
    }
    const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: (MAX_IMAGE_SIDE * MAX_IMAGE_SIDE) / 1e6 });
    return rgbaToArray(img.data, img.width, img.height);
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

/**
 * Bilinear resize (half-pixel centres, as torch interpolate(align_corners=False) without antialias).
 * The reference pipelines resize with PIL's Lanczos filter, so a resized control image differs from
 * theirs by interpolation detail; give images at the output size to avoid any resize.
 */
export function resizeImage(image: ImageArray, height: number, width: number): ImageArray {
  const [H, W, C] = image.shape as [number, number, number];
  if (H === height && W === width) return image;
  const out = new Float32Array(height * width * C);
  const sy = H / height, sx = W / width;
  for (let y = 0; y < height; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), H - 1);
    const y0 = Math.floor(fy), y1 = Math.min(y0 + 1, H - 1), wy = fy - y0;
    for (let x = 0; x < width; x++) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), W - 1);
      const x0 = Math.floor(fx), x1 = Math.min(x0 + 1, W - 1), wx = fx - x0;
      for (let c = 0; c < C; c++) {
        const a = image.get(y0, x0, c) * (1 - wx) + image.get(y0, x1, c) * wx;
        const b = image.get(y1, x0, c) * (1 - wx) + image.get(y1, x1, c) * wx;
        out[(y * width + x) * C + c] = a * (1 - wy) + b * wy;
      }
    }
  }
  return ndarray(out, [height, width, C]);
}

/** The control types' RgbImage view (interleaved [H, W, 3] floats) of an image ndarray. */
export function toRgbImage(image: ImageArray): RgbImage {
  const [H, W, C] = image.shape as [number, number, number];
  if (image.shape.length !== 3 || C !== 3) throw new Error(`expected an RGB image ndarray [H, W, 3], found [${image.shape.join(', ')}]`);
  const data = new Float32Array(H * W * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < 3; c++) data[(y * W + x) * 3 + c] = image.get(y, x, c);
  return { data, height: H, width: W };
}

/** [H, W, 3] ndarray -> [1, 3, H, W] tensor on `backend` (values unchanged). */
export function imageToTensor(image: ImageArray, backend: Backend): Tensor {
  const [H, W] = image.shape as [number, number, number];
  const planes = new Float32Array(3 * H * W);
  for (let c = 0; c < 3; c++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) planes[c * H * W + y * W + x] = image.get(y, x, c);
  return backend.fromRaw(planes, [1, 3, H, W]);
}

/** [B, 3, H, W] tensor -> one [H, W, 3] ndarray per batch entry. */
export async function tensorToImages(t: Tensor): Promise<ImageArray[]> {
  if (t.rank !== 4 || t.shape[1] !== 3) throw new Error(`tensorToImages: expected [B, 3, H, W], found ${t.toString()}`);
  const [B, , H, W] = t.shape as [number, number, number, number];
  const c = ops.cast(t, 'f32');
  const data = await c.data();
  c.dispose();
  return Array.from({ length: B }, (_, b) => {
    const out = new Float32Array(H * W * 3);
    for (let ch = 0; ch < 3; ch++) for (let i = 0; i < H * W; i++) out[3 * i + ch] = data[(b * 3 + ch) * H * W + i]!;
    return ndarray(out, [H, W, 3]);
  });
}
