// The convergence experiment's fixed, non-learned "autoencoder" (issue 12, design option (a)): the
// diffusion runs on a downsampled copy of the image itself, so no VAE has to be trained (a random tiny VAE
// cannot encode or decode pictures). The experiment compares control injection methods, not VAEs.
//
// encode  image [B, 3, S, S] in [-1, 1]
//           -> average pool to [B, 3, S/4, S/4]                         (the "pixel grid", G = S/4)
//           -> space-to-depth 2x2: [B, 3, G/2, 2, G/2, 2] -> [B, 3*2*2, G/2, G/2] = [B, 12, S/8, S/8]
//         channel c*4 + dy*2 + dx of latent (y, x) = grid pixel (2y + dy, 2x + dx) of colour c.
// decode  the inverse space-to-depth to the G x G grid, then bilinear upsampling (half-pixel centres, as
//         torch's interpolate(align_corners=False)) back to S x S, clamped to [-1, 1].
//
// Why space-to-depth: the light ControlNeXt module takes its control image at 8x the latent size (three
// stride-2 convs), so S = 64 pixels means 8 x 8 latents, whose UNet step is what two shared CPU cores can
// train in minutes; folding a 16 x 16 pixel grid into 12 channels keeps the UNet at 8 x 8 while shapes are
// drawn on 16 x 16 pixels (an 8 x 8 grid cannot tell a star from a circle). Nothing is learned and the
// codec is exact on the grid; its only loss is the 4x4 averaging, whose effect on the fidelity metric is
// measured (ceilingIoU in the results: the IoU of decode(encode(target)) against the mask).

import { ops, type Tensor } from '@cnx/tensor';
import type { DiagonalGaussian } from '@cnx/unet';
import type { LatentEncoder } from '@cnx/controlnext';

/** Image pixels per grid pixel (average pooling) and grid pixels per latent pixel (space-to-depth). */
export const POOL = 4;
export const FOLD = 2;
/** Latent channels: 3 colours x FOLD x FOLD. */
export const LATENT_CHANNELS = 3 * FOLD * FOLD;
/** Image pixels per latent pixel: the light module's stride (8). */
export const PIXELS_PER_LATENT = POOL * FOLD;

function checkImageSize(size: number): void {
  if (!Number.isInteger(size) || size < PIXELS_PER_LATENT || size % PIXELS_PER_LATENT !== 0) {
    throw new Error(`pixel latents: the image size must be a positive multiple of ${PIXELS_PER_LATENT}, found ${size}`);
  }
}

/** [B, 3, S, S] in [-1, 1] -> latents [B, 12, S/8, S/8] (on the backend, through ops). */
export function encodePixelLatents(image: Tensor): Tensor {
  const [B, C, H, W] = image.shape as [number, number, number, number];
  if (image.rank !== 4 || C !== 3 || H !== W) throw new Error(`encodePixelLatents: expected an image [B, 3, S, S], found [${image.shape.join(', ')}]`);
  checkImageSize(H);
  const G = H / POOL, h = G / FOLD;
  const grid = ops.adaptiveAvgPool2d(image, [G, G]); // [B, 3, G, G]
  const split = grid.reshape([B, 3, h, FOLD, h, FOLD]); // [B, c, y, dy, x, dx]
  const permuted = split.permute([0, 1, 3, 5, 2, 4]); // [B, c, dy, dx, y, x] (a view)
  const moved = permuted.contiguous();
  const out = moved.reshape([B, LATENT_CHANNELS, h, h]);
  for (const t of [grid, split, permuted, moved]) t.dispose();
  return out;
}

/**
 * The codec as the LatentEncoder TrainingDataCache expects: a posterior with std 0 (the latents are the
 * encoding itself, no sampling) and scaling factor 1.
 */
export const pixelLatentEncoder: LatentEncoder = {
  scalingFactor: 1,
  encode(image: Tensor): DiagonalGaussian {
    const mean = encodePixelLatents(image);
    const logvar = ops.scale(mean, 0);
    const std = ops.scale(mean, 0);
    return { mean, logvar, std };
  },
};

/**
 * Host decode of latents [B, 12, h, h] (values as read back) to B interleaved 8-bit RGB images of
 * 8h x 8h pixels (bilinear from the 2h x 2h grid, [-1, 1] -> [0, 255]).
 */
export function decodePixelLatents(latents: Float32Array, batch: number, latentSize: number): Uint8Array[] {
  const h = latentSize, G = h * FOLD, S = G * POOL, per = LATENT_CHANNELS * h * h;
  if (latents.length !== batch * per) throw new Error(`decodePixelLatents: expected ${batch} x ${LATENT_CHANNELS} x ${h} x ${h} = ${batch * per} values, found ${latents.length}`);
  const out: Uint8Array[] = [];
  const grid = new Float32Array(3 * G * G);
  for (let b = 0; b < batch; b++) {
    const base = b * per;
    for (let c = 0; c < 3; c++) {
      for (let dy = 0; dy < FOLD; dy++) {
        for (let dx = 0; dx < FOLD; dx++) {
          const ch = c * FOLD * FOLD + dy * FOLD + dx;
          for (let y = 0; y < h; y++) {
            for (let x = 0; x < h; x++) grid[c * G * G + (y * FOLD + dy) * G + x * FOLD + dx] = latents[base + ch * h * h + y * h + x]!;
          }
        }
      }
    }
    out.push(upsampleBilinear(grid, G, S));
  }
  return out;
}

/** Planar [3, G, G] in [-1, 1] -> interleaved bytes [S, S, 3], bilinear with half-pixel centres (edges clamped). */
function upsampleBilinear(grid: Float32Array, G: number, S: number): Uint8Array {
  const out = new Uint8Array(S * S * 3);
  const scale = G / S;
  for (let Y = 0; Y < S; Y++) {
    const sy = Math.min(Math.max((Y + 0.5) * scale - 0.5, 0), G - 1);
    const y0 = Math.floor(sy), y1 = Math.min(y0 + 1, G - 1), fy = sy - y0;
    for (let X = 0; X < S; X++) {
      const sx = Math.min(Math.max((X + 0.5) * scale - 0.5, 0), G - 1);
      const x0 = Math.floor(sx), x1 = Math.min(x0 + 1, G - 1), fx = sx - x0;
      for (let c = 0; c < 3; c++) {
        const p = c * G * G;
        const v = (1 - fy) * ((1 - fx) * grid[p + y0 * G + x0]! + fx * grid[p + y0 * G + x1]!) + fy * ((1 - fx) * grid[p + y1 * G + x0]! + fx * grid[p + y1 * G + x1]!);
        const u = Number.isFinite(v) ? Math.min(Math.max(v, -1), 1) : -1;
        out[(Y * S + X) * 3 + c] = Math.round((u * 0.5 + 0.5) * 255);
      }
    }
  }
  return out;
}
