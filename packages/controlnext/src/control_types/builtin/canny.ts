// Canny edges (white on black, 3 channels) of the image: the control of ControlNeXt-SDXL's anime canny
// example (spec 5.3: grey, cv2.Canny(t1, t2), then RGB). See ../canny_edges.ts for the OpenCV semantics.
// Thresholds default to that example's median rule; give `low`/`high` (0..255 grey units) to fix them.

import type { ControlType } from '../control_type.js';
import { assertRgbImage, booleanOption, numberOption, planesToTensor } from '../control_type.js';
import { canny, gray8, medianThresholds } from '../canny_edges.js';

export const controlType: ControlType = {
  name: 'canny',
  description: 'Canny edge map (OpenCV threshold semantics; Gaussian blur and Sobel on the backend kernels)',
  options: [
    { name: 'low', description: 'lower hysteresis threshold on the L1 gradient magnitude, 0..255 grey units', default: 'auto' },
    { name: 'high', description: 'upper hysteresis threshold', default: 'auto' },
    { name: 'sigma', description: 'Gaussian blur sigma before Sobel (0: none, as cv2.Canny)', default: 0 },
    { name: 'l2', description: 'use the L2 gradient magnitude (OpenCV L2gradient)', default: false },
  ],
  async prepare(image, backend, opts) {
    assertRgbImage('canny', image);
    const { height: H, width: W } = image;
    const gray = gray8(image.data, H, W);
    const auto = medianThresholds(gray);
    // 'auto' (the declared default) may also be given explicitly.
    const threshold = (k: 'low' | 'high') => (opts?.[k] === 'auto' ? auto[k] : numberOption(opts, k, auto[k]));
    const edges = await canny(backend, gray, H, W, {
      low: threshold('low'),
      high: threshold('high'),
      sigma: numberOption(opts, 'sigma', 0),
      l2Gradient: booleanOption(opts, 'l2', false),
    });
    return planesToTensor(backend, [Float32Array.from(edges)], H, W);
  },
};
