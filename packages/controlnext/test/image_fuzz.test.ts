// Seeded fuzz test of the image decoders (issue 17: "a fuzz test in the suite, seeded, a few thousand
// mutated files, under a minute, for the config parsers and the image decoders"; the configs are in
// packages/unet/test/config_fuzz.test.ts). Valid PNGs (grey, RGB, grey+alpha, RGBA; plain and Adam7
// interlaced; every filter type) and baseline JPEGs (jpeg-js, several sizes and qualities) are mutated:
// bit flips (anywhere, in the header), IHDR / SOF sizes and fields rewritten, chunk and segment lengths
// rewritten, CRCs broken, chunks duplicated or dropped, truncation, appended garbage, zlib data replaced.
// decodeImage must give, for each:
//   - a clean rejection: an Error whose message starts with the file's name and is short, or
//   - an image [H, W, 3] within the decoding limits, every value finite and in [0, 1];
// anything else (a TypeError/RangeError escaping, a string thrown, a wrong shape, a hang) is a crash.

import { describe, expect, it } from 'vitest';
import jpeg from 'jpeg-js';
import { MAX_IMAGE_PIXELS, decodeImage } from '@cnx/controlnext';
import { encodePngBytes, pngChunk, PNG_SIGNATURE } from './crafted_images.js';

const SEED = 0x1a6e5;
const CASES = 3000;

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pattern = (x: number, y: number, c: number) => (x * 37 + y * 11 + c * 71 + ((x * y) & 15) * 9) & 255;

function seedImages(): { format: 'png' | 'jpeg'; bytes: Uint8Array }[] {
  const out: { format: 'png' | 'jpeg'; bytes: Uint8Array }[] = [];
  for (const [w, h] of [[13, 9], [32, 32], [1, 7], [40, 3]] as const) {
    for (const ct of [0, 2, 4, 6] as const) for (const il of [0, 1] as const) out.push({ format: 'png', bytes: encodePngBytes(w, h, ct, pattern, il) });
  }
  for (const [w, h, q] of [[16, 16, 90], [33, 17, 50], [8, 64, 10], [64, 48, 95]] as const) {
    const data = new Uint8Array(w * h * 4);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 4; c++) data[(y * w + x) * 4 + c] = c === 3 ? 255 : pattern(x, y, c);
    out.push({ format: 'jpeg', bytes: new Uint8Array(jpeg.encode({ data, width: w, height: h }, q).data) });
  }
  return out;
}

/** PNG chunks as [offset, length, type]. */
function chunks(b: Uint8Array): [number, number, string][] {
  const out: [number, number, string][] = [];
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 8; i + 8 <= b.length;) {
    const len = v.getUint32(i);
    out.push([i, len, String.fromCharCode(b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!)]);
    i += 12 + len;
  }
  return out;
}

/** JPEG marker segments with a length: [offset of FF, marker]. */
function segments(b: Uint8Array): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 2; i + 3 < b.length;) {
    if (b[i] !== 0xff) break;
    const m = b[i + 1]!;
    if (m === 0xd9 || m === 0xda) { out.push([i, m]); break; }
    out.push([i, m]);
    i += 2 + ((b[i + 2]! << 8) | b[i + 3]!);
  }
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const o = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let k = 0;
  for (const p of parts) { o.set(p, k); k += p.length; }
  return o;
}

function mutate(seed: { format: 'png' | 'jpeg'; bytes: Uint8Array }, r: () => number): Uint8Array {
  const int = (n: number) => Math.floor(r() * n);
  const b = seed.bytes.slice();
  const dv = new DataView(b.buffer);
  const op = int(9);
  const bigOrOdd = () => [0, 1, 2, 7, 255, 4096, 8193, 16384, 16385, 65535, 2 ** 31 - 1, 2 ** 32 - 1][int(12)]!;
  switch (op) {
    case 0: for (let k = 1 + int(8); k > 0; k--) b[int(b.length)]! ^= 1 << int(8); return b; // bit flips anywhere
    case 1: for (let k = 1 + int(3); k > 0; k--) b[int(Math.min(b.length, 64))]! ^= 1 << int(8); return b; // in the header
    case 2: return b.subarray(0, int(b.length)); // truncation
    case 3: return concat([b, Uint8Array.from({ length: 1 + int(200) }, () => int(256))]); // appended garbage
    default: break;
  }
  if (seed.format === 'png') {
    const cs = chunks(b);
    const [off, len] = cs[int(cs.length)]!;
    switch (op) {
      case 4: { // IHDR fields: width, height, depth, colour type, compression, filter, interlace
        const f = int(7);
        if (f < 2) dv.setUint32(16 + 4 * f, bigOrOdd());
        else b[22 + f] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 255][int(11)]!;
        return b; // the CRC is now wrong too, as in a hand-edited file
      }
      case 5: dv.setUint32(off, [0, len - 1, len + 1, 2 ** 31, 2 ** 32 - 1][int(5)]!); return b; // a chunk length
      case 6: { // a chunk dropped or duplicated
        const parts = cs.map(([o, l]) => b.subarray(o, o + 12 + l));
        const i = int(parts.length);
        if (int(2)) parts.splice(i, 1); else parts.splice(i, 0, parts[i]!);
        return concat([PNG_SIGNATURE, ...parts]);
      }
      default: { // the IDAT data replaced (raw bytes, a zlib bomb of zeros, an empty stream) with a valid CRC
        const parts = cs.map(([o, l, t]) => (t === 'IDAT'
          ? pngChunk('IDAT', [Uint8Array.from({ length: int(300) }, () => int(256)), Uint8Array.of(0x78, 0x9c, 3, 0), new Uint8Array(0)][int(3)]!)
          : b.subarray(o, o + 12 + l)));
        return concat([PNG_SIGNATURE, ...parts]);
      }
    }
  }
  const segs = segments(b);
  const [off, marker] = segs[int(segs.length)]!;
  switch (op) {
    case 4: { // the frame header's size, precision or component count
      const sof = segs.find(([, m]) => m === 0xc0);
      if (sof) {
        const f = int(4);
        if (f === 0) dv.setUint16(sof[0] + 5, bigOrOdd() & 0xffff);
        else if (f === 1) dv.setUint16(sof[0] + 7, bigOrOdd() & 0xffff);
        else b[sof[0] + (f === 2 ? 4 : 9)] = [0, 1, 2, 3, 4, 8, 12, 16, 255][int(9)]!;
      }
      return b;
    }
    case 5: if (marker !== 0xd9 && marker !== 0xda) dv.setUint16(off + 2, [0, 1, 2, 3, 0xffff, int(0x10000)][int(6)]!); return b; // a segment length
    case 6: { // a segment dropped or duplicated
      if (marker === 0xd9 || marker === 0xda) return b;
      const len = 2 + ((b[off + 2]! << 8) | b[off + 3]!);
      const seg = b.slice(off, off + len);
      return int(2) ? concat([b.subarray(0, off), b.subarray(off + len)]) : concat([b.subarray(0, off), seg, b.subarray(off)]);
    }
    default: { // the entropy-coded data after SOS overwritten
      const sos = segs.find(([, m]) => m === 0xda);
      if (sos) for (let k = 0; k < 1 + int(20); k++) { const i = sos[0] + 14 + int(Math.max(1, b.length - sos[0] - 16)); if (i < b.length - 2) b[i] = int(256); }
      return b;
    }
  }
}

type Outcome = 'rejected' | 'accepted';

function trial(bytes: Uint8Array, name: string): Outcome {
  let img: ReturnType<typeof decodeImage>;
  try {
    img = decodeImage(bytes, name);
  } catch (e) {
    if (!(e instanceof Error) || e.constructor !== Error) throw new Error(`crash: ${(e as Error)?.constructor?.name ?? typeof e}: ${String((e as Error)?.message ?? e).slice(0, 200)}`);
    if (!e.message.startsWith(`${name}: `)) throw new Error(`crash: message does not name the file: ${e.message.slice(0, 200)}`);
    if (e.message.length > 1000) throw new Error(`crash: a ${e.message.length}-character message`);
    return 'rejected';
  }
  const [H, W, C] = img.shape as [number, number, number];
  if (img.shape.length !== 3 || C !== 3 || !(H >= 1 && W >= 1) || H * W > MAX_IMAGE_PIXELS || img.data.length !== H * W * 3) {
    throw new Error(`crash: decoded shape [${img.shape.join(', ')}] with ${img.data.length} values`);
  }
  for (const v of img.data) if (!(v >= 0 && v <= 1)) throw new Error(`crash: a decoded value ${v} outside [0, 1]`);
  return 'accepted';
}

describe('image decoder fuzz', () => {
  it(`${CASES} seeded mutations of PNG and JPEG files: each a clean rejection or a valid image, none slow`, () => {
    const seeds = seedImages();
    // The seeds decode to what was encoded (PNG exactly, every colour type, filter and interlacing).
    for (const s of seeds) expect(trial(s.bytes, `seed.${s.format}`)).toBe('accepted');
    const g = decodeImage(encodePngBytes(13, 9, 2, pattern, 1), 'i.png');
    for (let y = 0; y < 9; y++) for (let x = 0; x < 13; x++) for (let c = 0; c < 3; c++) expect(g.get(y, x, c) * 255).toBeCloseTo(pattern(x, y, c), 3);
    const r = rng(SEED);
    const counts = { rejected: 0, accepted: 0, crashes: 0 };
    const crashes: string[] = [];
    let slowest = 0;
    const rss0 = process.memoryUsage().rss;
    let rssMax = rss0;
    const t0 = performance.now();
    for (let c = 0; c < CASES; c++) {
      const seed = seeds[Math.floor(r() * seeds.length)]!;
      const file = mutate(seed, r);
      const t = performance.now();
      try {
        counts[trial(file, `fuzz-${c}.${seed.format}`)]++;
      } catch (e) {
        counts.crashes++;
        if (crashes.length < 10) crashes.push(`case ${c}: ${(e as Error).message.slice(0, 300)}`);
      }
      slowest = Math.max(slowest, performance.now() - t);
      if (c % 100 === 0) rssMax = Math.max(rssMax, process.memoryUsage().rss);
    }
    const seconds = (performance.now() - t0) / 1000;
    const grewMiB = (rssMax - rss0) / 2 ** 20;
    console.log(`image fuzz (seed ${SEED.toString(16)}): ${CASES} cases, ${counts.rejected} clean rejections, ${counts.accepted} decoded, ` +
      `${counts.crashes} crashes; ${seconds.toFixed(1)} s, slowest case ${slowest.toFixed(0)} ms, RSS grew at most ${grewMiB.toFixed(0)} MiB`);
    expect(crashes).toEqual([]);
    expect(counts.rejected + counts.accepted).toBe(CASES);
    expect(counts.rejected).toBeGreaterThan(CASES / 3);
    expect(counts.accepted).toBeGreaterThan(100);
    expect(slowest).toBeLessThan(5_000);
    expect(grewMiB).toBeLessThan(1024);
  }, 60_000);
});
