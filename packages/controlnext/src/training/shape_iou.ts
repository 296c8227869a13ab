// Control fidelity with no extra model (issue 12, the convergence experiment): segment the shape in a
// generated image by colour and measure its intersection over union with the control's mask (the filled
// shape of training/shapes.ts). Browser-safe, pure.
//
// Segmentation rule ('nearest', the default): a pixel belongs to the shape when its RGB value is strictly
// closer (Euclidean, 0-255 units) to the prompt's shape colour than to the background colour, and, when
// maxDistance is given, within maxDistance of the shape colour. A shape drawn in the wrong colour therefore
// mostly does not count, so the metric measures "the named colour where the control says", which is what
// the prompt and the control together ask for. Rule 'background' (when the prompt colour is unknown):
// a pixel belongs to the shape when it is farther than `threshold` (default 64) from the background colour.
// Non-finite values never belong to the shape. IoU = |A and B| / |A or B|; two empty masks give 1 (they
// agree), one empty mask against a non-empty one gives 0.

import type { ImageArray } from '../images.js';
import { SHAPE_COLOURS, type ShapeColour, type ShapeSample } from './shapes.js';

type Rgb = readonly [number, number, number];

/** An image to segment: the library's ndarray [H, W, 3] of floats in [0, 1], or interleaved 8-bit RGB bytes. */
export type SegmentableImage = ImageArray | { rgb: Uint8Array; height: number; width: number };

export interface ShapeSegmentationOptions {
  /** The background colour (8-bit RGB). */
  background: Rgb;
  /** The shape colour (8-bit RGB or a palette name); required by the 'nearest' rule. */
  colour?: Rgb | ShapeColour;
  /** 'nearest' (default when colour is given) or 'background' (default otherwise); see the file header. */
  rule?: 'nearest' | 'background';
  /** 'nearest': the largest distance to the shape colour still counted (default: no limit). */
  maxDistance?: number;
  /** 'background': the distance to the background beyond which a pixel is shape (default 64). */
  threshold?: number;
}

/** Height, width and an 8-bit-scale pixel reader of either image form. */
function pixels(image: SegmentableImage): { height: number; width: number; at: (i: number, c: number) => number } {
  if ('rgb' in image) {
    const { rgb, height, width } = image;
    if (rgb.length !== height * width * 3) throw new Error(`segmentShape: expected ${height}x${width}x3 = ${height * width * 3} RGB bytes, found ${rgb.length}`);
    return { height, width, at: (i, c) => rgb[3 * i + c]! };
  }
  const [H, W, C] = image.shape as [number, number, number];
  if (image.shape.length !== 3 || C !== 3) throw new Error(`segmentShape: expected an RGB image ndarray [H, W, 3], found [${image.shape.join(', ')}]`);
  return { height: H, width: W, at: (i, c) => image.get(Math.floor(i / W), i % W, c) * 255 };
}

/** The [H, W] 0/1 mask of the shape pixels of `image`, by the rule in the file header. */
export function segmentShape(image: SegmentableImage, opts: ShapeSegmentationOptions): Uint8Array {
  const { height, width, at } = pixels(image);
  const bg = opts.background;
  const colour = typeof opts.colour === 'string' ? SHAPE_COLOURS[opts.colour] : opts.colour;
  if (typeof opts.colour === 'string' && !colour) throw new Error(`segmentShape: unknown colour '${opts.colour}': expected one of ${Object.keys(SHAPE_COLOURS).join(', ')}`);
  const rule = opts.rule ?? (colour ? 'nearest' : 'background');
  if (rule !== 'nearest' && rule !== 'background') throw new Error(`segmentShape: rule must be 'nearest' or 'background', found '${String(rule)}'`);
  if (rule === 'nearest' && !colour) throw new Error(`segmentShape: rule 'nearest' needs the shape colour (option colour)`);
  const maxD2 = opts.maxDistance === undefined ? Infinity : opts.maxDistance ** 2;
  const thr2 = (opts.threshold ?? 64) ** 2;
  const mask = new Uint8Array(height * width);
  for (let i = 0; i < height * width; i++) {
    const r = at(i, 0), g = at(i, 1), b = at(i, 2);
    const dBg = (r - bg[0]) ** 2 + (g - bg[1]) ** 2 + (b - bg[2]) ** 2;
    if (rule === 'background') {
      mask[i] = dBg > thr2 ? 1 : 0; // NaN compares false: background
    } else {
      const c = colour!;
      const dShape = (r - c[0]) ** 2 + (g - c[1]) ** 2 + (b - c[2]) ** 2;
      mask[i] = dShape < dBg && dShape <= maxD2 ? 1 : 0;
    }
  }
  return mask;
}

/** Intersection over union of two 0/1 masks of the same length (non-zero = in); both empty gives 1. */
export function maskIoU(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) throw new Error(`maskIoU: masks differ in size: ${a.length} vs ${b.length} pixels`);
  let inter = 0, union = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] !== 0, y = b[i] !== 0;
    if (x && y) inter++;
    if (x || y) union++;
  }
  return union === 0 ? 1 : inter / union;
}

export interface ShapeIoUResult {
  iou: number;
  /** The segmented mask [H, W] of the image. */
  predicted: Uint8Array;
  predictedPixels: number;
  targetPixels: number;
}

/**
 * Control fidelity of a generated `image` for a shapes-dataset sample: segment by the sample's shape and
 * background colours (rule 'nearest' unless opts say otherwise) and take the IoU with the sample's mask.
 * The image must have the sample's size.
 */
export function shapeIoU(image: SegmentableImage, sample: Pick<ShapeSample, 'mask' | 'size' | 'rgb' | 'backgroundRgb'>,
  opts: Omit<ShapeSegmentationOptions, 'background' | 'colour'> = {}): ShapeIoUResult {
  const { height, width } = pixels(image);
  if (height !== sample.size || width !== sample.size) {
    throw new Error(`shapeIoU: the image is ${height}x${width} but the sample's control mask is ${sample.size}x${sample.size}`);
  }
  const predicted = segmentShape(image, { ...opts, background: sample.backgroundRgb, colour: sample.rgb });
  let predictedPixels = 0, targetPixels = 0;
  for (let i = 0; i < predicted.length; i++) { predictedPixels += predicted[i]!; targetPixels += sample.mask[i] ? 1 : 0; }
  return { iou: maskIoU(predicted, sample.mask), predicted, predictedPixels, targetPixels };
}

/** Mean, min and max IoU of generated images against their samples (same order, same count). */
export function meanShapeIoU(images: readonly SegmentableImage[], samples: ReadonlyArray<Pick<ShapeSample, 'mask' | 'size' | 'rgb' | 'backgroundRgb'>>,
  opts: Omit<ShapeSegmentationOptions, 'background' | 'colour'> = {}): { mean: number; min: number; max: number; ious: number[] } {
  if (images.length !== samples.length) throw new Error(`meanShapeIoU: ${images.length} images for ${samples.length} samples`);
  if (images.length === 0) throw new Error('meanShapeIoU: no images');
  const ious = images.map((im, k) => shapeIoU(im, samples[k]!, opts).iou);
  return { mean: ious.reduce((s, v) => s + v, 0) / ious.length, min: Math.min(...ious), max: Math.max(...ious), ious };
}
