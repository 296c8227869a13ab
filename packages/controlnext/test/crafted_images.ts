// Hand-built PNG and JPEG bytes for the image-limit tests and the image fuzz test: headers that declare
// any size, with or without pixel data, so that a test can show that a refusal happens from the header
// alone (the pixel data of a 16384x16384 image is never produced).

import { crc32, deflateSync } from 'node:zlib';

function u32be(v: number): Uint8Array {
  return Uint8Array.of((v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/** One PNG chunk: length, type, data, CRC-32 over type + data. */
export function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const td = concat([new TextEncoder().encode(type), data]);
  return concat([u32be(data.length), td, u32be(crc32(td))]);
}

export const PNG_SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

export interface PngSpec {
  width: number;
  height: number;
  /** 0 grey, 2 RGB, 6 RGBA (default 0). */
  colourType?: number;
  bitDepth?: number;
  interlace?: 0 | 1;
  /** Compressed IDAT payload; default: none (a header-only file). */
  idat?: Uint8Array;
}

export function pngBytes(s: PngSpec): Uint8Array {
  const ihdr = concat([u32be(s.width), u32be(s.height), Uint8Array.of(s.bitDepth ?? 8, s.colourType ?? 0, 0, 0, s.interlace ?? 0)]);
  return concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr), ...(s.idat ? [pngChunk('IDAT', s.idat)] : []), pngChunk('IEND', new Uint8Array(0))]);
}

/** A valid 8-bit greyscale PNG whose rows are `row(y)` bytes (filter type 0). */
export function greyPng(width: number, height: number, row: (y: number) => number = () => 0, interlace: 0 | 1 = 0): Uint8Array {
  if (interlace) throw new Error('greyPng: non-interlaced only');
  const raw = new Uint8Array(height * (width + 1));
  for (let y = 0; y < height; y++) raw.fill(row(y), y * (width + 1) + 1, (y + 1) * (width + 1));
  return pngBytes({ width, height, idat: deflateSync(raw) });
}

/** A small interlaced PNG whose IDAT inflates to `inflated` bytes of zeros (a zlib bomb when large). */
export function interlacedBombPng(width: number, height: number, inflated: number): Uint8Array {
  return pngBytes({ width, height, interlace: 1, idat: deflateSync(new Uint8Array(inflated)) });
}

/** JPEG bytes up to a frame header declaring width x height (SOI, APP0 JFIF, SOF0), optionally a second SOF, then EOI. */
export function jpegHeaderBytes(width: number, height: number, secondFrame?: { width: number; height: number }): Uint8Array {
  const sof = (w: number, h: number) => Uint8Array.of(0xff, 0xc0, 0, 11, 8, h >> 8, h & 255, w >> 8, w & 255, 1, 1, 0x11, 0);
  const app0 = Uint8Array.of(0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0);
  return concat([Uint8Array.of(0xff, 0xd8), app0, sof(width, height), ...(secondFrame ? [sof(secondFrame.width, secondFrame.height)] : []), Uint8Array.of(0xff, 0xd9)]);
}
