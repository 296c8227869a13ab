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

/** Adam7 passes: x0, y0, dx, dy (PNG 8.2). */
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]] as const;

/**
 * A valid 8-bit PNG (colour type 0 grey, 2 RGB, 4 grey+alpha or 6 RGBA), optionally Adam7-interlaced,
 * with filter type (y % 5) on row y (None, Sub, Up, Average, Paeth all occur), from sample(x, y, channel).
 */
export function encodePngBytes(width: number, height: number, colourType: 0 | 2 | 4 | 6, sample: (x: number, y: number, c: number) => number, interlace: 0 | 1 = 0): Uint8Array {
  const ch = { 0: 1, 2: 3, 4: 2, 6: 4 }[colourType];
  const rows: Uint8Array[] = [];
  const passes = interlace ? ADAM7 : [[0, 0, 1, 1]] as const;
  for (const [x0, y0, dx, dy] of passes) {
    const w = Math.ceil(Math.max(width - x0, 0) / dx), h = Math.ceil(Math.max(height - y0, 0) / dy);
    if (w === 0 || h === 0) continue;
    let prev = new Uint8Array(w * ch);
    for (let r = 0; r < h; r++) {
      const raw = new Uint8Array(w * ch);
      for (let i = 0; i < w; i++) for (let c = 0; c < ch; c++) raw[i * ch + c] = sample(x0 + i * dx, y0 + r * dy, c) & 255;
      const filter = r % 5;
      const out = new Uint8Array(1 + raw.length);
      out[0] = filter;
      for (let i = 0; i < raw.length; i++) {
        const a = i >= ch ? raw[i - ch]! : 0, b = prev[i]!, cc = i >= ch ? prev[i - ch]! : 0;
        const p = a + b - cc, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - cc);
        const pred = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : cc][filter]!;
        out[1 + i] = (raw[i]! - pred) & 255;
      }
      rows.push(out);
      prev = raw;
    }
  }
  return pngBytes({ width, height, colourType, bitDepth: 8, interlace, idat: deflateSync(concat(rows)) });
}
