// GEGLU's backward as an extension op of @cnx/unet, so that the tape runs it on any backend:
// unet.geglu_backward [h [..., 2F], dout [..., F]] -> dh [..., 2F]. Float64 reference geglu_backward.ts,
// WGSL geglu_backward_wgsl.ts.

import type { GpuContext } from '@cnx/kernels';
import { defineOp, expectF32, f32, formatShape, shapesEqual } from '@cnx/tensor';
import { gegluBackward } from './geglu_backward.js';
import { gegluBackward as gegluBackwardWebgpu } from './geglu_backward_wgsl.js';

export const gegluBackwardOp = defineOp<Record<string, never>>({
  name: 'unet.geglu_backward',
  outputs([h, dout]) {
    expectF32('geglu_backward', [h, dout], ['h', 'dout']);
    const D2 = h?.shape[h.shape.length - 1];
    if (!h || !dout || D2 === undefined || D2 % 2 !== 0 || !shapesEqual(dout.shape, [...h.shape.slice(0, -1), D2 / 2])) {
      throw new Error(`geglu_backward: expected h [..., 2F] and dout [..., F], found ${h ? formatShape(h.shape) : 'nothing'} and ${dout ? formatShape(dout.shape) : 'nothing'}`);
    }
    return f32(h.shape);
  },
  cpu([h, dout]) {
    return [gegluBackward({ shape: h!.shape, data: h!.data as Float32Array }, { shape: dout!.shape, data: dout!.data as Float32Array }).data];
  },
  kernels: { webgpu: (ctx: GpuContext, [h, dout]) => [gegluBackwardWebgpu(ctx, h!, dout!)] },
});
