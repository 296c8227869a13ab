// Image sizes read from a PNG or JPEG header, before anything is decoded (issue 17: a 261 KB PNG that
// declares 16384x16384 pixels drove the process to 14.9 GB; a 99-byte header-only 20000x20000 PNG cost
// 2.35 GB and 8.5 s before the size check that ran after decoding). The limits below are decided from
// the declared size alone, so a refused image costs a few header bytes of parsing.
//
//   PNG  (ISO/IEC 15948 / W3C PNG 2nd ed., 5.2-5.3, 11.2.2): 8-byte signature, then the IHDR chunk first:
//        length 13, 'IHDR', width u32 BE, height u32 BE, bit depth, colour type, compression, filter,
//        interlace.
//   JPEG (ITU-T T.81, B.1.1 and B.2.2): SOI (FFD8), then marker segments FFxx + u16 BE length (the length
//        counts itself); the first SOFn frame header (C0-C3, C5-C7, C9-CB, CD-CF) holds precision u8,
//        height u16, width u16, components u8. Markers without a length (RSTn, TEM) are skipped; fill bytes
//        (FF FF ...) are skipped; SOS before a frame header is an error.
//
// Browser-safe (bytes in, numbers out).

/** The largest image side accepted when decoding. */
export const MAX_IMAGE_SIDE = 16384;
/**
 * The most pixels accepted when decoding: 2^25 (33.5 MP: 8192 x 4096, or a 24 MP camera photo). Decoding
 * holds the RGBA bytes and then the float RGB image: about 16-20 bytes per pixel, so 0.5-0.7 GB at the cap.
 */
export const MAX_IMAGE_PIXELS = 2 ** 25;

export interface ImageHeader {
  format: 'png' | 'jpeg';
  width: number;
  height: number;
  /** PNG: Adam7 interlacing (its decoder inflates without a size bound, so it is checked separately). */
  interlaced?: boolean;
  /** PNG bit depth and colour type, JPEG sample precision and component count. */
  bitDepth: number;
  channels: number;
}

const u16 = (b: Uint8Array, i: number) => (b[i]! << 8) | b[i + 1]!;
const u32 = (b: Uint8Array, i: number) => ((b[i]! << 24) >>> 0) + (b[i + 1]! << 16) + (b[i + 2]! << 8) + b[i + 3]!;

function isPng(b: Uint8Array): boolean {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  return b.length >= 8 && sig.every((v, i) => b[i] === v);
}

function isJpeg(b: Uint8Array): boolean {
  return b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
}

/** 'png', 'jpeg' or undefined, from the signature. */
export function sniffImageFormat(bytes: Uint8Array): 'png' | 'jpeg' | undefined {
  return isPng(bytes) ? 'png' : isJpeg(bytes) ? 'jpeg' : undefined;
}

/** PNG channels per colour type (greyscale, RGB, palette, grey + alpha, RGBA). */
const PNG_CHANNELS: Readonly<Record<number, number>> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
/** Bit depths allowed per colour type (PNG 11.2.2, table 11.1). */
const PNG_DEPTHS: Readonly<Record<number, readonly number[]>> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };

function pngHeader(b: Uint8Array): ImageHeader {
  if (b.length < 8 + 8 + 13) throw new Error(`PNG ends after ${b.length} bytes, inside its IHDR header (needs 33)`);
  const type = String.fromCharCode(b[12]!, b[13]!, b[14]!, b[15]!);
  if (type !== 'IHDR' || u32(b, 8) !== 13) throw new Error(`PNG's first chunk must be IHDR of 13 bytes, found '${type.replace(/[^\x20-\x7e]/g, '?')}' of ${u32(b, 8)} bytes`);
  const width = u32(b, 16), height = u32(b, 20);
  const depth = b[24]!, colour = b[25]!, interlace = b[28]!;
  if (!(colour in PNG_CHANNELS) || !PNG_DEPTHS[colour]!.includes(depth)) throw new Error(`PNG has colour type ${colour} with bit depth ${depth}, which the format does not define`);
  if (b[26] !== 0 || b[27] !== 0 || interlace > 1) throw new Error(`PNG declares compression ${b[26]}, filter ${b[27]}, interlace ${interlace} (only 0, 0, 0 or 1 exist)`);
  return { format: 'png', width, height, interlaced: interlace === 1, bitDepth: depth, channels: PNG_CHANNELS[colour]! };
}

function jpegHeader(b: Uint8Array): ImageHeader {
  // Every marker segment of the file is visited (entropy-coded data after each SOS is skipped to the next
  // marker), so that a second frame header further on, which a decoder could take instead, is refused.
  let header: ImageHeader | undefined;
  let i = 2;
  while (i < b.length) {
    if (b[i] !== 0xff) throw new Error(`JPEG: expected a marker (FF xx) at byte ${i}, found ${b[i]!.toString(16).padStart(2, '0')}`);
    while (b[i] === 0xff && i < b.length) i++; // fill bytes
    if (i >= b.length) break;
    const marker = b[i++]!;
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) continue; // RSTn, TEM: no length
    if (marker === 0xd9) break; // EOI
    if (marker === 0xda && !header) throw new Error('JPEG starts its scan (SOS) before any frame header (SOF)');
    if (i + 2 > b.length) break;
    const len = u16(b, i);
    if (len < 2) throw new Error(`JPEG marker FF${marker.toString(16)} at byte ${i - 2} has length ${len} (at least 2)`);
    const sof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (sof) {
      if (header) throw new Error(`JPEG holds a second frame header (SOF) at byte ${i - 2}; one frame per file`);
      if (len < 8 || i + 8 > b.length) throw new Error(`JPEG frame header (SOF) at byte ${i - 2} is truncated`);
      const height = u16(b, i + 3), width = u16(b, i + 5), comps = b[i + 7]!;
      if (height === 0) throw new Error('JPEG frame header declares height 0 (height given later by a DNL marker is not supported)');
      header = { format: 'jpeg', width, height, bitDepth: b[i + 2]!, channels: comps };
    }
    i += len;
    if (marker === 0xda) {
      // Entropy-coded data: up to the next FF that is not a stuffed FF00 or a restart marker.
      while (i < b.length && !(b[i] === 0xff && i + 1 < b.length && b[i + 1] !== 0x00 && !(b[i + 1]! >= 0xd0 && b[i + 1]! <= 0xd7))) i++;
    }
  }
  if (!header) throw new Error(`JPEG ends after ${b.length} bytes without a frame header (SOF)`);
  return header;
}

/** The format and declared size of PNG or JPEG bytes; throws on a header it cannot read (no name: callers add it). */
export function readImageHeader(bytes: Uint8Array): ImageHeader {
  if (isPng(bytes)) return pngHeader(bytes);
  if (isJpeg(bytes)) return jpegHeader(bytes);
  throw new Error(`not a PNG or JPEG image (the file starts with ${[...bytes.slice(0, 4)].map((v) => v.toString(16).padStart(2, '0')).join(' ') || 'nothing'})`);
}

/** Throws unless `width` x `height` is within MAX_IMAGE_SIDE and MAX_IMAGE_PIXELS (and positive). */
export function checkImageSize(width: number, height: number): void {
  if (!(width >= 1 && height >= 1)) throw new Error(`image declares ${width}x${height} pixels (both must be at least 1)`);
  if (width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE || width * height > MAX_IMAGE_PIXELS) {
    throw new Error(`image declares ${width}x${height} pixels (${(width * height / 1e6).toFixed(1)} MP); the limit is ${MAX_IMAGE_SIDE} on a side ` +
      `and ${MAX_IMAGE_PIXELS} pixels (${(MAX_IMAGE_PIXELS / 1e6).toFixed(1)} MP), checked before decoding`);
  }
}
