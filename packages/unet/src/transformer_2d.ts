// diffusers Transformer2DModel on continuous inputs and its BasicTransformerBlock
// (diffusers/models/transformers/transformer_2d.py and diffusers/models/attention.py, v0.29.2), in the
// configuration UNet2DConditionModel builds: norm_type "layer_norm", GEGLU feed-forward, self-attention
// attn1 then cross-attention attn2, no only_cross_attention / double_self_attention.
//
//   x [B, C, H, W] -> norm (GroupNorm, eps 1e-6) -> proj_in (1x1 conv, or Linear after the reshape with
//   use_linear_projection) -> tokens [B, H*W, inner] -> transformer_blocks -> proj_out -> + x

import { ops, subTrace, type Backend, type Tensor, type Trace, type WeightSource } from '@cnx/tensor';
import { Module } from './module.js';
import { Attention } from './attention.js';
import { FeedForward } from './feed_forward.js';
import { Conv2d } from './layers/conv2d.js';
import { GroupNorm } from './layers/group_norm.js';
import { LayerNorm } from './layers/layer_norm.js';
import { Linear } from './layers/linear.js';

export interface BasicTransformerBlockOptions {
  dim: number;
  heads: number;
  dimHead: number;
  crossAttentionDim: number;
  /** LayerNorm eps (diffusers norm_eps, 1e-5). */
  normEps?: number;
}

export class BasicTransformerBlock extends Module {
  norm1: LayerNorm;
  attn1: Attention;
  norm2: LayerNorm;
  attn2: Attention;
  norm3: LayerNorm;
  ff: FeedForward;

  constructor(ws: WeightSource, backend: Backend, opts: BasicTransformerBlockOptions) {
    super();
    const ln = { dim: opts.dim, eps: opts.normEps ?? 1e-5 };
    const att = { queryDim: opts.dim, heads: opts.heads, dimHead: opts.dimHead, bias: false, outBias: true };
    this.norm1 = new LayerNorm(ws.sub('norm1'), backend, ln);
    this.attn1 = new Attention(ws.sub('attn1'), backend, att);
    this.norm2 = new LayerNorm(ws.sub('norm2'), backend, ln);
    this.attn2 = new Attention(ws.sub('attn2'), backend, { ...att, crossAttentionDim: opts.crossAttentionDim });
    this.norm3 = new LayerNorm(ws.sub('norm3'), backend, ln);
    this.ff = new FeedForward(ws.sub('ff'), backend, { dim: opts.dim });
  }

  /** x [B, L, dim], context [B, Lk, crossAttentionDim] -> [B, L, dim]. */
  forward(x: Tensor, context: Tensor, trace?: Trace): Tensor {
    // h + f(norm(h)), reporting the norm output and the sublayer output under their module names.
    const residual = (h: Tensor, norm: LayerNorm, normName: string, name: string, f: (n: Tensor) => Tensor): Tensor => {
      const n = norm.forward(h);
      trace?.(normName, n);
      const a = f(n);
      n.dispose();
      trace?.(name, a);
      const out = ops.add(a, h);
      a.dispose();
      return out;
    };
    const h1 = residual(x, this.norm1, 'norm1', 'attn1', (n) => this.attn1.forward(n));
    const h2 = residual(h1, this.norm2, 'norm2', 'attn2', (n) => this.attn2.forward(n, context));
    h1.dispose();
    const h3 = residual(h2, this.norm3, 'norm3', 'ff', (n) => this.ff.forward(n));
    h2.dispose();
    trace?.('', h3);
    return h3;
  }
}

export interface Transformer2DModelOptions {
  heads: number;
  dimHead: number;
  inC: number;
  numLayers: number;
  crossAttentionDim: number;
  /** GroupNorm groups of `norm` (the UNet's norm_num_groups). */
  groups: number;
  useLinearProjection: boolean;
}

export class Transformer2DModel extends Module {
  norm: GroupNorm;
  proj_in: Conv2d | Linear;
  transformer_blocks: BasicTransformerBlock[];
  proj_out: Conv2d | Linear;
  private readonly linear: boolean;

  constructor(ws: WeightSource, backend: Backend, opts: Transformer2DModelOptions) {
    super();
    const inner = opts.heads * opts.dimHead;
    this.linear = opts.useLinearProjection;
    this.norm = new GroupNorm(ws.sub('norm'), backend, { groups: opts.groups, channels: opts.inC, eps: 1e-6 });
    this.proj_in = this.linear
      ? new Linear(ws.sub('proj_in'), backend, { inF: opts.inC, outF: inner })
      : new Conv2d(ws.sub('proj_in'), backend, { inC: opts.inC, outC: inner, k: 1 });
    this.transformer_blocks = Array.from({ length: opts.numLayers }, (_, i) => new BasicTransformerBlock(
      ws.sub(`transformer_blocks.${i}`), backend,
      { dim: inner, heads: opts.heads, dimHead: opts.dimHead, crossAttentionDim: opts.crossAttentionDim }));
    this.proj_out = this.linear
      ? new Linear(ws.sub('proj_out'), backend, { inF: inner, outF: opts.inC })
      : new Conv2d(ws.sub('proj_out'), backend, { inC: inner, outC: opts.inC, k: 1 });
  }

  /**
   * x [B, C, H, W], context [B, Lk, crossAttentionDim] -> [B, C, H, W]. Traced as '0': diffusers returns
   * the tuple (sample,) with return_dict=False.
   */
  forward(x: Tensor, context: Tensor, trace?: Trace): Tensor {
    const [B, , H, W] = x.shape as [number, number, number, number];
    const n = this.norm.forward(x);
    trace?.('norm', n);
    // [B, C', H, W] -> [B, H*W, C']
    const toTokens = (t: Tensor): Tensor => {
      const p = t.permute([0, 2, 3, 1]);
      const r = p.reshape([B, H * W, t.shape[1]!]);
      p.dispose();
      return r;
    };
    let h: Tensor;
    if (this.linear) {
      const tok = toTokens(n);
      h = (this.proj_in as Linear).forward(tok);
      tok.dispose();
      trace?.('proj_in', h);
    } else {
      const p = (this.proj_in as Conv2d).forward(n);
      trace?.('proj_in', p);
      h = toTokens(p);
      p.dispose();
    }
    n.dispose();
    this.transformer_blocks.forEach((blk, i) => {
      const next = blk.forward(h, context, subTrace(trace, `transformer_blocks.${i}`));
      h.dispose();
      h = next;
    });
    // [B, H*W, C'] -> [B, C', H, W]
    const toMap = (t: Tensor): Tensor => {
      const r = t.reshape([B, H, W, t.shape[2]!]);
      const p = r.permute([0, 3, 1, 2]);
      const c = p.contiguous();
      [r, p].forEach((u) => u.dispose());
      return c;
    };
    let out: Tensor;
    if (this.linear) {
      const o = (this.proj_out as Linear).forward(h);
      trace?.('proj_out', o);
      const m = toMap(o);
      o.dispose();
      out = ops.add(m, x);
      m.dispose();
    } else {
      const m = toMap(h);
      out = (this.proj_out as Conv2d).forward(m, { residual: x }); // proj_out(h) + x, fused
      m.dispose();
    }
    h.dispose();
    trace?.('0', out);
    return out;
  }
}
