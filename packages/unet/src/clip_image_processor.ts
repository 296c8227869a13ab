// Stable Video Diffusion's CLIP image preprocessing (diffusers v0.29.2
// pipelines/stable_video_diffusion/pipeline_stable_video_diffusion.py, `_encode_image` and
// `_resize_with_antialiasing`; the ControlNeXt-SVD pipelines copy both), for an image in [0, 1]:
//   x = image * 2 - 1
//   x = _resize_with_antialiasing(x, (S, S)):
//         sigma_a = max((in_a / S - 1) / 2, 0.001) per axis; kernel size k_a = int(max(4 sigma_a, 3)), made odd
//         separable Gaussian blur (reflect padding, x then y; kornia's filter2d), then
//         F.interpolate(mode='bicubic', align_corners=True) to (S, S)
//   x = (x + 1) / 2                                                            ('resized')
//   pixel_values = (x - mean) / std per channel (CLIPImageProcessor.normalize) ('pixel_values')
// S is the image encoder's image_size (224 for SVD's ViT-H). Pure functions over row-major float32
// arrays [B, C, H, W], computed in float64 and stored as float32: one small image per generation.

/** OpenAI CLIP normalisation, as in SVD's feature_extractor/preprocessor_config.json. */
export const CLIP_IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_IMAGE_STD = [0.26862954, 0.26130258, 0.27577711] as const;

export interface ImagePlanes {
  /** Row-major [B, C, H, W]. */
  data: Float32Array;
  shape: readonly [number, number, number, number];
}

function checkImage(what: string, x: ImagePlanes): void {
  const [B, C, H, W] = x.shape;
  if (x.shape.length !== 4 || x.data.length !== B * C * H * W || H < 1 || W < 1) {
    throw new Error(`${what}: expected an image array [B, C, H, W] with B*C*H*W values, found shape [${x.shape.join(', ')}] and ${x.data.length} values`);
  }
}

/** torch F.pad(mode='reflect') index: -1 -> 1, n -> n - 2 (the edge is not repeated). */
function reflect(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  let j = ((i % period) + period) % period;
  if (j >= n) j = period - j;
  return j;
}

/** kornia-style normalised 1-D Gaussian of odd size k (computed in float32 by diffusers; here float64). */
export function gaussianKernel1d(k: number, sigma: number): Float64Array {
  const w = new Float64Array(k);
  const s = Math.fround(sigma);
  let sum = 0;
  for (let i = 0; i < k; i++) {
    const x = i - Math.floor(k / 2) + (k % 2 === 0 ? 0.5 : 0);
    w[i] = Math.exp(-(x * x) / (2 * s * s));
    sum += w[i]!;
  }
  for (let i = 0; i < k; i++) w[i]! /= sum;
  return w;
}

/** Separable blur along one axis (0 = rows/y, 1 = columns/x) with reflect padding. */
function blurAxis(src: Float64Array, B: number, H: number, W: number, kernel: Float64Array, axis: 0 | 1): Float64Array {
  const out = new Float64Array(src.length);
  const k = kernel.length, front = Math.floor((k - 1) / 2);
  const n = axis === 0 ? H : W;
  if (front >= n) throw new Error(`resizeWithAntialiasing: a blur kernel of ${k} taps needs more than ${front} pixels along the axis, found ${n}`);
  for (let b = 0; b < B; b++) {
    const base = b * H * W;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        let acc = 0;
        for (let t = 0; t < k; t++) {
          const yy = axis === 0 ? reflect(y + t - front, H) : y;
          const xx = axis === 1 ? reflect(x + t - front, W) : x;
          acc += kernel[t]! * src[base + yy * W + xx]!;
        }
        out[base + y * W + x] = acc;
      }
    }
  }
  return out;
}

/** torch's cubic convolution weights (A = -0.75) for a fractional offset t in [0, 1). */
function cubicWeights(t: number): [number, number, number, number] {
  const A = -0.75;
  const cc1 = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1;
  const cc2 = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return [cc2(t + 1), cc1(t), cc1(1 - t), cc2(2 - t)];
}

/** F.interpolate(mode='bicubic', align_corners=True) of planes [P, H, W] to [P, Ho, Wo]; border taps clamp. */
function bicubicAlignCorners(src: Float64Array, P: number, H: number, W: number, Ho: number, Wo: number): Float64Array {
  const out = new Float64Array(P * Ho * Wo);
  const sy = Ho > 1 ? (H - 1) / (Ho - 1) : 0, sx = Wo > 1 ? (W - 1) / (Wo - 1) : 0;
  const clampI = (i: number, n: number) => Math.min(Math.max(i, 0), n - 1);
  for (let p = 0; p < P; p++) {
    const base = p * H * W;
    for (let oy = 0; oy < Ho; oy++) {
      const fy = oy * sy, y0 = Math.floor(fy), wy = cubicWeights(fy - y0);
      for (let ox = 0; ox < Wo; ox++) {
        const fx = ox * sx, x0 = Math.floor(fx), wx = cubicWeights(fx - x0);
        let acc = 0;
        for (let j = 0; j < 4; j++) {
          const row = base + clampI(y0 - 1 + j, H) * W;
          let r = 0;
          for (let i = 0; i < 4; i++) r += wx[i]! * src[row + clampI(x0 - 1 + i, W)]!;
          acc += wy[j]! * r;
        }
        out[p * Ho * Wo + oy * Wo + ox] = acc;
      }
    }
  }
  return out;
}

/** diffusers `_resize_with_antialiasing(x, (Ho, Wo))` (bicubic, align_corners=True). */
export function resizeWithAntialiasing(x: ImagePlanes, size: readonly [number, number]): ImagePlanes {
  checkImage('resizeWithAntialiasing', x);
  const [B, C, H, W] = x.shape;
  const [Ho, Wo] = size;
  const sigma = [Math.max((H / Ho - 1) / 2, 0.001), Math.max((W / Wo - 1) / 2, 0.001)];
  const ks = sigma.map((s) => {
    const k = Math.trunc(Math.max(2 * 2 * s, 3));
    return k % 2 === 0 ? k + 1 : k;
  });
  let planes: Float64Array = Float64Array.from(x.data);
  planes = blurAxis(planes, B * C, H, W, gaussianKernel1d(ks[1]!, sigma[1]!), 1);
  planes = blurAxis(planes, B * C, H, W, gaussianKernel1d(ks[0]!, sigma[0]!), 0);
  const out = bicubicAlignCorners(planes, B * C, H, W, Ho, Wo);
  return { data: Float32Array.from(out), shape: [B, C, Ho, Wo] };
}

export interface ClipPreprocessed {
  /** After the antialiased resize, back in [0, 1] (may overshoot slightly: bicubic). */
  resized: ImagePlanes;
  /** (resized - mean) / std per channel: the image encoder's input. */
  pixelValues: ImagePlanes;
}

/**
 * SVD's _encode_image preprocessing for an image [B, 3, H, W] in [0, 1] (see the header), to the image
 * encoder's size S (its config.image_size).
 */
export function clipImagePreprocess(
  image: ImagePlanes, size: number, mean: readonly number[] = CLIP_IMAGE_MEAN, std: readonly number[] = CLIP_IMAGE_STD,
): ClipPreprocessed {
  checkImage('clipImagePreprocess', image);
  const [B, C] = image.shape;
  if (mean.length !== C || std.length !== C) {
    throw new Error(`clipImagePreprocess: ${C} channels need ${C} mean and std values, found ${mean.length} and ${std.length}`);
  }
  const signed = { data: image.data.map((v) => 2 * v - 1), shape: image.shape };
  const r = resizeWithAntialiasing(signed, [size, size]);
  const resized = { data: r.data.map((v) => (v + 1) / 2), shape: r.shape };
  const plane = size * size;
  const px = new Float32Array(resized.data.length);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      // numpy float32: mean/std cast to the image dtype first.
      const m = Math.fround(mean[c]!), s = Math.fround(std[c]!);
      const off = (b * C + c) * plane;
      for (let i = 0; i < plane; i++) px[off + i] = (resized.data[off + i]! - m) / s;
    }
  }
  return { resized, pixelValues: { data: px, shape: resized.shape } };
}
