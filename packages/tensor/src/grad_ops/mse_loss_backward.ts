// Backward of the mean-squared-error loss as an op: float64 reference cpu/elementwise_backward.ts
// mseLossBackward, WebGPU kernel @cnx/kernels mse_loss.ts (gy read on the GPU, no round trip).
//
// mse_loss_backward [pred, target (one shape), gy [1]] -> [dpred = gy * 2 (pred - target) / numel, dtarget = -dpred]

import { mseLossBackward } from '../cpu/elementwise_backward.js';
import { defineOp, expectF32, f32 } from '../op_definition.js';
import { formatShape, numel, shapesEqual } from '../shape.js';

export const mseLossBackwardOp = defineOp<Record<string, never>>({
  name: 'mse_loss_backward',
  outputs([pred, target, gy]) {
    expectF32('mse_loss_backward', [pred, target, gy], ['pred', 'target', 'gy']);
    if (!pred || !target || !shapesEqual(pred.shape, target.shape) || numel(pred.shape) === 0) {
      throw new Error(`mse_loss_backward: expected non-empty pred and target of one shape, found ${pred ? formatShape(pred.shape) : 'nothing'} and ${target ? formatShape(target.shape) : 'nothing'}`);
    }
    if (!gy || numel(gy.shape) !== 1) throw new Error(`mse_loss_backward: expected a gy of one element, found ${gy ? formatShape(gy.shape) : 'nothing'}`);
    return f32(pred.shape, pred.shape);
  },
  cpu([pred, target, gy]) {
    const r = mseLossBackward(pred!.data as Float32Array, target!.data as Float32Array, (gy!.data as Float32Array)[0]!);
    return [r.dpred, r.dtarget];
  },
});
