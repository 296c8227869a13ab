// A ready-made pose rendering (OpenPose / DWPose skeleton drawn in colour on black, as the ControlNeXt
// deepfashion_multiview and SVD examples use). Colours carry the limb identity, so the RGB is kept;
// near-black background noise (compression artefacts below `black_level`) is set to exactly 0.

import type { ControlType } from '../control_type.js';
import { assertRgbImage, numberOption } from '../control_type.js';

export const controlType: ControlType = {
  name: 'pose',
  description: 'ready-made pose skeleton render (RGB kept, background cleaned to black)',
  options: [{ name: 'black_level', description: 'pixels whose max channel is below this are set to 0, 0..1', default: 0.04 }],
  async prepare(image, backend, opts) {
    assertRgbImage('pose', image);
    const t = numberOption(opts, 'black_level', 0.04);
    const { height: H, width: W, data } = image;
    const hw = H * W;
    const out = new Float32Array(3 * hw);
    for (let i = 0; i < hw; i++) {
      const r = data[3 * i]!, g = data[3 * i + 1]!, b = data[3 * i + 2]!;
      if (Math.max(r, g, b) < t) continue;
      out[i] = Math.min(1, Math.max(0, r));
      out[hw + i] = Math.min(1, Math.max(0, g));
      out[2 * hw + i] = Math.min(1, Math.max(0, b));
    }
    return backend.fromRaw(out, [1, 3, H, W]);
  },
};
