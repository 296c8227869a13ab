// Canny edge detection with OpenCV's meaning of the parameters (cv2.Canny(gray8, low, high), the
// preprocessing of the ControlNeXt-SDXL canny example, spec 5.3):
//  - thresholds are on the gradient magnitude of the 0..255 grey image computed with 3x3 Sobel
//    (BORDER_REPLICATE, as OpenCV's canny.cpp calls Sobel), L1 norm |dx| + |dy| unless l2Gradient
//    (then sqrt(dx^2 + dy^2));
//  - non-maximum suppression in 4 direction sectors split at tan(22.5 deg) and tan(67.5 deg), with
//    OpenCV's strict/non-strict neighbour comparisons;
//  - hysteresis: pixels above `high` are edges, pixels above `low` that survived suppression are edges
//    when 8-connected to an edge.
// cv2.Canny does not blur; `sigma` > 0 adds a Gaussian blur first (cv2.GaussianBlur's kernel size rule
// and BORDER_REFLECT_101), the usual Canny step 1.
//
// The convolutions (blur, Sobel) run on our kernels (ops.conv2d) in gradientsOnBackend; gradientsCpu is
// the plain-loop reference they are tested against. Suppression and hysteresis are sequential
// (flood fill) and run on the CPU.

import { ops, type Backend, type Tensor } from '@cnx/tensor';

export interface CannyOptions {
  /** Lower hysteresis threshold, 0..255 grey units (OpenCV threshold1). */
  low: number;
  /** Upper threshold (threshold2); swapped with low when smaller, as OpenCV does. */
  high: number;
  l2Gradient?: boolean;
  /** Gaussian blur sigma before Sobel; 0 (default) = no blur, exactly cv2.Canny. */
  sigma?: number;
}

export interface Gradients {
  dx: Float32Array;
  dy: Float32Array;
  height: number;
  width: number;
}

/** OpenCV getGaussianKernel for 8-bit images: ksize = round(6 sigma + 1) | 1, normalised to sum 1. */
export function gaussianKernel1d(sigma: number): Float32Array {
  if (!(sigma > 0)) throw new Error(`gaussianKernel1d: expected sigma > 0, found ${sigma}`);
  const ksize = Math.round(sigma * 6 + 1) | 1;
  const r = (ksize - 1) / 2;
  const k = new Float32Array(ksize);
  let s = 0;
  for (let i = 0; i < ksize; i++) {
    k[i] = Math.exp(-((i - r) ** 2) / (2 * sigma * sigma));
    s += k[i]!;
  }
  for (let i = 0; i < ksize; i++) k[i] = k[i]! / s;
  return k;
}

/** OpenCV border index maps: BORDER_REPLICATE and BORDER_REFLECT_101 (gfedcb|abcdefgh|gfedcba). */
function borderIndex(i: number, n: number, mode: 'replicate' | 'reflect101'): number {
  if (mode === 'replicate') return Math.min(Math.max(i, 0), n - 1);
  if (n === 1) return 0;
  let j = i;
  while (j < 0 || j >= n) j = j < 0 ? -j : 2 * (n - 1) - j;
  return j;
}

const SOBEL_X = [-1, 0, 1, -2, 0, 2, -1, 0, 1];
const SOBEL_Y = [-1, -2, -1, 0, 0, 0, 1, 2, 1];

/** Reference: blur (optional) and Sobel dx, dy of a grey image [H, W] in 0..255, plain loops. */
export function gradientsCpu(gray: Float32Array, height: number, width: number, sigma = 0): Gradients {
  let src = gray;
  if (sigma > 0) {
    const k = gaussianKernel1d(sigma);
    const r = (k.length - 1) / 2;
    const tmp = new Float32Array(src.length);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        let s = 0;
        for (let i = -r; i <= r; i++) s += k[i + r]! * src[y * width + borderIndex(x + i, width, 'reflect101')]!;
        tmp[y * width + x] = s;
      }
    }
    const out = new Float32Array(src.length);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        let s = 0;
        for (let i = -r; i <= r; i++) s += k[i + r]! * tmp[borderIndex(y + i, height, 'reflect101') * width + x]!;
        out[y * width + x] = s;
      }
    }
    src = out;
  }
  const dx = new Float32Array(src.length), dy = new Float32Array(src.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let sx = 0, sy = 0;
      for (let j = -1; j <= 1; j++) {
        for (let i = -1; i <= 1; i++) {
          const v = src[borderIndex(y + j, height, 'replicate') * width + borderIndex(x + i, width, 'replicate')]!;
          sx += SOBEL_X[(j + 1) * 3 + i + 1]! * v;
          sy += SOBEL_Y[(j + 1) * 3 + i + 1]! * v;
        }
      }
      dx[y * width + x] = sx;
      dy[y * width + x] = sy;
    }
  }
  return { dx, dy, height, width };
}

/** Pad x [N, C, H, W] along `axis` (2 or 3) by `r` with an OpenCV border rule, as views + one concat. */
function padBorder(x: Tensor, axis: 2 | 3, r: number, mode: 'replicate' | 'reflect101'): Tensor {
  const n = x.shape[axis]!;
  const parts: Tensor[] = [];
  for (let i = -r; i < 0; i++) parts.push(x.slice(axis, borderIndex(i, n, mode), borderIndex(i, n, mode) + 1));
  parts.push(x);
  for (let i = n; i < n + r; i++) parts.push(x.slice(axis, borderIndex(i, n, mode), borderIndex(i, n, mode) + 1));
  const out = ops.concat(parts, axis);
  parts.forEach((p) => { if (p !== x) p.dispose(); });
  return out;
}

/** Blur (optional) and Sobel on the backend's kernels: ops.conv2d with explicit border padding. */
export async function gradientsOnBackend(backend: Backend, gray: Float32Array, height: number, width: number, sigma = 0): Promise<Gradients> {
  const tmp: Tensor[] = [];
  try {
    let x = backend.fromRaw(gray, [1, 1, height, width]);
    tmp.push(x);
    if (sigma > 0) {
      const k = gaussianKernel1d(sigma);
      const r = (k.length - 1) / 2;
      // Separable: a [1, 1, 1, k] row pass then a [1, 1, k, 1] column pass, reflect-101 borders.
      const px = padBorder(x, 3, r, 'reflect101'); tmp.push(px);
      const wRow = backend.fromRaw(k, [1, 1, 1, k.length]); tmp.push(wRow);
      const bx = ops.conv2d(px, wRow, undefined); tmp.push(bx);
      const py = padBorder(bx, 2, r, 'reflect101'); tmp.push(py);
      const wCol = backend.fromRaw(k, [1, 1, k.length, 1]); tmp.push(wCol);
      x = ops.conv2d(py, wCol, undefined); tmp.push(x);
    }
    const p1 = padBorder(x, 2, 1, 'replicate'); tmp.push(p1);
    const p2 = padBorder(p1, 3, 1, 'replicate'); tmp.push(p2);
    // One conv with two output channels: [dx, dy].
    const w = backend.fromRaw(new Float32Array([...SOBEL_X, ...SOBEL_Y]), [2, 1, 3, 3]); tmp.push(w);
    const g = ops.conv2d(p2, w, undefined); tmp.push(g);
    const data = await g.data();
    const hw = height * width;
    return { dx: data.slice(0, hw), dy: data.slice(hw, 2 * hw), height, width };
  } finally {
    tmp.forEach((t) => t.dispose());
  }
}

/** tan(22.5 deg) (OpenCV's TG22 before its fixed-point scaling). */
const TAN22 = 0.4142135623730950488016887242097;

/**
 * Non-maximum suppression and hysteresis (OpenCV canny.cpp). Returns the edge map [H, W] with 1 on
 * edges and 0 elsewhere.
 */
export function cannyFromGradients(g: Gradients, opts: Pick<CannyOptions, 'low' | 'high' | 'l2Gradient'>): Uint8Array {
  const { dx, dy, height: H, width: W } = g;
  let lowT = opts.low, highT = opts.high;
  if (lowT > highT) [lowT, highT] = [highT, lowT];
  const l2 = opts.l2Gradient ?? false;
  // OpenCV: L1 thresholds are floored ints compared with int magnitudes; L2 compares squares in float.
  const low = l2 ? lowT * lowT : Math.floor(lowT);
  const high = l2 ? highT * highT : Math.floor(highT);
  const mag = new Float64Array((H + 2) * (W + 2)); // one zero border, as OpenCV's magnitude buffer
  const at = (y: number, x: number) => (y + 1) * (W + 2) + (x + 1);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const a = dx[y * W + x]!, b = dy[y * W + x]!;
      mag[at(y, x)] = l2 ? a * a + b * b : Math.abs(a) + Math.abs(b);
    }
  }
  // 0: not an edge, 1: weak candidate, 2: strong edge.
  const state = new Uint8Array(H * W);
  const stack: number[] = [];
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const m = mag[at(y, x)]!;
      if (!(m > low)) continue;
      const xs = dx[y * W + x]!, ys = dy[y * W + x]!;
      const ax = Math.abs(xs), ay = Math.abs(ys);
      const tg22x = ax * TAN22;
      let keep: boolean;
      if (ay < tg22x) {
        keep = m > mag[at(y, x - 1)]! && m >= mag[at(y, x + 1)]!;
      } else {
        const tg67x = tg22x + 2 * ax;
        if (ay > tg67x) {
          keep = m > mag[at(y - 1, x)]! && m >= mag[at(y + 1, x)]!;
        } else {
          const s = xs * ys < 0 ? -1 : 1;
          keep = m > mag[at(y - 1, x - s)]! && m > mag[at(y + 1, x + s)]!;
        }
      }
      if (!keep) continue;
      if (m > high) {
        state[y * W + x] = 2;
        stack.push(y * W + x);
      } else state[y * W + x] = 1;
    }
  }
  while (stack.length) {
    const i = stack.pop()!;
    const y = Math.floor(i / W), x = i % W;
    for (let j = -1; j <= 1; j++) {
      for (let k = -1; k <= 1; k++) {
        const yy = y + j, xx = x + k;
        if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
        const n = yy * W + xx;
        if (state[n] === 1) {
          state[n] = 2;
          stack.push(n);
        }
      }
    }
  }
  const edges = new Uint8Array(H * W);
  for (let i = 0; i < H * W; i++) edges[i] = state[i] === 2 ? 1 : 0;
  return edges;
}

/** Grey [H, W] 0..255 as OpenCV's RGB2GRAY gives it for an 8-bit image: rounded BT.601 luma. */
export function gray8(rgb01: Float32Array, height: number, width: number): Float32Array {
  const n = height * width;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const r = Math.round(rgb01[3 * i]! * 255), g = Math.round(rgb01[3 * i + 1]! * 255), b = Math.round(rgb01[3 * i + 2]! * 255);
    out[i] = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
  }
  return out;
}

/**
 * The automatic thresholds of ControlNeXt-SDXL's canny preprocessing (utils/tools.py, spec 5.3):
 * v = median grey level, low = int(max(0, 0.67 v)), high = int(min(255, 1.33 v)).
 */
export function medianThresholds(gray: Float32Array): { low: number; high: number } {
  const s = Float32Array.from(gray).sort();
  const n = s.length;
  const v = n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2; // np.median
  return { low: Math.trunc(Math.max(0, 0.67 * v)), high: Math.trunc(Math.min(255, 1.33 * v)) };
}

/** Canny on the backend's kernels (blur + Sobel) and the CPU (suppression + hysteresis). */
export async function canny(backend: Backend, gray: Float32Array, height: number, width: number, opts: CannyOptions): Promise<Uint8Array> {
  const g = await gradientsOnBackend(backend, gray, height, width, opts.sigma ?? 0);
  return cannyFromGradients(g, opts);
}

/** The same on the plain-loop reference. */
export function cannyCpu(gray: Float32Array, height: number, width: number, opts: CannyOptions): Uint8Array {
  return cannyFromGradients(gradientsCpu(gray, height, width, opts.sigma ?? 0), opts);
}
