// A ready-made mask (the ControlNeXt-SD1.5 `deepfashoin_mask` example): binarised at `threshold` on
// the luma, white = 1 inside the mask, optionally inverted, repeated to 3 channels.

import type { ControlType } from '../control_type.js';
import { assertRgbImage, booleanOption, luma, numberOption, planesToTensor } from '../control_type.js';

export const controlType: ControlType = {
  name: 'mask',
  description: 'ready-made mask: binarised luma (1 inside), as 3 channels',
  options: [
    { name: 'threshold', description: 'luma above which a pixel is inside the mask, 0..1', default: 0.5 },
    { name: 'invert', description: 'swap inside and outside', default: false },
  ],
  async prepare(image, backend, opts) {
    assertRgbImage('mask', image);
    const t = numberOption(opts, 'threshold', 0.5);
    if (t < 0 || t > 1) throw new Error(`mask: option 'threshold' must be in [0, 1], found ${t}`);
    const inv = booleanOption(opts, 'invert', false);
    const m = luma(image).map((v) => ((v > t) !== inv ? 1 : 0));
    return planesToTensor(backend, [m], image.height, image.width);
  },
};
