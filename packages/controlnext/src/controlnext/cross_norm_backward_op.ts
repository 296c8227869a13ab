// The fused backward of ControlNeXt cross normalisation as an extension op of @cnx/controlnext, so that
// the tape runs it on any backend: one op gives the gradients of the sample, the control and the
// per-sample scale. Float64 reference cross_norm_backward.ts, WGSL cross_norm_backward_wgsl.ts.
//
// controlnext.cross_norm_backward [x [N, C, h, w], control [Nc, C, h', w'], scale? [N], dy [N, C, h, w]]
//   -> [dx [N, C, h, w], dcontrol [Nc, C, h', w'], dscale ([N] with a scale tensor, [1] = the sum over
//   samples with a number)]. Params: the forward's (cross_norm.ts CrossNormParams).

import type { GpuContext } from '@cnx/kernels';
import { defineOp, f32, formatShape, shapesEqual } from '@cnx/tensor';
import { crossNormOp, type CrossNormParams } from './cross_norm.js';
import { crossNormBackward } from './cross_norm_backward.js';
import { crossNormBackward as crossNormBackwardWebgpu } from './cross_norm_backward_wgsl.js';

export const crossNormBackwardOp = defineOp<CrossNormParams>({
  name: 'controlnext.cross_norm_backward',
  outputs([x, control, scale, dy], p) {
    crossNormOp.outputs([x, control, scale], p);
    if (!dy || !shapesEqual(dy.shape, x!.shape) || dy.dtype !== 'f32') {
      throw new Error(`crossNorm backward: expected f32 dy ${formatShape(x!.shape)}, found ${dy ? `${dy.dtype} ${formatShape(dy.shape)}` : 'nothing'}`);
    }
    return f32(x!.shape, control!.shape, [scale ? x!.shape[0]! : 1]);
  },
  cpu([x, control, scale, dy], p) {
    const h = (t: typeof x) => ({ shape: t!.shape, data: t!.data as Float32Array });
    const r = crossNormBackward(h(x), h(control), h(dy), {
      eps: p.eps, order: p.order, residual: p.residual, scale: scale ? (scale.data as Float32Array) : p.scale,
    });
    return [r.dx.data, r.dcontrol.data, r.dscale.data];
  },
  kernels: {
    webgpu: (ctx: GpuContext, [x, control, scale, dy], p) => {
      const r = crossNormBackwardWebgpu(ctx, x!, control!, dy!, { eps: p.eps, order: p.order, residual: p.residual, scale: scale ?? p.scale });
      return [r.dx, r.dcontrol, r.dscale];
    },
  },
});
