// PNG and JPEG files (Node only: the package's Node entry, src/node.ts). Decoding and encoding use the
// pure-JS codecs pngjs (PNG, any bit depth / colour type, interlaced; it needs Node's zlib and streams)
// and jpeg-js (baseline and progressive JPEG). PNG output is written atomically: encoded in memory,
// written to a temporary file next to the target, then renamed over it, so a failure never leaves a
// half-written image. In a browser, decode with the platform (createImageBitmap + canvas) and pass the
// RGBA bytes to rgbaToImage (images.ts).

import { randomBytes } from 'node:crypto';
import { closeSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { inflateSync } from 'node:zlib';
import type { NdArray } from 'ndarray';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { openRegularFile } from '@cnx/tensor';
import { MAX_IMAGE_PIXELS, checkImageSize, readImageHeader, rgbaToImage, sniffImageFormat, type ImageArray, type ImageHeader } from '../images.js';

/** The largest image file read (a 32 MP 16-bit RGBA PNG stored uncompressed is about 270 MB). */
export const MAX_IMAGE_FILE_BYTES = 512 * 2 ** 20;

/** Adam7 passes: x0, y0, dx, dy (PNG 8.2). */
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]] as const;

/**
 * pngjs inflates an interlaced PNG's data without an output bound (its non-interlaced path is bounded
 * by the declared size): inflate the IDAT stream here first, bounded by the size the header implies,
 * so that a small interlaced image with a zlib bomb inside is refused.
 */
function checkInterlacedPng(bytes: Uint8Array, h: ImageHeader): void {
  const bitsPerPixel = h.bitDepth * h.channels;
  let expected = 0;
  for (const [x0, y0, dx, dy] of ADAM7) {
    const w = Math.ceil(Math.max(h.width - x0, 0) / dx), r = Math.ceil(Math.max(h.height - y0, 0) / dy);
    if (w > 0 && r > 0) expected += r * (1 + Math.ceil((w * bitsPerPixel) / 8));
  }
  const parts: Uint8Array[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 8; i + 8 <= bytes.length;) {
    const len = view.getUint32(i);
    const type = String.fromCharCode(bytes[i + 4]!, bytes[i + 5]!, bytes[i + 6]!, bytes[i + 7]!);
    if (type === 'IDAT') parts.push(bytes.subarray(i + 8, Math.min(i + 8 + len, bytes.length)));
    if (type === 'IEND') break;
    i += 12 + len;
  }
  try {
    inflateSync(Buffer.concat(parts), { maxOutputLength: Math.max(expected, 1) });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new Error(`interlaced PNG data inflates beyond the ${expected} bytes its ${h.width}x${h.height} header implies`);
    }
    // Other inflate errors: left to the decoder, which reports them.
  }
}

/**
 * Decode PNG or JPEG bytes (format sniffed from the signature); `name` is used in error messages.
 * The declared size is read from the header and checked against MAX_IMAGE_SIDE / MAX_IMAGE_PIXELS
 * before anything is decoded.
 */
export function decodeImage(bytes: Uint8Array, name = '<buffer>'): ImageArray {
  const kind = sniffImageFormat(bytes);
  let header: ImageHeader;
  try {
    header = readImageHeader(bytes);
  } catch (e) {
    throw new Error(`${name}: ${kind ? `cannot decode ${kind.toUpperCase()} image: ` : ''}${(e as Error).message}`);
  }
  try {
    checkImageSize(header.width, header.height);
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message}`);
  }
  try {
    if (header.format === 'png') {
      if (header.interlaced) checkInterlacedPng(bytes, header);
      // 16-bit PNGs are reduced to 8 bits per channel by pngjs (skipRescale false).
      const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      return rgbaToImage(png.data, png.width, png.height);
    }
    const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: MAX_IMAGE_PIXELS / 1e6 });
    return rgbaToImage(img.data, img.width, img.height);
  } catch (e) {
    // jpeg-js throws strings in places; a stack overflow or allocation failure is reported the same way.
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(`${name}: cannot decode ${header.format.toUpperCase()} image: ${why.length > 300 ? `${why.slice(0, 297)}...` : why}`);
  }
}

/**
 * The bytes of an image file: a regular file (a FIFO or a folder is refused, never blocks) of at most
 * MAX_IMAGE_FILE_BYTES, checked before reading.
 */
export function readImageBytes(path: string): Uint8Array {
  let fd: number, size: number;
  try {
    ({ fd, size } = openRegularFile(path, 'readImage'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`cannot read image ${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`);
  }
  try {
    if (size > MAX_IMAGE_FILE_BYTES) throw new Error(`cannot read image ${path}: ${size} bytes, over the ${MAX_IMAGE_FILE_BYTES}-byte limit for an image file`);
    const buf = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      const n = readSync(fd, buf, done, size - done, done);
      if (n === 0) break;
      done += n;
    }
    return buf.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

/** Read a PNG or JPEG file as [H, W, 3] RGB in [0, 1]; errors name the file. */
export function readImage(path: string): ImageArray {
  return decodeImage(readImageBytes(path), path);
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


/** Encode [H, W, 3|4] values in [0, 1] (clamped, rounded; alpha dropped) as a baseline JPEG (jpeg-js, quality 1-100). */
export function encodeJpeg(image: NdArray, quality = 95): Buffer {
  const [H, W, C] = image.shape as [number, number, number];
  if (image.shape.length !== 3 || (C !== 3 && C !== 4)) {
    throw new Error(`encodeJpeg: expected an ndarray [H, W, 3] or [H, W, 4], found [${image.shape.join(', ')}]`);
  }
  const data = new Uint8Array(W * H * 4);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const o = 4 * (y * W + x);
      for (let c = 0; c < 3; c++) {
        const v = Number(image.get(y, x, c));
        data[o + c] = Math.round(Math.min(Math.max(Number.isNaN(v) ? 0 : v, 0), 1) * 255);
      }
      data[o + 3] = 255;
    }
  }
  return jpeg.encode({ data, width: W, height: H }, quality).data as Buffer;
}

/** The image format a file name asks for by its extension (.png, .jpg, .jpeg; any case), or undefined. */
export function imageFormatOfPath(path: string): 'png' | 'jpeg' | undefined {
  const ext = extname(path).toLowerCase();
  return ext === '.png' ? 'png' : ext === '.jpg' || ext === '.jpeg' ? 'jpeg' : undefined;
}

/** Write an image ndarray as PNG or JPEG, chosen by the file's extension, atomically; other extensions are an error. */
export function writeImage(path: string, image: NdArray): void {
  const format = imageFormatOfPath(path);
  if (!format) throw new Error(`cannot write ${path}: the extension must be .png, .jpg or .jpeg (the format is chosen by it)`);
  writeFileAtomic(path, format === 'png' ? encodePng(image) : encodeJpeg(image));
}
