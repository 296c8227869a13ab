// torch.nn.LayerNorm(dim, eps, elementwise_affine=True) over the last dim: keys `weight`, `bias` [D].

import { ops, type Backend, type Tensor, type WeightSource } from '@cnx/tensor';
import { loadParameter, Module } from '../module.js';

export interface LayerNormOptions {
  dim: number;
  eps: number;
}

export class LayerNorm extends Module {
  weight: Tensor;
  bias: Tensor;

  constructor(ws: WeightSource, backend: Backend, readonly opts: LayerNormOptions) {
    super();
    this.weight = loadParameter(ws, 'weight', [opts.dim], backend, { half: true });
    this.bias = loadParameter(ws, 'bias', [opts.dim], backend, { half: true });
  }

  /** x [..., D] -> [..., D]. */
  forward(x: Tensor): Tensor {
    return ops.layerNorm(x, this.weight, this.bias, this.opts.eps);
  }
}
