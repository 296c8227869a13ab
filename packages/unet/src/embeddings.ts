// diffusers Timesteps and TimestepEmbedding (diffusers/models/embeddings.py, v0.29.2).

import { type Backend, type Tensor, type WeightSource } from '@cnx/tensor';
import { timestepEmbedding } from './ops/timestep_embedding.js';
import { Module } from './module.js';
import { Linear } from './layers/linear.js';

export interface TimestepsOptions {
  numChannels: number;
  flipSinToCos: boolean;
  downscaleFreqShift: number;
}

/** Sinusoidal projection get_timestep_embedding(t, numChannels, ...): no parameters (`time_proj`). */
export class Timesteps extends Module {
  constructor(readonly opts: TimestepsOptions) {
    super();
  }

  /** t [N] (f32, integer-valued or not) -> [N, numChannels]. */
  forward(t: Tensor): Tensor {
    return timestepEmbedding(t, {
      dim: this.opts.numChannels, flipSinToCos: this.opts.flipSinToCos, downscaleFreqShift: this.opts.downscaleFreqShift,
    });
  }
}

export interface TimestepEmbeddingOptions {
  inC: number;
  timeEmbedDim: number;
  /** linear_2 output width (diffusers `out_dim`); defaults to timeEmbedDim. */
  outDim?: number;
}

/** linear_1 -> SiLU -> linear_2 (act_fn "silu", no cond_proj, no post_act: every SD config). */
export class TimestepEmbedding extends Module {
  linear_1: Linear;
  linear_2: Linear;

  constructor(ws: WeightSource, backend: Backend, opts: TimestepEmbeddingOptions) {
    super();
    this.linear_1 = new Linear(ws.sub('linear_1'), backend, { inF: opts.inC, outF: opts.timeEmbedDim });
    this.linear_2 = new Linear(ws.sub('linear_2'), backend, { inF: opts.timeEmbedDim, outF: opts.outDim ?? opts.timeEmbedDim });
  }

  /** x [N, inC] -> [N, outDim]. */
  forward(x: Tensor): Tensor {
    const h = this.linear_1.forward(x, 'silu');
    const y = this.linear_2.forward(h);
    h.dispose();
    return y;
  }
}
