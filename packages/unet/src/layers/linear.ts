// torch.nn.Linear: y = x W^T + b, W [out, in] (keys `weight`, `bias`).

import { ops, type Activation, type Backend, type Tensor, type WeightSource } from '@cnx/tensor';
import { loadParameter, Module } from '../module.js';
import type { HookEpilogue } from '../hooks.js';

export interface LinearOptions {
  inF: number;
  outF: number;
  /** torch default true. */
  bias?: boolean;
}

export class Linear extends Module {
  weight: Tensor;
  bias?: Tensor;

  constructor(ws: WeightSource, backend: Backend, readonly opts: LinearOptions) {
    super();
    this.weight = loadParameter(ws, 'weight', [opts.outF, opts.inF], backend, { half: true });
    if (opts.bias ?? true) this.bias = loadParameter(ws, 'bias', [opts.outF], backend);
  }

  /** x [..., in] -> [..., out]; `activation` is fused into the matmul epilogue. */
  forward(x: Tensor, activation?: Activation): Tensor {
    return ops.linear(x, this.weight, this.bias, activation);
  }

  /** A hook sees x W^T + b; the fused activation follows it. */
  override hookEpilogue(args: readonly unknown[]): HookEpilogue | undefined {
    const act = args[1] as Activation | undefined;
    if (!act || act === 'none') return undefined;
    return { args: [args[0]], epilogue: (y) => ops.unary(act, y) };
  }
}
