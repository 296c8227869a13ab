// diffusers Downsample2D (diffusers/models/downsampling.py, v0.29.2) with use_conv=True, name "op":
// a 3x3 stride-2 conv under the key `conv`. With padding=0 (the VAE encoder's downsample_padding) the
// input is first zero-padded asymmetrically, F.pad(x, (0, 1, 0, 1)): one column right, one row bottom.

import type { Backend, Tensor, Trace, WeightSource } from '@cnx/tensor';
import { Module } from './module.js';
import { Conv2d } from './layers/conv2d.js';

export interface Downsample2DOptions {
  channels: number;
  /** Defaults to channels. */
  outC?: number;
  /** Symmetric conv padding (UNet downsample_padding, 1); 0 selects the asymmetric (0,1,0,1) pad. */
  padding?: number;
}

export class Downsample2D extends Module {
  conv: Conv2d;
  private readonly padding: number;

  constructor(ws: WeightSource, backend: Backend, opts: Downsample2DOptions) {
    super();
    this.padding = opts.padding ?? 1;
    this.conv = new Conv2d(ws.sub('conv'), backend, {
      inC: opts.channels, outC: opts.outC ?? opts.channels, k: 3, stride: 2, padding: this.padding,
    });
  }

  /** x [B, C, H, W] -> [B, O, ceil(H/2), ceil(W/2)] (floor((H + 2p - 3)/2) + 1 in general). */
  forward(x: Tensor, trace?: Trace): Tensor {
    const y = this.padding === 0 ? this.conv.forward(x, { padding: [0, 1, 0, 1] }) : this.conv.forward(x);
    trace?.('', y);
    return y;
  }
}
