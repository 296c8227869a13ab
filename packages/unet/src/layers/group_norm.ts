// torch.nn.GroupNorm(num_groups, num_channels, eps, affine=True): keys `weight`, `bias` [C].

import { ops, type Backend, type Tensor, type WeightSource } from '@cnx/tensor';
import { loadParameter, Module } from '../module.js';
import type { HookEpilogue } from '../hooks.js';

export interface GroupNormOptions {
  groups: number;
  channels: number;
  eps: number;
}

export class GroupNorm extends Module {
  weight: Tensor;
  bias: Tensor;

  constructor(ws: WeightSource, backend: Backend, readonly opts: GroupNormOptions) {
    super();
    if (opts.channels % opts.groups !== 0) {
      throw new Error(`GroupNorm: ${opts.channels} channels do not split into ${opts.groups} groups`);
    }
    this.weight = loadParameter(ws, 'weight', [opts.channels], backend, { half: true });
    this.bias = loadParameter(ws, 'bias', [opts.channels], backend, { half: true });
  }

  /** x [N, C, ...spatial]; `silu` fuses diffusers' norm -> SiLU pattern into one op. */
  forward(x: Tensor, silu = false): Tensor {
    return ops.groupNorm(x, this.opts.groups, this.weight, this.bias, this.opts.eps, silu);
  }

  /**
   * norm followed by SiLU. When `report` is given it must see the norm's own output (the golden
   * intermediates are forward hooks on the GroupNorm module), so the two ops run unfused; otherwise fused.
   */
  forwardSilu(x: Tensor, report?: (normed: Tensor) => void): Tensor {
    if (!report) return this.forward(x, true);
    const n = this.forward(x);
    report(n);
    const y = ops.silu(n);
    n.dispose();
    return y;
  }

  /** A hook sees the norm's output; the fused SiLU follows it. */
  override hookEpilogue(args: readonly unknown[]): HookEpilogue | undefined {
    return args[1] === true ? { args: [args[0]], epilogue: (y) => ops.silu(y) } : undefined;
  }
}
