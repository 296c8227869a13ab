// diffusers Upsample2D (diffusers/models/upsampling.py, v0.29.2) with use_conv=True: nearest-neighbour
// upsampling (2x, or to an explicit `output_size` when the UNet forwards one because the latent is not
// divisible by 2^num_upsamplers), then a 3x3 conv under the key `conv`.

import { ops, type Backend, type Tensor, type Trace, type WeightSource } from '@cnx/tensor';
import { Module } from './module.js';
import { Conv2d } from './layers/conv2d.js';

export interface Upsample2DOptions {
  channels: number;
  /** Defaults to channels. */
  outC?: number;
}

export class Upsample2D extends Module {
  conv: Conv2d;

  constructor(ws: WeightSource, backend: Backend, opts: Upsample2DOptions) {
    super();
    this.conv = new Conv2d(ws.sub('conv'), backend, { inC: opts.channels, outC: opts.outC ?? opts.channels, k: 3, padding: 1 });
  }

  /** x [B, C, H, W] -> [B, O, 2H, 2W], or [B, O, size[0], size[1]]. */
  forward(x: Tensor, size?: readonly [number, number], trace?: Trace): Tensor {
    const up = ops.upsampleNearest(x, size ?? [x.shape[2]! * 2, x.shape[3]! * 2]);
    const y = this.conv.forward(up);
    up.dispose();
    trace?.('', y);
    return y;
  }
}
