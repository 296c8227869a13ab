// diffusers FeedForward(dim, mult=4, activation_fn="geglu") (diffusers/models/attention.py, v0.29.2):
// net.0 = GEGLU (net.0.proj: Linear dim -> 2*inner; out = a * gelu_exact(gate) with [a, gate] the two
// halves of the last dim), net.1 = Dropout, net.2 = Linear inner -> dim.

import type { Backend, Tensor, WeightSource } from '@cnx/tensor';
import { geglu } from './ops/geglu.js';
import { Module } from './module.js';
import { Linear } from './layers/linear.js';

/** diffusers GEGLU: the `proj` Linear whose output is split into value and gate halves. */
export class GEGLU extends Module {
  proj: Linear;

  constructor(ws: WeightSource, backend: Backend, opts: { dimIn: number; dimOut: number }) {
    super();
    this.proj = new Linear(ws.sub('proj'), backend, { inF: opts.dimIn, outF: 2 * opts.dimOut });
  }

  /** x [..., dimIn] -> [..., dimOut]. */
  forward(x: Tensor): Tensor {
    const h = this.proj.forward(x);
    const y = geglu(h);
    h.dispose();
    return y;
  }
}

export class FeedForward extends Module {
  /** torch nn.ModuleList [GEGLU, Dropout, Linear]: Dropout has no parameters, so index 1 stays empty. */
  net: [GEGLU, undefined, Linear];

  constructor(ws: WeightSource, backend: Backend, opts: { dim: number; mult?: number; innerDim?: number }) {
    super();
    const inner = opts.innerDim ?? opts.dim * (opts.mult ?? 4);
    this.net = [
      new GEGLU(ws.sub('net.0'), backend, { dimIn: opts.dim, dimOut: inner }),
      undefined,
      new Linear(ws.sub('net.2'), backend, { inF: inner, outF: opts.dim }),
    ];
  }

  /** x [..., dim] -> [..., dim]. */
  forward(x: Tensor): Tensor {
    const h = this.net[0].forward(x);
    const y = this.net[2].forward(h);
    h.dispose();
    return y;
  }
}
