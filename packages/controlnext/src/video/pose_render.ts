// Our renderer of pose keypoints into the control images ControlNeXt-SVD-v2 was trained on, after
// ControlNeXt-SVD-v2/dwpose/util.py draw_pose (spec 7.3):
//   canvas: black, upscaled so that its shorter side is 2160 px (then resized back to W x H, bilinear)
//   body:   17 limbs as filled ellipses (half-length x stick width 4, at the limb's angle) in the 18 OpenPose
//           colours times conf_a x conf_b, drawn when both confidences >= 0.3; then the canvas x 0.6; then
//           joints as discs of radius 4 in their colour times the confidence (confidence > 0.3)
//   hands:  20 edges as 2-px lines in HSV rainbow colours x (score_a x score_b), joints as radius-4 discs
//   face:   landmarks as radius-3 grey discs (grey = confidence)
// The repo draws with OpenCV into a buffer it then converts BGR -> RGB, so every colour listed there comes
// out with red and blue swapped; the trained model saw those colours, and so do we. Rasterisation is ours
// (pixel centres inside the shape), so edges differ from OpenCV's polygons by a pixel here and there.

import type { PosePerson, PoseFrame } from './pose_keypoints.js';
import { KEYPOINT_THRESHOLD } from './pose_keypoints.js';

/** draw_bodypose's limbSeq (1-based joint pairs); only the first 17 are drawn. */
const LIMBS: readonly (readonly [number, number])[] = [
  [2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12], [12, 13], [13, 14], [2, 1], [1, 15], [15, 17],
  [1, 16], [16, 18], [3, 17], [6, 18],
];
const COLORS: readonly (readonly [number, number, number])[] = [
  [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0], [0, 255, 0], [0, 255, 85], [0, 255, 170],
  [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255], [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85],
];
const HAND_EDGES: readonly (readonly [number, number])[] = [
  [0, 1], [1, 2], [2, 3], [3, 4], [0, 5], [5, 6], [6, 7], [7, 8], [0, 9], [9, 10], [10, 11], [11, 12], [0, 13], [13, 14], [14, 15],
  [15, 16], [0, 17], [17, 18], [18, 19], [19, 20],
];
const EPS = 0.01;
const REF_SIDE = 2160;

/** An 8-bit 3-channel canvas in the channel order OpenCV draws (swapped to RGB at the end). */
class Canvas {
  readonly data: Uint8Array;
  constructor(readonly height: number, readonly width: number) {
    this.data = new Uint8Array(height * width * 3);
  }

  private put(x: number, y: number, c: readonly number[]): void {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const o = 3 * (y * this.width + x);
    this.data[o] = c[0]!; this.data[o + 1] = c[1]!; this.data[o + 2] = c[2]!;
  }

  /** Pixels whose centre is inside the ellipse centred at (cx, cy) with semi-axes (a, b), rotated by deg. */
  ellipse(cx: number, cy: number, a: number, b: number, deg: number, c: readonly number[]): void {
    const t = (deg * Math.PI) / 180, cos = Math.cos(t), sin = Math.sin(t);
    const r = Math.ceil(Math.max(a, b)) + 1;
    const aa = Math.max(a, 0.5), bb = Math.max(b, 0.5);
    for (let y = cy - r; y <= cy + r; y++) {
      for (let x = cx - r; x <= cx + r; x++) {
        const dx = x - cx, dy = y - cy;
        const u = (dx * cos + dy * sin) / aa, v = (-dx * sin + dy * cos) / bb;
        if (u * u + v * v <= 1) this.put(x, y, c);
      }
    }
  }

  disc(cx: number, cy: number, r: number, c: readonly number[]): void {
    for (let y = cy - r; y <= cy + r; y++) for (let x = cx - r; x <= cx + r; x++) if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) this.put(x, y, c);
  }

  /** A segment `thickness` px wide. */
  line(x1: number, y1: number, x2: number, y2: number, thickness: number, c: readonly number[]): void {
    const h = thickness / 2;
    const minX = Math.floor(Math.min(x1, x2) - h), maxX = Math.ceil(Math.max(x1, x2) + h);
    const minY = Math.floor(Math.min(y1, y2) - h), maxY = Math.ceil(Math.max(y1, y2) + h);
    const dx = x2 - x1, dy = y2 - y1, len2 = dx * dx + dy * dy;
    for (let y = minY; y <= maxY; y++) {
      for (let x = minX; x <= maxX; x++) {
        const s = len2 === 0 ? 0 : Math.min(Math.max(((x - x1) * dx + (y - y1) * dy) / len2, 0), 1);
        const px = x1 + s * dx - x, py = y1 + s * dy - y;
        if (px * px + py * py <= h * h) this.put(x, y, c);
      }
    }
  }

  scale(f: number): void {
    for (let i = 0; i < this.data.length; i++) this.data[i] = Math.floor(this.data[i]! * f);
  }
}

const scaled = (c: readonly number[], k: number) => c.map((v) => Math.trunc(v * k));

function hsvToRgb(h: number, s: number, v: number): [number, number, number] {
  const i = Math.floor(h * 6), f = h * 6 - i, p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
  switch (((i % 6) + 6) % 6) {
    case 0: return [v, t, p];
    case 1: return [q, v, p];
    case 2: return [p, v, t];
    case 3: return [p, q, v];
    case 4: return [t, p, v];
    default: return [v, p, q];
  }
}

function drawBody(cv: Canvas, people: readonly PosePerson[]): void {
  const H = cv.height, W = cv.width;
  for (let i = 0; i < 17; i++) {
    for (const p of people) {
      const [j0, j1] = [LIMBS[i]![0] - 1, LIMBS[i]![1] - 1];
      const c0 = p.bodyScore[j0]!, c1 = p.bodyScore[j1]!;
      if (c0 < KEYPOINT_THRESHOLD || c1 < KEYPOINT_THRESHOLD) continue;
      const Y = [p.body[2 * j0]! * W, p.body[2 * j1]! * W]; // columns
      const X = [p.body[2 * j0 + 1]! * H, p.body[2 * j1 + 1]! * H]; // rows
      const mX = (X[0]! + X[1]!) / 2, mY = (Y[0]! + Y[1]!) / 2;
      const length = Math.hypot(X[0]! - X[1]!, Y[0]! - Y[1]!);
      const angle = (Math.atan2(X[0]! - X[1]!, Y[0]! - Y[1]!) * 180) / Math.PI;
      cv.ellipse(Math.trunc(mY), Math.trunc(mX), Math.trunc(length / 2), 4, Math.trunc(angle), scaled(COLORS[i]!, c0 * c1));
    }
  }
  cv.scale(0.6);
  for (let i = 0; i < 18; i++) {
    for (const p of people) {
      const conf = p.bodyScore[i]!;
      if (!(conf > KEYPOINT_THRESHOLD)) continue;
      cv.disc(Math.trunc(p.body[2 * i]! * W), Math.trunc(p.body[2 * i + 1]! * H), 4, scaled(COLORS[i]!, conf));
    }
  }
}

function drawHands(cv: Canvas, people: readonly PosePerson[]): void {
  const H = cv.height, W = cv.width;
  for (const p of people) {
    for (const side of [0, 1] as const) {
      const peaks = p.hands[side], scores = p.handScores[side];
      if (peaks.length === 0) continue;
      HAND_EDGES.forEach(([a, b], ie) => {
        const x1 = Math.trunc(peaks[2 * a]! * W), y1 = Math.trunc(peaks[2 * a + 1]! * H);
        const x2 = Math.trunc(peaks[2 * b]! * W), y2 = Math.trunc(peaks[2 * b + 1]! * H);
        const score = Math.trunc(scores[a]! * scores[b]! * 255);
        if (x1 > EPS && y1 > EPS && x2 > EPS && y2 > EPS) {
          cv.line(x1, y1, x2, y2, 2, hsvToRgb(ie / HAND_EDGES.length, 1, 1).map((v) => Math.trunc(v * score)));
        }
      });
      for (let i = 0; i < 21; i++) {
        const x = Math.trunc(peaks[2 * i]! * W), y = Math.trunc(peaks[2 * i + 1]! * H);
        if (x > EPS && y > EPS) cv.disc(x, y, 4, [0, 0, Math.trunc(scores[i]! * 255)]);
      }
    }
  }
}

function drawFaces(cv: Canvas, people: readonly PosePerson[]): void {
  const H = cv.height, W = cv.width;
  for (const p of people) {
    for (let i = 0; i < p.faceScore.length; i++) {
      const x = Math.trunc(p.face[2 * i]! * W), y = Math.trunc(p.face[2 * i + 1]! * H);
      const c = Math.trunc(p.faceScore[i]! * 255);
      if (x > EPS && y > EPS) cv.disc(x, y, 3, [c, c, c]);
    }
  }
}

/**
 * The pose image of one frame at height x width: RGB floats in [0, 1], interleaved [H, W, 3] (the layout
 * images.ts uses). Coordinates are the frame's normalised ones.
 */
export function renderPose(frame: PoseFrame, height: number, width: number): Float32Array {
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
    throw new Error(`renderPose: the output size must be positive integers, found ${height}x${width}`);
  }
  const sz = Math.min(height, width);
  const sr = sz !== REF_SIDE ? REF_SIDE / sz : 1;
  const cv = new Canvas(Math.trunc(height * sr), Math.trunc(width * sr));
  drawBody(cv, frame.people);
  drawHands(cv, frame.people);
  drawFaces(cv, frame.people);
  // cv2.resize(canvas, (W, H)) (bilinear, half-pixel centres), then BGR -> RGB.
  const out = new Float32Array(height * width * 3);
  const Hc = cv.height, Wc = cv.width, sy = Hc / height, sx = Wc / width;
  for (let y = 0; y < height; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), Hc - 1);
    const y0 = Math.floor(fy), y1 = Math.min(y0 + 1, Hc - 1), wy = fy - y0;
    for (let x = 0; x < width; x++) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), Wc - 1);
      const x0 = Math.floor(fx), x1 = Math.min(x0 + 1, Wc - 1), wx = fx - x0;
      for (let c = 0; c < 3; c++) {
        const at = (yy: number, xx: number) => cv.data[3 * (yy * Wc + xx) + c]!;
        const v = (at(y0, x0) * (1 - wx) + at(y0, x1) * wx) * (1 - wy) + (at(y1, x0) * (1 - wx) + at(y1, x1) * wx) * wy;
        out[3 * (y * width + x) + (2 - c)] = Math.round(v) / 255;
      }
    }
  }
  return out;
}
