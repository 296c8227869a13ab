// torch.nn.Conv2d (dilation 1): weight [O, C/groups, k, k], bias [O].

import { ops, type Activation, type Backend, type Tensor, type WeightSource } from '@cnx/tensor';
import { loadParameter, Module } from '../module.js';
import type { HookEpilogue } from '../hooks.js';

export interface Conv2dOptions {
  inC: number;
  outC: number;
  /** Square kernel size. */
  k: number;
  stride?: number;
  /** Symmetric zero padding (torch `padding=p`). */
  padding?: number;
  groups?: number;
  /** torch default true. */
  bias?: boolean;
}

export interface Conv2dForwardOptions {
  /** [top, bottom, left, right], replacing the layer's symmetric padding (the VAE's F.pad (0,1,0,1) + padding 0). */
  padding?: readonly [number, number, number, number];
  /** [N, O, Ho, Wo] added to the output (fused residual). */
  residual?: Tensor;
  activation?: Activation;
}

export class Conv2d extends Module {
  weight: Tensor;
  bias?: Tensor;

  constructor(ws: WeightSource, backend: Backend, readonly opts: Conv2dOptions) {
    super();
    const groups = opts.groups ?? 1;
    if (opts.inC % groups !== 0 || opts.outC % groups !== 0) {
      throw new Error(`Conv2d: ${opts.inC} -> ${opts.outC} channels do not split into groups=${groups}`);
    }
    this.weight = loadParameter(ws, 'weight', [opts.outC, opts.inC / groups, opts.k, opts.k], backend, { half: true });
    if (opts.bias ?? true) this.bias = loadParameter(ws, 'bias', [opts.outC], backend);
  }

  /** x [N, C, H, W] -> [N, O, Ho, Wo]. */
  forward(x: Tensor, f: Conv2dForwardOptions = {}): Tensor {
    const p = this.opts.padding ?? 0;
    return ops.conv2d(x, this.weight, this.bias, {
      stride: this.opts.stride ?? 1,
      padding: f.padding ?? p,
      groups: this.opts.groups ?? 1,
      residual: f.residual,
      activation: f.activation,
    });
  }

  /** A hook sees conv(x) + bias; the fused activation and residual (act(conv) + residual) follow it. */
  override hookEpilogue(args: readonly unknown[]): HookEpilogue | undefined {
    const f = (args[1] ?? {}) as Conv2dForwardOptions;
    const act = f.activation && f.activation !== 'none' ? f.activation : undefined;
    if (!act && !f.residual) return undefined;
    return {
      args: [args[0], { padding: f.padding }],
      epilogue: (y) => {
        const a = act ? ops.unary(act, y) : y;
        if (!f.residual) return a;
        const r = ops.add(a, f.residual);
        if (a !== y) a.dispose();
        return r;
      },
    };
  }
}
