// Does the base model draw the named shape in the named colour? A model-free check for the convergence
// experiment's base model (issue 12), which generates from the prompt alone (no control, so no mask to
// compare with). Per generated image:
//   colour: the pixels farther than 64 (0-255 RGB units) from the background are each assigned the nearest
//           palette colour (SHAPE_COLOURS); the most frequent one is the drawn colour;
//   shape:  the drawn colour's pixels (segmentShape 'nearest' rule) form a mask; its centroid and area fix a
//           centre and, per shape kind, the radius whose ideal area equals the mask's area; each kind is
//           rasterised there (training/shapes.ts rasteriseShape) and the kind with the highest IoU against the
//           mask is the drawn shape. Every shape of the dataset is point-symmetric about its centre or (the
//           triangle) has its circumcentre at its centroid, so the centroid is the centre to fit.
// Chance level is 1/5 for the shape and 1/8 for the colour. Applied to decode(encode(target)) the same
// rule gives the codec's ceiling (the results record it next to the model's numbers).

import {
  SHAPE_COLOURS, SHAPE_KINDS, STAR_INNER_RATIO, maskIoU, rasteriseShape, segmentShape,
  type ShapeColour, type ShapeKind,
} from '@cnx/controlnext';

/** Area of each kind at radius 1 (shapes.ts geometry): circle pi, square (side 2) 4, diamond 2, equilateral triangle inscribed in the unit circle 3 sqrt(3) / 4, pentagram 5 rho sin(36 deg). */
const UNIT_AREA: Readonly<Record<ShapeKind, number>> = {
  circle: Math.PI, square: 4, diamond: 2, triangle: (3 * Math.sqrt(3)) / 4, star: 5 * STAR_INNER_RATIO * Math.sin(Math.PI / 5),
};

export interface RecognisedShape {
  colour?: ShapeColour;
  shape?: ShapeKind;
  /** The best fitting kind's IoU with the drawn mask (0 when nothing is drawn). */
  fit: number;
  /** Pixels of the drawn colour. */
  pixels: number;
}

/** Colour and shape drawn in an interleaved 8-bit RGB image of size x size pixels (see the file header). */
export function recogniseShape(rgb: Uint8Array, size: number, background: readonly [number, number, number]): RecognisedShape {
  const counts = new Map<ShapeColour, number>();
  const names = Object.keys(SHAPE_COLOURS) as ShapeColour[];
  for (let i = 0; i < size * size; i++) {
    const r = rgb[3 * i]!, g = rgb[3 * i + 1]!, b = rgb[3 * i + 2]!;
    if ((r - background[0]) ** 2 + (g - background[1]) ** 2 + (b - background[2]) ** 2 <= 64 ** 2) continue;
    let best: ShapeColour = names[0]!, bestD = Infinity;
    for (const n of names) {
      const c = SHAPE_COLOURS[n];
      const d = (r - c[0]) ** 2 + (g - c[1]) ** 2 + (b - c[2]) ** 2;
      if (d < bestD) { bestD = d; best = n; }
    }
    counts.set(best, (counts.get(best) ?? 0) + 1);
  }
  if (counts.size === 0) return { fit: 0, pixels: 0 };
  const colour = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]![0];
  const mask = segmentShape({ rgb, height: size, width: size }, { background, colour });
  let n = 0, sx = 0, sy = 0;
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) if (mask[y * size + x]) { n++; sx += x + 0.5; sy += y + 0.5; }
  if (n === 0) return { colour, fit: 0, pixels: 0 };
  const cx = sx / n, cy = sy / n;
  let shape: ShapeKind = SHAPE_KINDS[0], fit = -1;
  for (const kind of SHAPE_KINDS) {
    const r = Math.sqrt(n / UNIT_AREA[kind]);
    const iou = maskIoU(rasteriseShape(kind, cx, cy, r, size), mask);
    if (iou > fit) { fit = iou; shape = kind; }
  }
  return { colour, shape, fit, pixels: n };
}
