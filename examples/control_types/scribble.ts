// Research task: a new control type, 'scribble', as one file outside the library.
//
// A scribble map is thin white strokes on black (the input of ControlNet's scribble models): here the
// luma's strong gradients (central differences, |g| > threshold), thickened to `thickness` pixels.
// Two ways in, both public API only:
//  - from code:   new ControlTypeRegistry().register(controlType)   (browser or Node)
//  - as a plug-in: the built file (examples/dist/control_types/scribble.js) sits in a folder given to
//                  `cnx generate --control-type-dir DIR --control-type scribble` (Node).
// test/examples.test.ts runs both.

import type { Backend } from '@cnx/tensor';
import { assertRgbImage, luma, numberOption, planesToTensor, type ControlType, type RgbImage } from '@cnx/controlnext';

/** The stroke mask [H * W] (1 = stroke) of an RGB image in [0, 1]. */
export function scribbleMask(image: RgbImage, threshold = 0.1, thickness = 1): Float32Array {
  const { height: H, width: W } = image;
  const y = luma(image);
  const at = (r: number, c: number) => y[Math.min(Math.max(r, 0), H - 1) * W + Math.min(Math.max(c, 0), W - 1)]!;
  const edge = new Uint8Array(H * W);
  for (let r = 0; r < H; r++) {
    for (let c = 0; c < W; c++) {
      const gx = (at(r, c + 1) - at(r, c - 1)) / 2, gy = (at(r + 1, c) - at(r - 1, c)) / 2;
      edge[r * W + c] = Math.hypot(gx, gy) > threshold ? 1 : 0;
    }
  }
  // Thicken: a pixel is a stroke when an edge pixel lies within the (thickness - 1) square around it.
  const k = Math.max(0, Math.round(thickness) - 1);
  const out = new Float32Array(H * W);
  for (let r = 0; r < H; r++) {
    for (let c = 0; c < W; c++) {
      let on = 0;
      for (let dr = -k; dr <= k && !on; dr++) for (let dc = -k; dc <= k && !on; dc++) {
        const rr = r + dr, cc = c + dc;
        if (rr >= 0 && rr < H && cc >= 0 && cc < W && edge[rr * W + cc]) on = 1;
      }
      out[r * W + c] = on;
    }
  }
  return out;
}

export const controlType: ControlType = {
  name: 'scribble',
  description: 'white strokes on black along the strong luma edges (ControlNet scribble-style input)',
  options: [
    { name: 'threshold', description: 'luma gradient magnitude that counts as an edge, 0..1', default: 0.1 },
    { name: 'thickness', description: 'stroke width in pixels', default: 1 },
  ],
  async prepare(image: RgbImage, backend: Backend, opts) {
    assertRgbImage('scribble', image);
    const mask = scribbleMask(image, numberOption(opts, 'threshold', 0.1), numberOption(opts, 'thickness', 1));
    return planesToTensor(backend, [mask], image.height, image.width);
  },
};
