// Elementwise gradient ops: the derivative of a unary op or activation, the softmax VJP, and the
// comparison masks the max/min gradients are built from. References cpu/elementwise_backward.ts (and the
// loop below); WebGPU kernels @cnx/kernels elementwise_backward.ts and webgpu/elementwise.ts.
//
//  - unary_backward   [x, dy] (one shape)         -> dx = dy * f'(x)          (f: UnaryOp or Activation)
//  - softmax_backward [y, dy] (softmax's output)  -> dx = y * (dy - rowsum(dy * y)) over the last dim
//  - compare          [a, b] (one shape, strided) -> 1 where `a op b` holds, else 0 (op: eq, gt, lt)

import type { Activation, UnaryOp } from '../backend.js';
import { softmaxBackward, unaryBackward } from '../cpu/elementwise_backward.js';
import { defineOp, expectF32, f32, type TensorMeta } from '../op_definition.js';
import { formatShape, numel, shapesEqual } from '../shape.js';

export interface UnaryBackwardParams { op: UnaryOp | Activation }
export interface CompareParams { op: 'eq' | 'gt' | 'lt' }

function sameShape(op: string, a: TensorMeta | undefined, b: TensorMeta | undefined, names: [string, string]): TensorMeta[] {
  expectF32(op, [a, b], names);
  if (!a || !b || !shapesEqual(a.shape, b.shape)) {
    throw new Error(`${op}: expected ${names[0]} and ${names[1]} of one shape, found ${a ? formatShape(a.shape) : 'nothing'} and ${b ? formatShape(b.shape) : 'nothing'}`);
  }
  return f32(a.shape);
}

export const unaryBackwardOp = defineOp<UnaryBackwardParams>({
  name: 'unary_backward',
  outputs([x, dy], p) {
    return sameShape(`unary_backward ${p.op}`, x, dy, ['x', 'dy']);
  },
  cpu([x, dy], p) {
    return [unaryBackward(p.op, x!.data as Float32Array, dy!.data as Float32Array)];
  },
});

export const softmaxBackwardOp = defineOp<Record<string, never>>({
  name: 'softmax_backward',
  outputs([y, dy]) {
    const s = sameShape('softmax_backward', y, dy, ['y', 'dy']);
    if (y!.shape.length === 0) throw new Error('softmax_backward: expected rank >= 1, found a scalar');
    return s;
  },
  cpu([y, dy]) {
    return [softmaxBackward(y!.data as Float32Array, dy!.data as Float32Array, y!.shape[y!.shape.length - 1]!)];
  },
});

export const compareOp = defineOp<CompareParams>({
  name: 'compare',
  inputLayout: 'strided',
  outputs([a, b], p) {
    return sameShape(`compare ${p.op}`, a, b, ['a', 'b']);
  },
  cpu([a, b], p) {
    const va = a!.data as Float32Array, vb = b!.data as Float32Array;
    const out = new Float32Array(numel(a!.shape));
    for (let i = 0; i < out.length; i++) {
      const x = va[i]!, y = vb[i]!;
      out[i] = (p.op === 'eq' ? x === y : p.op === 'gt' ? x > y : x < y) ? 1 : 0;
    }
    return [out];
  },
});
