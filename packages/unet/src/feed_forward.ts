// diffusers FeedForward(dim, mult=4, activation_fn="geglu") (diffusers/models/attention.py, v0.29.2):
// net.0 = GEGLU (net.0.proj: Linear dim -> 2*inner; out = a * gelu_exact(gate) with [a, gate] the two
// halves of the last dim), net.1 = Dropout, net.2 = Linear inner -> dim.

import { ops, type Backend, type Tensor, type WeightSource } from '@cnx/tensor';
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

  /**
   * x [..., dim] -> [..., dim]. When the GEGLU projection [rows, 2 x inner] would not fit one storage
   * binding of the backend (NVIDIA adapters cap bindings at 2 GiB: SVD's first transformer level at
   * 576x1024 x 28 frames needs 2.6 GB), the rows run in chunks (diffusers' feed-forward chunking; rows are
   * independent, so the result is the same).
   */
  forward(x: Tensor): Tensor {
    const dim = x.shape[x.rank - 1]!;
    const rows = x.size / dim;
    const widest = 2 * this.net[2].opts.inF; // the GEGLU projection's width
    const limit = Math.min(maxBindingBytes(x.backend), 1 << 30);
    const perChunk = Math.max(1, Math.floor(limit / (4 * widest)));
    if (rows <= perChunk) return this.run(x);
    const flat = x.reshape([rows, dim]);
    const parts: Tensor[] = [];
    for (let r = 0; r < rows; r += perChunk) {
      const v = flat.slice(0, r, Math.min(rows, r + perChunk));
      parts.push(this.run(v));
      v.dispose();
    }
    flat.dispose();
    const cat = ops.concat(parts, 0);
    parts.forEach((p) => p.dispose());
    const out = cat.reshape([...x.shape.slice(0, -1), this.net[2].opts.outF]);
    cat.dispose();
    return out;
  }

  private run(x: Tensor): Tensor {
    const h = this.net[0].forward(x);
    const y = this.net[2].forward(h);
    h.dispose();
    return y;
  }
}

/** The backend's largest storage binding in bytes (WebGPU adapters expose it; Infinity elsewhere). */
export function maxBindingBytes(backend: Backend): number {
  const l = (backend as unknown as { limits?: { maxStorageBufferBindingSize?: number } }).limits;
  return typeof l?.maxStorageBufferBindingSize === 'number' ? l.maxStorageBufferBindingSize : Infinity;
}
