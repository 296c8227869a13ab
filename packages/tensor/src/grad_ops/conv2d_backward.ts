// conv2d's backward as ops of their own (the gradient wrt the input, the weight and the bias), so that
// backward runs on every backend through runOp: the float64 references are cpu/conv2d_backward.ts, the
// WebGPU kernels @cnx/kernels conv2d_backward.ts (wired in its webgpu/grad_kernels.ts table).
//
//  - conv2d_backward_input  [dy [N, O, Ho, Wo], w [O, C/groups, kh, kw]] -> dx [N, C, H, W]
//  - conv2d_backward_weight [x [N, C, H, W], dy]                         -> dw [O, C/groups, kh, kw]
//  - conv2d_backward_bias   [dy]                                         -> db [O]
// The params repeat the forward's geometry, plus the shape the result must have (the forward input's
// shape cannot be derived from dy when the forward dropped rows or columns).

import { conv2dOutputSize, type Conv2dParams } from '../core_ops/conv2d.js';
import { conv2dBackwardBias, conv2dBackwardInput, conv2dBackwardWeight } from '../cpu/conv2d_backward.js';
import { defineOp, expectF32, expectRank, f32, type TensorMeta } from '../op_definition.js';
import { formatShape, shapesEqual } from '../shape.js';

export type ConvGeometryParams = Pick<Conv2dParams, 'stride' | 'padding' | 'groups'>;

export interface Conv2dBackwardInputParams extends ConvGeometryParams {
  /** The forward input's shape [N, C, H, W]. */
  inputShape: readonly number[];
}

export interface Conv2dBackwardWeightParams extends ConvGeometryParams {
  /** The weight's shape [O, C/groups, kh, kw]. */
  weightShape: readonly number[];
}

/** Throws unless dy is the forward output of x and w under the params. */
function checkDy(op: string, xShape: readonly number[], wShape: readonly number[], dy: TensorMeta | undefined, p: ConvGeometryParams): void {
  const d = expectRank(op, dy, 4, 'dy [N, O, Ho, Wo]');
  const [N, C] = xShape as [number, number];
  const [O, Cg, kh, kw] = wShape as [number, number, number, number];
  if (xShape.length !== 4 || wShape.length !== 4 || C !== Cg * p.groups || O % p.groups !== 0) {
    throw new Error(`${op}: input ${formatShape(xShape)} does not match weight ${formatShape(wShape)} with groups=${p.groups}`);
  }
  const want = [N, O, ...conv2dOutputSize(xShape[2]!, xShape[3]!, kh, kw, p)];
  if (!shapesEqual(d.shape, want)) throw new Error(`${op}: expected dy ${formatShape(want)}, found ${formatShape(d.shape)}`);
}

export const conv2dBackwardInputOp = defineOp<Conv2dBackwardInputParams>({
  name: 'conv2d_backward_input',
  outputs([dy, w], p) {
    expectF32('conv2d_backward_input', [dy, w], ['dy', 'weight']);
    const wm = expectRank('conv2d_backward_input', w, 4, 'weight [O, C/groups, kh, kw]');
    checkDy('conv2d_backward_input', p.inputShape, wm.shape, dy, p);
    return f32(p.inputShape);
  },
  cpu([dy, w], p) {
    return [conv2dBackwardInput(dy!.data as Float32Array, dy!.shape, w!.data as Float32Array, w!.shape, p.inputShape, p)];
  },
});

export const conv2dBackwardWeightOp = defineOp<Conv2dBackwardWeightParams>({
  name: 'conv2d_backward_weight',
  outputs([x, dy], p) {
    expectF32('conv2d_backward_weight', [x, dy], ['input', 'dy']);
    const xm = expectRank('conv2d_backward_weight', x, 4, 'input [N, C, H, W]');
    checkDy('conv2d_backward_weight', xm.shape, p.weightShape, dy, p);
    return f32(p.weightShape);
  },
  cpu([x, dy], p) {
    return [conv2dBackwardWeight(x!.data as Float32Array, x!.shape, dy!.data as Float32Array, dy!.shape, p.weightShape, p)];
  },
});

export const conv2dBackwardBiasOp = defineOp<Record<string, never>>({
  name: 'conv2d_backward_bias',
  outputs([dy]) {
    expectF32('conv2d_backward_bias', [dy], ['dy']);
    const d = expectRank('conv2d_backward_bias', dy, 4, 'dy [N, O, Ho, Wo]');
    return f32([d.shape[1]!]);
  },
  cpu([dy]) {
    return [conv2dBackwardBias(dy!.data as Float32Array, dy!.shape)];
  },
});
