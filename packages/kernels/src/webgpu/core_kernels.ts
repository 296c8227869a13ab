// The WebGPU implementation of every core op (@cnx/tensor core_ops/), as a table typed by CoreOpParams:
// a core op without a kernel here is a type error. Each entry adapts the op's (inputs, params) to its
// kernel family (one file each under src/). Extension ops bring their WGSL in their own definitions.

import type { CoreOpName, CoreOpParams, Tensor } from '@cnx/tensor';
import { attention, attentionWithLse, softmax } from '../attention.js';
import { conv2d } from '../conv2d.js';
import { matmul } from '../matmul.js';
import { mseLoss } from '../mse_loss.js';
import { groupNorm, groupNormWithStats, layerNorm, layerNormWithStats } from '../norm.js';
import { adaptiveAvgPool2d, upsampleNearest } from '../resample.js';
import { adamwStep, clipGradNorm } from '../adamw.js';
import type { GpuContext } from './context.js';
import * as elementwise from './elementwise.js';
import * as layout from './layout.js';
import { reduce } from './reduce.js';

/** A WebGPU kernel of an op: the backend as GpuContext, the op's inputs and params, its outputs. */
export type WebgpuKernel<P> = (ctx: GpuContext, inputs: readonly (Tensor | undefined)[], params: P) => Tensor[];

export const coreKernels: { readonly [K in CoreOpName]: WebgpuKernel<CoreOpParams[K]> } = {
  unary: (ctx, [x], p) => [elementwise.unary(ctx, p.op, x!)],
  affine: (ctx, [x], p) => [elementwise.affine(ctx, x!, p.mul, p.add)],
  binary: (ctx, [a, b], p) => [elementwise.binary(ctx, p.op, a!, b!)],
  reduce: (ctx, [x], p) => [reduce(ctx, p.op, x!, p.axes)],
  softmax: (ctx, [x]) => [softmax(ctx, x!)],
  matmul: (ctx, [a, b, bias, residual], p) => [matmul(ctx, a!, b!, { ...p, bias, residual })],
  conv2d: (ctx, [x, w, bias, residual], p) => [conv2d(ctx, x!, w!, bias, { ...p, residual })],
  attention: (ctx, [q, k, v], p) => {
    if (!p.stats) return [attention(ctx, q!, k!, v!, p)];
    const r = attentionWithLse(ctx, q!, k!, v!, p);
    return [r.out, r.lse];
  },
  group_norm: (ctx, [x, w, b], p) => {
    if (!p.stats) return [groupNorm(ctx, x!, w, b, p)];
    const r = groupNormWithStats(ctx, x!, w, b, p);
    return [r.y, r.mean, r.rstd];
  },
  layer_norm: (ctx, [x, w, b], p) => {
    if (!p.stats) return [layerNorm(ctx, x!, w, b, p.eps)];
    const r = layerNormWithStats(ctx, x!, w, b, p.eps);
    // The kernel writes [rows]; the definition's stats have x's shape without its last dim.
    const rows = x!.shape.slice(0, -1);
    const mean = r.mean.reshape(rows), rstd = r.rstd.reshape(rows);
    r.mean.dispose();
    r.rstd.dispose();
    return [r.y, mean, rstd];
  },
  upsample_nearest: (ctx, [x], p) => [upsampleNearest(ctx, x!, p.size)],
  adaptive_avg_pool2d: (ctx, [x], p) => [adaptiveAvgPool2d(ctx, x!, p.size)],
  concat: (ctx, xs, p) => [layout.concat(ctx, xs as Tensor[], p.axis)],
  // in place (the definitions' inPlace): the kernels write the inputs' buffers; the outputs are views of them
  adamw_step: (ctx, [param, grad, expAvg, expAvgSq], p) => {
    adamwStep(ctx, { param: param!, expAvg: expAvg!, expAvgSq: expAvgSq! }, grad!, p.step, p);
    return [param!.contiguous(), expAvg!.contiguous(), expAvgSq!.contiguous()];
  },
  clip_grad_norm: (ctx, grads, p) => [clipGradNorm(ctx, grads as Tensor[], p.maxNorm), ...grads.map((g) => g!.contiguous())],
  mse_loss: (ctx, [pred, target]) => [mseLoss(ctx, pred!, target!)],
};
