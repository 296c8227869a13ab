// A ready-made depth map (from any depth estimator, saved as an image; near = bright as MiDaS / the
// VIDIT-depth data the ControlNeXt depth models were trained on). Preprocessing: luma to one channel,
// optional min-max stretch to the full [0, 1] range and inversion (for far = bright maps), repeated to
// 3 channels as the depth ControlNets expect.

import type { ControlType } from '../control_type.js';
import { assertRgbImage, booleanOption, luma, planesToTensor } from '../control_type.js';

export const controlType: ControlType = {
  name: 'depth',
  description: 'ready-made depth map: grey, optionally normalised / inverted, as 3 channels',
  options: [
    { name: 'normalize', description: 'stretch to min 0 / max 1', default: true },
    { name: 'invert', description: 'invert (for maps where far is bright)', default: false },
  ],
  async prepare(image, backend, opts) {
    assertRgbImage('depth', image);
    const d = luma(image);
    if (booleanOption(opts, 'normalize', true)) {
      let lo = Infinity, hi = -Infinity;
      for (const v of d) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      const span = hi - lo;
      for (let i = 0; i < d.length; i++) d[i] = span > 0 ? (d[i]! - lo) / span : 0;
    }
    if (booleanOption(opts, 'invert', false)) for (let i = 0; i < d.length; i++) d[i] = 1 - d[i]!;
    for (let i = 0; i < d.length; i++) d[i] = Math.min(1, Math.max(0, d[i]!));
    return planesToTensor(backend, [d], image.height, image.width);
  },
};
