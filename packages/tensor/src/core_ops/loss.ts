// Losses. mse_loss [pred, target] (one shape) -> [1]: mean((pred - target)^2) over every element
// (torch.nn.functional.mse_loss, reduction='mean'), float64 sum. Backward: grad_ops/mse_loss_backward.ts.

import { mseLoss } from '../cpu/elementwise_backward.js';
import { mseLossBackwardOp } from '../grad_ops/mse_loss_backward.js';
import { defineOp, expectF32, f32, runOp } from '../op_definition.js';
import { formatShape, numel, shapesEqual } from '../shape.js';

export const mseLossOp = defineOp<Record<string, never>>({
  name: 'mse_loss',
  outputs([pred, target]) {
    expectF32('mseLoss', [pred, target], ['pred', 'target']);
    if (!pred || !target || !shapesEqual(pred.shape, target.shape) || numel(pred.shape) === 0) {
      throw new Error(`mseLoss: expected non-empty pred and target of one shape, found ${pred ? formatShape(pred.shape) : 'nothing'} and ${target ? formatShape(target.shape) : 'nothing'}`);
    }
    return f32([1]);
  },
  cpu([pred, target]) {
    return [Float32Array.of(mseLoss(pred!.data as Float32Array, target!.data as Float32Array))];
  },
  saves: () => ({ outputs: [] }),
  backward({ inputs: [pred, target], needsGrad }, [g]) {
    const [dpred, dtarget] = runOp(mseLossBackwardOp, [pred, target, g], {});
    return [needsGrad[0] ? dpred : undefined, needsGrad[1] ? dtarget : undefined];
  },
});
