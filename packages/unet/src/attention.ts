// diffusers Attention (diffusers/models/attention_processor.py, v0.29.2) with the default AttnProcessor
// math: softmax(q k^T * dim_head^-0.5) v per head, heads interleaved in the channel dim exactly as torch's
// Linear outputs are ([B, L, H*D], attention_processor.head_to_batch_dim). Keys: to_q, to_k, to_v,
// to_out.0 (to_out.1 is Dropout, no parameters), and group_norm for the VAE's spatial attention.
// upcast_attention / upcast_softmax only matter in f16; compute here is f32.

import { ops, type Backend, type Tensor, type Trace, type WeightSource } from '@cnx/tensor';
import { Module } from './module.js';
import { GroupNorm } from './layers/group_norm.js';
import { Linear } from './layers/linear.js';

export interface AttentionOptions {
  queryDim: number;
  /** Width of the context (encoder_hidden_states); defaults to queryDim (self-attention). */
  crossAttentionDim?: number;
  heads: number;
  dimHead: number;
  /** Bias of to_q/to_k/to_v (diffusers `bias`, default false). */
  bias?: boolean;
  /** Bias of to_out.0 (diffusers `out_bias`, default true). */
  outBias?: boolean;
  /** GroupNorm applied to the input first (diffusers `norm_num_groups`; the VAE mid-block attention). */
  groupNorm?: { groups: number; eps: number };
  /** Add the block input to the output (diffusers `residual_connection`). */
  residualConnection?: boolean;
  /** The output is divided by this (diffusers `rescale_output_factor`, default 1). */
  rescaleOutputFactor?: number;
}

export class Attention extends Module {
  group_norm?: GroupNorm;
  to_q: Linear;
  to_k: Linear;
  to_v: Linear;
  to_out: Linear[];
  readonly heads: number;
  private readonly residualConnection: boolean;
  private readonly rescaleOutputFactor: number;

  constructor(ws: WeightSource, backend: Backend, opts: AttentionOptions) {
    super();
    const inner = opts.heads * opts.dimHead;
    const ctx = opts.crossAttentionDim ?? opts.queryDim;
    const bias = opts.bias ?? false;
    this.heads = opts.heads;
    this.residualConnection = opts.residualConnection ?? false;
    this.rescaleOutputFactor = opts.rescaleOutputFactor ?? 1;
    if (opts.groupNorm) {
      this.group_norm = new GroupNorm(ws.sub('group_norm'), backend, { ...opts.groupNorm, channels: opts.queryDim });
    }
    this.to_q = new Linear(ws.sub('to_q'), backend, { inF: opts.queryDim, outF: inner, bias });
    this.to_k = new Linear(ws.sub('to_k'), backend, { inF: ctx, outF: inner, bias });
    this.to_v = new Linear(ws.sub('to_v'), backend, { inF: ctx, outF: inner, bias });
    this.to_out = [new Linear(ws.sub('to_out.0'), backend, { inF: inner, outF: opts.queryDim, bias: opts.outBias ?? true })];
  }

  /**
   * x [B, L, queryDim] or a feature map [B, C, H, W] (attended over its H*W positions, as the VAE does);
   * context [B, Lk, crossAttentionDim] (cross-attention) or undefined (self-attention). Returns x's shape.
   */
  forward(x: Tensor, context?: Tensor, trace?: Trace): Tensor {
    const spatial = x.rank === 4;
    const [B, C, H, W] = x.shape as [number, number, number, number];
    // GroupNorm over [B, C, H*W] (what the processor normalises) equals GroupNorm over [B, C, H, W].
    const normed = this.group_norm ? this.group_norm.forward(x) : x;
    // [B, C, H, W] -> [B, H*W, C]
    let tokens = normed;
    if (spatial) {
      const flat = normed.reshape([B, C, H * W]);
      tokens = flat.transpose(1, 2).contiguous();
      flat.dispose();
    }
    if (normed !== x && normed !== tokens) normed.dispose();
    const kv = context ?? tokens;
    const q = this.to_q.forward(tokens), k = this.to_k.forward(kv), v = this.to_v.forward(kv);
    if (tokens !== x) tokens.dispose();
    const o = ops.attention(q, k, v, this.heads);
    [q, k, v].forEach((t) => t.dispose());
    let y = this.to_out[0]!.forward(o);
    o.dispose();
    if (spatial) {
      // [B, H*W, C] -> [B, C, H, W]
      const t = y.transpose(1, 2);
      const back = t.reshape([B, C, H, W]);
      [t, y].forEach((u) => u.dispose());
      y = back;
    }
    if (this.residualConnection) {
      const r = ops.add(y, x);
      y.dispose();
      y = r;
    }
    if (this.rescaleOutputFactor !== 1) {
      const r = ops.scale(y, 1 / this.rescaleOutputFactor);
      y.dispose();
      y = r;
    }
    trace?.('', y);
    return y;
  }
}
