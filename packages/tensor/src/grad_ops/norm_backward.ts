// Group norm (+ fused SiLU) and layer norm backward from the forward's saved statistics, as ops:
// float64 references cpu/norm_backward.ts, WebGPU kernels @cnx/kernels norm_backward.ts.
//
//  - group_norm_backward [x [N, C, ...], dy, mean [N, G], rstd [N, G], weight? [C], bias? [C]]
//      -> [dx, dweight (when weight), dbias (when bias)]
//  - layer_norm_backward [x [..., D], dy, mean [...], rstd [...], weight? [D], bias? [D]] -> likewise.
// The bias is an input even when only its gradient is wanted: the fused SiLU's derivative needs the
// pre-activation xhat * w + b.

import { groupNormBackward, layerNormBackward, type GroupNormBackwardParams } from '../cpu/norm_backward.js';
import { defineOp, expectF32, expectVector, f32, type TensorMeta } from '../op_definition.js';
import { formatShape, numel, shapesEqual } from '../shape.js';

function checkCommon(op: string, x: TensorMeta | undefined, dy: TensorMeta | undefined, mean: TensorMeta | undefined, rstd: TensorMeta | undefined, stats: number): void {
  if (!x || !dy || !mean || !rstd) throw new Error(`${op}: expected x, dy, mean and rstd`);
  if (!shapesEqual(x.shape, dy.shape)) throw new Error(`${op}: dy ${formatShape(dy.shape)} does not match x ${formatShape(x.shape)}`);
  for (const [name, t] of [['mean', mean], ['rstd', rstd]] as const) {
    if (numel(t.shape) !== stats) throw new Error(`${op}: expected ${name} of ${stats} values, found ${formatShape(t.shape)}`);
  }
}

function gradSpecs(x: TensorMeta, weight: TensorMeta | undefined, bias: TensorMeta | undefined, C: number): TensorMeta[] {
  const specs = f32(x.shape);
  if (weight) specs.push(...f32([C]));
  if (bias) specs.push(...f32([C]));
  return specs;
}

export const groupNormBackwardOp = defineOp<GroupNormBackwardParams>({
  name: 'group_norm_backward',
  outputs([x, dy, mean, rstd, weight, bias], p) {
    const op = 'group_norm_backward';
    expectF32(op, [x, dy, mean, rstd, weight, bias], ['x', 'dy', 'mean', 'rstd', 'weight', 'bias']);
    const C = x?.shape[1];
    if (!x || x.shape.length < 2 || C === undefined || !(p.groups > 0) || C % p.groups !== 0) {
      throw new Error(`${op}: expected x [N, C, ...] with C divisible by groups=${p.groups}, found ${x ? formatShape(x.shape) : 'nothing'}`);
    }
    checkCommon(op, x, dy, mean, rstd, x.shape[0]! * p.groups);
    expectVector(op, 'weight', weight, C);
    expectVector(op, 'bias', bias, C);
    return gradSpecs(x, weight, bias, C);
  },
  cpu([x, dy, mean, rstd, weight, bias], p) {
    const r = groupNormBackward(x!.data as Float32Array, x!.shape, dy!.data as Float32Array, mean!.data as Float32Array,
      rstd!.data as Float32Array, weight?.data as Float32Array | undefined, bias?.data as Float32Array | undefined, p);
    return [r.dx, ...(r.dweight ? [r.dweight] : []), ...(r.dbias ? [r.dbias] : [])];
  },
});

export const layerNormBackwardOp = defineOp<Record<string, never>>({
  name: 'layer_norm_backward',
  outputs([x, dy, mean, rstd, weight, bias]) {
    const op = 'layer_norm_backward';
    expectF32(op, [x, dy, mean, rstd, weight, bias], ['x', 'dy', 'mean', 'rstd', 'weight', 'bias']);
    const D = x?.shape[x.shape.length - 1];
    if (!x || D === undefined || D === 0) throw new Error(`${op}: expected x [..., D] with D > 0`);
    checkCommon(op, x, dy, mean, rstd, numel(x.shape) / D);
    expectVector(op, 'weight', weight, D);
    expectVector(op, 'bias', bias, D);
    return gradSpecs(x, weight, bias, D);
  },
  cpu([x, dy, mean, rstd, weight, bias]) {
    const r = layerNormBackward(x!.data as Float32Array, x!.shape, dy!.data as Float32Array, mean!.data as Float32Array,
      rstd!.data as Float32Array, weight?.data as Float32Array | undefined, bias?.data as Float32Array | undefined);
    return [r.dx, ...(r.dweight ? [r.dweight] : []), ...(r.dbias ? [r.dbias] : [])];
  },
});
