// A deterministic synthetic dataset for training ControlNeXt with nothing downloaded (issue 12): one filled
// shape of a named colour on a background. The control image is the shape's outline (white on black, as
// fill50k's source images are circle outlines) or its filled mask; the target is the filled shape; the
// prompt names colour and shape ("a red circle"). Sample i of seed s depends only on (s, i, options), so
// any sample can be produced alone, in any order, on any machine (browser-safe, pure: no Node import).
//
// Rasterisation rules (exact, no anti-aliasing):
// - the image is size x size pixels; pixel (x, y) (column x, row y, origin top left) is sampled at its
//   centre (x + 0.5, y + 0.5); it is inside the shape when its centre is inside, boundary included;
// - circle:   |p - c| <= r;
// - square:   |px - cx| <= r and |py - cy| <= r (axis-aligned, side 2r);
// - diamond:  |px - cx| + |py - cy| <= r (the square turned 45 degrees, corners at distance r);
// - triangle: equilateral, pointing up, inscribed in the circle of radius r: vertices (cx, cy - r) and
//   (cx -+ r*sqrt(3)/2, cy + r/2); inside = on the inner side of (or on) all three edges;
// - star:     five-pointed, outer radius r, inner radius r * STAR_INNER_RATIO (the regular pentagram's
//   0.381966), first point straight up; the 10-vertex outline is a simple polygon, inside by the
//   crossing-number rule (edges half-open in y, so a centre exactly on an edge may fall either side);
// - mask = 1 where inside; outline = mask pixels within `outlineWidth` 4-neighbour erosion steps of an
//   outside pixel (mask minus its erosion repeated outlineWidth times; pixels beyond the image count
//   as outside);
// - target = shape colour where mask is 1, background colour elsewhere; control = (255, 255, 255) on the
//   outline (or on the mask when control is 'mask'), (0, 0, 0) elsewhere.
// Random draws, in this order, from a xorshift32 stream seeded by hash(seed, index): shape, colour,
// background colour (only when background is 'palette'), radius, centre x, centre y. The radius is
// uniform in [radiusRange[0], radiusRange[1]] * size; the centre is uniform in [r + 1, size - r - 1] on
// each axis (the shape stays inside the image, leaving a 1-pixel border), clamped to the image centre
// when the shape is too large for that.

import ndarray from 'ndarray';
import type { ImageArray } from '../images.js';

/** The shapes the generator draws. */
export const SHAPE_KINDS = ['circle', 'square', 'triangle', 'diamond', 'star'] as const;
export type ShapeKind = (typeof SHAPE_KINDS)[number];

/** Named colours (8-bit RGB), chosen far apart so that a shape's colour is recognisable in a generated image. */
export const SHAPE_COLOURS = {
  red: [230, 25, 25],
  green: [25, 180, 25],
  blue: [25, 50, 230],
  yellow: [240, 220, 20],
  orange: [250, 130, 10],
  purple: [140, 30, 200],
  cyan: [20, 210, 220],
  white: [245, 245, 245],
} as const satisfies Record<string, readonly [number, number, number]>;
export type ShapeColour = keyof typeof SHAPE_COLOURS;
export const SHAPE_COLOUR_NAMES = Object.keys(SHAPE_COLOURS) as ShapeColour[];

/** Background colours: fixed ones, or 'palette' (a palette colour other than the shape's, named in the prompt). */
export const SHAPE_BACKGROUNDS = {
  black: [0, 0, 0],
  grey: [128, 128, 128],
  white: [255, 255, 255],
} as const satisfies Record<string, readonly [number, number, number]>;
export type ShapeBackground = keyof typeof SHAPE_BACKGROUNDS | 'palette';

/** Inner radius of the star over its outer radius: the regular pentagram's (3 - sqrt(5)) / 2. */
export const STAR_INNER_RATIO = (3 - Math.sqrt(5)) / 2;

export interface ShapeDatasetOptions {
  /** Image side in pixels (square images), e.g. 16, 32, 64, 128. At least 8. */
  size: number;
  /** Dataset seed: sample i of seed s is always the same image. */
  seed: number;
  /** Control image: the shape's outline (default, as fill50k) or its filled mask, white on black. */
  control?: 'outline' | 'mask';
  /** Shapes drawn from (default all of SHAPE_KINDS). */
  shapes?: readonly ShapeKind[];
  /** Colours drawn from (default all of SHAPE_COLOURS except white when the background is white). */
  colours?: readonly ShapeColour[];
  /** Background (default 'black'). */
  background?: ShapeBackground;
  /** Radius range as fractions of the size (default [0.2, 0.4]). */
  radiusRange?: readonly [number, number];
  /** Outline thickness in pixels (default max(1, round(size / 64))). */
  outlineWidth?: number;
}

/** One sample: images are row-major uint8, RGB interleaved [H, W, 3]; mask [H, W] of 0/1. */
export interface ShapeSample {
  index: number;
  seed: number;
  size: number;
  prompt: string;
  shape: ShapeKind;
  colour: ShapeColour;
  /** The shape colour's RGB. */
  rgb: readonly [number, number, number];
  /** The background's name ('black', 'grey', 'white' or a palette colour's name) and RGB. */
  background: string;
  backgroundRgb: readonly [number, number, number];
  /** Geometry in pixel units (centre x, centre y, radius), as drawn. */
  cx: number;
  cy: number;
  radius: number;
  /** [H, W, 3] white on black: the outline or the mask, per options.control. */
  control: Uint8Array;
  /** [H, W, 3] the filled shape on the background. */
  target: Uint8Array;
  /** [H, W] 1 inside the shape, 0 outside. */
  mask: Uint8Array;
}

/** FNV-1a over the 8 bytes of (seed, index), then a murmur finaliser: independent streams per sample. */
function sampleSeed(seed: number, index: number): number {
  let h = 0x811c9dc5;
  for (const v of [seed >>> 0, index >>> 0]) {
    for (let k = 0; k < 4; k++) {
      h ^= (v >>> (8 * k)) & 0xff;
      h = Math.imul(h, 0x01000193);
    }
  }
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) || 0x9e3779b9;
}

/**
 * A small seeded uniform generator (xorshift32): next() in [0, 1). Deterministic across platforms (only
 * 32-bit integer ops). Exported for the other training helpers that need seeded choices.
 */
export class SeededRandom {
  private s: number;
  constructor(seed: number) {
    this.s = (seed >>> 0) || 0x9e3779b9;
    // A few rounds so that nearby seeds do not start with nearby outputs.
    for (let i = 0; i < 4; i++) this.next();
  }
  /** Uniform in [0, 1) with 32 random bits. */
  next(): number {
    let s = this.s;
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
    this.s = s >>> 0;
    return this.s / 4294967296;
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.min(Math.floor(this.next() * n), n - 1);
  }
  /** Uniform in [a, b]. */
  uniform(a: number, b: number): number {
    return a + (b - a) * this.next();
  }
  /** Fisher-Yates shuffle of `items`, in place; returns it. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }
}

/** The RNG stream of sample `index` of dataset `seed` (also used to seed per-sample choices elsewhere). */
export function sampleRandom(seed: number, index: number): SeededRandom {
  return new SeededRandom(sampleSeed(seed, index));
}

function starVertices(cx: number, cy: number, r: number): Array<[number, number]> {
  const v: Array<[number, number]> = [];
  for (let k = 0; k < 10; k++) {
    const rr = k % 2 === 0 ? r : r * STAR_INNER_RATIO;
    const a = -Math.PI / 2 + (k * Math.PI) / 5; // first point straight up (y grows downwards)
    v.push([cx + rr * Math.cos(a), cy + rr * Math.sin(a)]);
  }
  return v;
}

/** Crossing-number point-in-polygon (edges half-open in y). */
function insidePolygon(px: number, py: number, v: ReadonlyArray<readonly [number, number]>): boolean {
  let inside = false;
  for (let i = 0, j = v.length - 1; i < v.length; j = i++) {
    const [xi, yi] = v[i]!, [xj, yj] = v[j]!;
    if ((yi > py) !== (yj > py) && px < ((xj - xi) * (py - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/**
 * The inside test of `shape` centred at (cx, cy) with radius r, as a function of a point (pixel units);
 * the rules are in the file header. Built once per shape (the star's vertices, the triangle's corners).
 */
export function shapePredicate(shape: ShapeKind, cx: number, cy: number, r: number): (px: number, py: number) => boolean {
  switch (shape) {
    case 'circle': return (px, py) => (px - cx) ** 2 + (py - cy) ** 2 <= r * r;
    case 'square': return (px, py) => Math.abs(px - cx) <= r && Math.abs(py - cy) <= r;
    case 'diamond': return (px, py) => Math.abs(px - cx) + Math.abs(py - cy) <= r;
    case 'triangle': {
      // Edge functions of the triangle (apex up, y down); a point is inside when all three have one sign (or are 0).
      const h = (r * Math.sqrt(3)) / 2;
      const ax = cx, ay = cy - r, bx = cx - h, by = cy + r / 2, qx = cx + h, qy = cy + r / 2;
      return (px, py) => {
        const e0 = (bx - ax) * (py - ay) - (by - ay) * (px - ax);
        const e1 = (qx - bx) * (py - by) - (qy - by) * (px - bx);
        const e2 = (ax - qx) * (py - qy) - (ay - qy) * (px - qx);
        return (e0 <= 0 && e1 <= 0 && e2 <= 0) || (e0 >= 0 && e1 >= 0 && e2 >= 0);
      };
    }
    case 'star': {
      const v = starVertices(cx, cy, r);
      return (px, py) => insidePolygon(px, py, v);
    }
    default: throw new Error(`unknown shape '${String(shape)}': expected one of ${SHAPE_KINDS.join(', ')}`);
  }
}

/** Whether the point (px, py) (pixel units) is inside `shape` centred at (cx, cy) with radius r; the rules are in the file header. */
export function insideShape(shape: ShapeKind, px: number, py: number, cx: number, cy: number, r: number): boolean {
  return shapePredicate(shape, cx, cy, r)(px, py);
}

/** The [size, size] 0/1 mask of a shape (pixel centres, boundary included). */
export function rasteriseShape(shape: ShapeKind, cx: number, cy: number, r: number, size: number): Uint8Array {
  const mask = new Uint8Array(size * size);
  const inside = shapePredicate(shape, cx, cy, r);
  // Every shape lies within its circumscribed square: test only the pixels whose centres can be inside.
  const x0 = Math.max(0, Math.floor(cx - r - 1)), x1 = Math.min(size - 1, Math.ceil(cx + r + 1));
  const y0 = Math.max(0, Math.floor(cy - r - 1)), y1 = Math.min(size - 1, Math.ceil(cy + r + 1));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) mask[y * size + x] = inside(x + 0.5, y + 0.5) ? 1 : 0;
  }
  return mask;
}

/** Mask pixels within `width` 4-neighbour erosion steps of the outside (outside the image counts as outside). */
export function maskOutline(mask: Uint8Array, height: number, width: number, thickness = 1): Uint8Array {
  if (mask.length !== height * width) throw new Error(`maskOutline: expected a ${height}x${width} mask (${height * width} values), found ${mask.length}`);
  if (!Number.isInteger(thickness) || thickness < 1) throw new Error(`maskOutline: thickness must be an integer >= 1, found ${thickness}`);
  let cur = mask;
  for (let t = 0; t < thickness; t++) {
    const next = new Uint8Array(height * width);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        next[i] = cur[i] && y > 0 && cur[i - width] && y < height - 1 && cur[i + width] && x > 0 && cur[i - 1] && x < width - 1 && cur[i + 1] ? 1 : 0;
      }
    }
    cur = next;
  }
  const out = new Uint8Array(height * width);
  for (let i = 0; i < out.length; i++) out[i] = mask[i] && !cur[i] ? 1 : 0;
  return out;
}

function checkOptions(opts: ShapeDatasetOptions): Required<Omit<ShapeDatasetOptions, 'seed' | 'size'>> {
  const { size, seed } = opts;
  if (!Number.isInteger(size) || size < 8 || size > 4096) throw new Error(`shapes dataset: size must be an integer in [8, 4096], found ${size}`);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`shapes dataset: seed must be an integer in [0, 2^32), found ${seed}`);
  const control = opts.control ?? 'outline';
  if (control !== 'outline' && control !== 'mask') throw new Error(`shapes dataset: control must be 'outline' or 'mask', found '${String(control)}'`);
  const background = opts.background ?? 'black';
  if (background !== 'palette' && !(background in SHAPE_BACKGROUNDS)) {
    throw new Error(`shapes dataset: background must be one of ${[...Object.keys(SHAPE_BACKGROUNDS), 'palette'].join(', ')}, found '${String(background)}'`);
  }
  const shapes = opts.shapes ?? SHAPE_KINDS;
  if (shapes.length === 0) throw new Error('shapes dataset: shapes is empty: expected at least one of ' + SHAPE_KINDS.join(', '));
  for (const s of shapes) if (!SHAPE_KINDS.includes(s)) throw new Error(`shapes dataset: unknown shape '${String(s)}': expected one of ${SHAPE_KINDS.join(', ')}`);
  const colours = opts.colours ?? SHAPE_COLOUR_NAMES.filter((c) => !(background === 'white' && c === 'white'));
  if (colours.length === 0) throw new Error('shapes dataset: colours is empty: expected at least one of ' + SHAPE_COLOUR_NAMES.join(', '));
  for (const c of colours) if (!(c in SHAPE_COLOURS)) throw new Error(`shapes dataset: unknown colour '${String(c)}': expected one of ${SHAPE_COLOUR_NAMES.join(', ')}`);
  if (background === 'palette' && colours.length < 2) throw new Error(`shapes dataset: background 'palette' needs at least 2 colours, found ${colours.length}`);
  const radiusRange = opts.radiusRange ?? [0.2, 0.4];
  const [r0, r1] = radiusRange;
  if (!(r0 > 0 && r1 >= r0 && r1 <= 0.5)) throw new Error(`shapes dataset: radiusRange must satisfy 0 < min <= max <= 0.5 (fractions of the size), found [${r0}, ${r1}]`);
  const outlineWidth = opts.outlineWidth ?? Math.max(1, Math.round(size / 64));
  if (!Number.isInteger(outlineWidth) || outlineWidth < 1) throw new Error(`shapes dataset: outlineWidth must be an integer >= 1, found ${outlineWidth}`);
  return { control, background, shapes, colours, radiusRange, outlineWidth };
}

/** The prompt of a sample: "a red circle", or "a red circle on a blue background" with a palette background. */
export function shapePrompt(colour: ShapeColour, shape: ShapeKind, background?: string): string {
  return background ? `a ${colour} ${shape} on a ${background} background` : `a ${colour} ${shape}`;
}

/** The colour and shape a prompt names (the first of each found as a whole word), or undefined where none is. */
export function parseShapePrompt(prompt: string): { colour?: ShapeColour; shape?: ShapeKind } {
  const words = prompt.toLowerCase().split(/[^a-z]+/);
  const colour = words.find((w): w is ShapeColour => w in SHAPE_COLOURS);
  const shape = words.find((w): w is ShapeKind => (SHAPE_KINDS as readonly string[]).includes(w));
  return { ...(colour ? { colour } : {}), ...(shape ? { shape } : {}) };
}

/** Sample `index` (integer >= 0) of the synthetic shapes dataset: deterministic in (options, index). */
export function shapeSample(index: number, opts: ShapeDatasetOptions): ShapeSample {
  if (!Number.isInteger(index) || index < 0 || index > 0xffffffff) throw new Error(`shapeSample: index must be an integer in [0, 2^32), found ${index}`);
  const o = checkOptions(opts);
  const { size, seed } = opts;
  const rng = sampleRandom(seed, index);
  const shape = o.shapes[rng.int(o.shapes.length)]!;
  const colour = o.colours[rng.int(o.colours.length)]!;
  let background: string, backgroundRgb: readonly [number, number, number];
  if (o.background === 'palette') {
    const others = o.colours.filter((c) => c !== colour);
    background = others[rng.int(others.length)]!;
    backgroundRgb = SHAPE_COLOURS[background as ShapeColour];
  } else {
    background = o.background;
    backgroundRgb = SHAPE_BACKGROUNDS[o.background];
  }
  const radius = rng.uniform(o.radiusRange[0], o.radiusRange[1]) * size;
  const lo = radius + 1, hi = size - radius - 1;
  const cx = lo <= hi ? rng.uniform(lo, hi) : (rng.next(), size / 2);
  const cy = lo <= hi ? rng.uniform(lo, hi) : (rng.next(), size / 2);
  const mask = rasteriseShape(shape, cx, cy, radius, size);
  const lit = o.control === 'mask' ? mask : maskOutline(mask, size, size, o.outlineWidth);
  const rgb = SHAPE_COLOURS[colour];
  const control = new Uint8Array(size * size * 3);
  const target = new Uint8Array(size * size * 3);
  for (let i = 0; i < size * size; i++) {
    const c = mask[i] ? rgb : backgroundRgb;
    target[3 * i] = c[0]; target[3 * i + 1] = c[1]; target[3 * i + 2] = c[2];
    if (lit[i]) control[3 * i] = control[3 * i + 1] = control[3 * i + 2] = 255;
  }
  return {
    index, seed, size,
    prompt: shapePrompt(colour, shape, o.background === 'palette' ? background : undefined),
    shape, colour, rgb, background, backgroundRgb, cx, cy, radius, control, target, mask,
  };
}

/** Samples [start, start + count) of the dataset, lazily. */
export function* shapeSamples(count: number, opts: ShapeDatasetOptions, start = 0): Generator<ShapeSample> {
  if (!Number.isInteger(count) || count < 0) throw new Error(`shapeSamples: count must be an integer >= 0, found ${count}`);
  checkOptions(opts);
  for (let i = 0; i < count; i++) yield shapeSample(start + i, opts);
}

/** Interleaved 8-bit RGB [H, W, 3] -> the library's image ndarray [H, W, 3] of floats in [0, 1]. */
export function rgbBytesToImage(rgb: Uint8Array, height: number, width: number): ImageArray {
  if (rgb.length !== height * width * 3) throw new Error(`rgbBytesToImage: expected ${height}x${width}x3 = ${height * width * 3} bytes, found ${rgb.length}`);
  const out = new Float32Array(rgb.length);
  for (let i = 0; i < rgb.length; i++) out[i] = rgb[i]! / 255;
  return ndarray(out, [height, width, 3]);
}

/** The library's image ndarray [H, W, 3] (floats in [0, 1]) -> interleaved 8-bit RGB (clamped, rounded; NaN -> 0). */
export function imageToRgbBytes(image: ImageArray): Uint8Array {
  const [H, W, C] = image.shape as [number, number, number];
  if (image.shape.length !== 3 || C !== 3) throw new Error(`imageToRgbBytes: expected an RGB image ndarray [H, W, 3], found [${image.shape.join(', ')}]`);
  const out = new Uint8Array(H * W * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < 3; c++) {
        const v = image.get(y, x, c);
        out[(y * W + x) * 3 + c] = Math.round(Math.min(Math.max(Number.isNaN(v) ? 0 : v, 0), 1) * 255);
      }
    }
  }
  return out;
}
