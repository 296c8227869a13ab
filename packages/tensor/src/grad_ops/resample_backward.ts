// Backward of nearest upsampling and adaptive average pooling as ops (gather form, no atomics): float64
// references cpu/resample_backward.ts, WebGPU kernels @cnx/kernels resample_backward.ts.
//
//  - upsample_nearest_backward     [dy [N, C, Ho, Wo]] -> dx [N, C, H, W]
//  - adaptive_avg_pool2d_backward  [dy [N, C, Ho, Wo]] -> dx [N, C, H, W]
// Params: the forward input's spatial size [H, W].

import { adaptiveAvgPool2dBackward, upsampleNearestBackward } from '../cpu/resample_backward.js';
import { defineOp, expectF32, expectRank, f32 } from '../op_definition.js';

export interface ResampleBackwardParams {
  /** The forward input's [H, W]. */
  inputSize: readonly [number, number];
}

function outputs(op: string, dy: Parameters<typeof expectF32>[1][number], p: ResampleBackwardParams) {
  expectF32(op, [dy], ['dy']);
  const d = expectRank(op, dy, 4, 'dy [N, C, Ho, Wo]');
  if (!p.inputSize.every((s) => Number.isInteger(s) && s > 0)) throw new Error(`${op}: expected a positive input size [H, W], found [${p.inputSize.join(', ')}]`);
  return f32([d.shape[0]!, d.shape[1]!, ...p.inputSize]);
}

export const upsampleNearestBackwardOp = defineOp<ResampleBackwardParams>({
  name: 'upsample_nearest_backward',
  outputs: ([dy], p) => outputs('upsample_nearest_backward', dy, p),
  cpu([dy], p) {
    return [upsampleNearestBackward(dy!.data as Float32Array, dy!.shape, [dy!.shape[0]!, dy!.shape[1]!, ...p.inputSize])];
  },
});

export const adaptiveAvgPool2dBackwardOp = defineOp<ResampleBackwardParams>({
  name: 'adaptive_avg_pool2d_backward',
  outputs: ([dy], p) => outputs('adaptive_avg_pool2d_backward', dy, p),
  cpu([dy], p) {
    return [adaptiveAvgPool2dBackward(dy!.data as Float32Array, dy!.shape, [dy!.shape[0]!, dy!.shape[1]!, ...p.inputSize])];
  },
});
