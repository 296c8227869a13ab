// Images in and out, with ndarray at the library boundary: an image is an ndarray [H, W, 3] of RGB floats
// in [0, 1]. This file is browser-safe: pixels come in as RGBA bytes (a canvas's getImageData, or a
// decoder) through rgbaToImage, and go out as tensors or ndarrays. PNG/JPEG files (decode, encode,
// read, write) are Node-only and live in node/image_files.ts (the package's Node entry).

import ndarray, { type NdArray } from 'ndarray';
import { ops, type Backend, type Tensor } from '@cnx/tensor';
import type { RgbImage } from './control_types/control_type.js';

/** An RGB image as the library passes it around: [H, W, 3], values in [0, 1]. */
export type ImageArray = NdArray<Float32Array>;

// Decoding limits (MAX_IMAGE_SIDE, MAX_IMAGE_PIXELS) and the header reader that applies them before decoding.
export * from './image_header.js';

/** RGBA bytes [H, W, 4] (a canvas's ImageData.data, a decoder's output) -> [H, W, 3] floats in [0, 1] (alpha dropped, as PIL's convert('RGB') does). */
export function rgbaToImage(rgba: Uint8Array | Uint8ClampedArray, width: number, height: number): ImageArray {
  if (rgba.length !== width * height * 4) throw new Error(`rgbaToImage: expected ${width}x${height}x4 = ${width * height * 4} bytes, found ${rgba.length}`);
  const out = new Float32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    out[3 * i] = rgba[4 * i]! / 255;
    out[3 * i + 1] = rgba[4 * i + 1]! / 255;
    out[3 * i + 2] = rgba[4 * i + 2]! / 255;
  }
  return ndarray(out, [height, width, 3]);
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
