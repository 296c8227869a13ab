// A control image used as is (already the map the module was trained on): RGB clamped to [0, 1].

import type { ControlType } from '../control_type.js';
import { assertRgbImage } from '../control_type.js';

export const controlType: ControlType = {
  name: 'passthrough',
  description: 'the image itself (a ready-made control map), RGB in [0, 1]',
  options: [],
  async prepare(image, backend) {
    assertRgbImage('passthrough', image);
    const { height: H, width: W, data } = image;
    const hw = H * W;
    const out = new Float32Array(3 * hw);
    for (let i = 0; i < hw; i++) for (let c = 0; c < 3; c++) out[c * hw + i] = Math.min(1, Math.max(0, data[3 * i + c]!));
    return backend.fromRaw(out, [1, 3, H, W]);
  },
};
