// diffusers TransformerSpatioTemporalModel (diffusers/models/transformers/transformer_temporal.py, v0.29.2)
// and TemporalBasicTransformerBlock (diffusers/models/attention.py), the attention blocks of Stable Video
// Diffusion's UNet. For x [B*F, C, H, W] (frames flattened into the batch) and the per-frame context
// ctx [B*F, L, D] (the CLIP image embedding repeated over frames):
//   h = proj_in(tokens(norm(x)))                   GroupNorm(32, eps 1e-6), Linear C -> inner    [B*F, HW, inner]
//   emb = time_pos_embed(time_proj(frame index))   sinusoid of 0..F-1 (C channels) -> MLP -> C   [B*F, C]
//   per layer: h = transformer_blocks.i(h, ctx)    (spatial: BasicTransformerBlock, transformer_2d.ts)
//              m = temporal_transformer_blocks.i(h + emb, F, time_context)
//              h = time_mixer(spatial=h, temporal=m)    alpha = sigmoid(mix_factor)
//   out = map(proj_out(h)) + x
// The temporal block attends over the F frames of each spatial position (tokens [B*HW, F, inner]):
//   x = ff_in(norm_in(x)) (+ x when dims agree); x += attn1(norm1(x)); x += attn2(norm2(x), time_context);
//   x = ff(norm3(x)) (+ x)
// time_context is the FIRST frame's context of each video, shared by all its positions ([B, L, D]).

import { ops, subTrace, type Backend, type Tensor, type Trace, type WeightSource } from '@cnx/tensor';
import { Module } from './module.js';
import { Attention } from './attention.js';
import { FeedForward } from './feed_forward.js';
import { GroupNorm } from './layers/group_norm.js';
import { LayerNorm } from './layers/layer_norm.js';
import { Linear } from './layers/linear.js';
import { TimestepEmbedding, Timesteps } from './embeddings.js';
import { BasicTransformerBlock } from './transformer_2d.js';
import { AlphaBlender } from './resnet_temporal.js';

function disposeAll(...ts: (Tensor | undefined)[]): void {
  for (const t of ts) t?.dispose();
}

/** x [G, A, S, C] -> [G*S, A, C] (swap the two middle axes and flatten): frames <-> positions. */
function swapMiddle(x: Tensor, G: number, A: number, S: number, C: number): Tensor {
  const v = x.reshape([G, A, S, C]);
  const p = v.permute([0, 2, 1, 3]);
  const c = p.contiguous();
  const out = c.reshape([G * S, A, C]);
  disposeAll(v, p, c);
  return out;
}

/**
 * Cross-attention of queries x [G*P, F, C] (G groups of P rows) on one context per group ctx [G, L, D]:
 * diffusers' time_context broadcast to every position, without materialising the broadcast. With one
 * context token (SVD's image embedding) softmax over one key is exactly 1, so the output is to_out(to_v(ctx)),
 * broadcast; otherwise the keys/values are computed per group and expanded.
 */
function attendSharedContext(attn: Attention, x: Tensor, ctx: Tensor, G: number): Tensor {
  const [GP, F, C] = x.shape as [number, number, number];
  const P = GP / G;
  const L = ctx.shape[1]!;
  if (L === 1) {
    const v = attn.to_v.forward(ctx); // [G, 1, inner]
    const o = attn.to_out[0]!.forward(v); // [G, 1, C]
    v.dispose();
    const ov = o.reshape([G, 1, 1, C]);
    const e = ov.expand([G, P, F, C]);
    const out = e.contiguous();
    disposeAll(o, ov, e);
    const r = out.reshape([GP, F, C]);
    out.dispose();
    return r;
  }
  const expandRows = (t: Tensor): Tensor => {
    const inner = t.shape[2]!;
    const v = t.reshape([G, 1, L, inner]);
    const e = v.expand([G, P, L, inner]);
    const c = e.contiguous();
    const r = c.reshape([GP, L, inner]);
    disposeAll(v, e, c);
    return r;
  };
  const k0 = attn.to_k.forward(ctx), v0 = attn.to_v.forward(ctx);
  const k = expandRows(k0), v = expandRows(v0);
  disposeAll(k0, v0);
  const q = attn.to_q.forward(x);
  const o = ops.attention(q, k, v, attn.heads);
  disposeAll(q, k, v);
  const y = attn.to_out[0]!.forward(o);
  o.dispose();
  return y;
}

export interface TemporalBasicTransformerBlockOptions {
  dim: number;
  timeMixInnerDim: number;
  heads: number;
  dimHead: number;
  /** undefined: no attn2 / norm2 (diffusers cross_attention_dim=None). */
  crossAttentionDim?: number;
}

export class TemporalBasicTransformerBlock extends Module {
  norm_in: LayerNorm;
  ff_in: FeedForward;
  norm1: LayerNorm;
  attn1: Attention;
  norm2?: LayerNorm;
  attn2?: Attention;
  norm3: LayerNorm;
  ff: FeedForward;
  private readonly isRes: boolean;

  constructor(ws: WeightSource, backend: Backend, o: TemporalBasicTransformerBlockOptions) {
    super();
    if (o.dim !== o.timeMixInnerDim) {
      // diffusers' FeedForward(dim, dim_out=inner) would change the width; no SVD checkpoint does that.
      throw new Error(`TemporalBasicTransformerBlock: dim ${o.dim} != time_mix_inner_dim ${o.timeMixInnerDim} is not supported`);
    }
    this.isRes = true;
    const D = o.timeMixInnerDim, ln = { dim: D, eps: 1e-5 };
    const att = { queryDim: D, heads: o.heads, dimHead: o.dimHead, bias: false, outBias: true };
    this.norm_in = new LayerNorm(ws.sub('norm_in'), backend, { dim: o.dim, eps: 1e-5 });
    this.ff_in = new FeedForward(ws.sub('ff_in'), backend, { dim: o.dim });
    this.norm1 = new LayerNorm(ws.sub('norm1'), backend, ln);
    this.attn1 = new Attention(ws.sub('attn1'), backend, att);
    if (o.crossAttentionDim !== undefined) {
      this.norm2 = new LayerNorm(ws.sub('norm2'), backend, ln);
      this.attn2 = new Attention(ws.sub('attn2'), backend, { ...att, crossAttentionDim: o.crossAttentionDim });
    }
    this.norm3 = new LayerNorm(ws.sub('norm3'), backend, ln);
    this.ff = new FeedForward(ws.sub('ff'), backend, { dim: D });
  }

  /** h [B*F, S, C] (frames of a video consecutive), timeContext [B, L, D] -> [B*F, S, C]. */
  forward(h: Tensor, numFrames: number, timeContext?: Tensor): Tensor {
    const [BF, S, C] = h.shape as [number, number, number];
    const B = BF / numFrames, F = numFrames;
    let x = swapMiddle(h, B, F, S, C); // [B*S, F, C]
    const residual = (f: (n: Tensor) => Tensor, norm: LayerNorm) => {
      const n = norm.forward(x);
      const a = f(n);
      n.dispose();
      const out = ops.add(a, x);
      disposeAll(a, x);
      x = out;
    };
    const n0 = this.norm_in.forward(x);
    const f0 = this.ff_in.forward(n0);
    n0.dispose();
    if (this.isRes) {
      const s = ops.add(f0, x);
      disposeAll(f0, x);
      x = s;
    } else {
      x.dispose();
      x = f0;
    }
    residual((n) => this.attn1.forward(n), this.norm1);
    if (this.attn2 && this.norm2) {
      if (!timeContext) throw new Error('TemporalBasicTransformerBlock: this block has attn2 and needs a context');
      residual((n) => attendSharedContext(this.attn2!, n, timeContext, B), this.norm2);
    }
    residual((n) => this.ff.forward(n), this.norm3);
    const out = swapMiddle(x, B, S, F, C); // back to [B*F, S, C]
    x.dispose();
    return out;
  }
}

export interface TransformerSpatioTemporalModelOptions {
  heads: number;
  dimHead: number;
  inC: number;
  numLayers: number;
  crossAttentionDim: number;
}

export class TransformerSpatioTemporalModel extends Module {
  norm: GroupNorm;
  proj_in: Linear;
  transformer_blocks: BasicTransformerBlock[];
  temporal_transformer_blocks: TemporalBasicTransformerBlock[];
  time_pos_embed: TimestepEmbedding;
  readonly time_proj: Timesteps;
  time_mixer: AlphaBlender;
  proj_out: Linear;
  private readonly backend: Backend;

  constructor(ws: WeightSource, backend: Backend, o: TransformerSpatioTemporalModelOptions) {
    super();
    this.backend = backend;
    const inner = o.heads * o.dimHead, C = o.inC;
    if (inner !== C) {
      // hidden_states + emb adds a C-wide frame embedding to inner-wide tokens: diffusers needs them equal too.
      throw new Error(`TransformerSpatioTemporalModel: heads x head_dim = ${inner} must equal in_channels ${C}`);
    }
    this.norm = new GroupNorm(ws.sub('norm'), backend, { groups: 32, channels: C, eps: 1e-6 });
    this.proj_in = new Linear(ws.sub('proj_in'), backend, { inF: C, outF: inner });
    this.transformer_blocks = Array.from({ length: o.numLayers }, (_, i) => new BasicTransformerBlock(
      ws.sub(`transformer_blocks.${i}`), backend, { dim: inner, heads: o.heads, dimHead: o.dimHead, crossAttentionDim: o.crossAttentionDim }));
    this.temporal_transformer_blocks = Array.from({ length: o.numLayers }, (_, i) => new TemporalBasicTransformerBlock(
      ws.sub(`temporal_transformer_blocks.${i}`), backend,
      { dim: inner, timeMixInnerDim: inner, heads: o.heads, dimHead: o.dimHead, crossAttentionDim: o.crossAttentionDim }));
    this.time_pos_embed = new TimestepEmbedding(ws.sub('time_pos_embed'), backend, { inC: C, timeEmbedDim: 4 * C, outDim: C });
    this.time_proj = new Timesteps({ numChannels: C, flipSinToCos: true, downscaleFreqShift: 0 });
    this.time_mixer = new AlphaBlender(ws.sub('time_mixer'), backend, false);
    this.proj_out = new Linear(ws.sub('proj_out'), backend, { inF: inner, outF: C });
  }

  /**
   * x [B*F, C, H, W], context [B*F, L, D] (per frame; each video's first frame is its time context) ->
   * [B*F, C, H, W]. Traced as '0' (diffusers returns the tuple (sample,)), plus the named submodules.
   */
  forward(x: Tensor, context: Tensor, numFrames: number, trace?: Trace): Tensor {
    const [BF, C, H, W] = x.shape as [number, number, number, number];
    const B = BF / numFrames, S = H * W;
    // time_context: the first frame's context of each video, [B, L, D].
    const L = context.shape[1]!, D = context.shape[2]!;
    const cv = context.reshape([B, numFrames, L, D]);
    const first = cv.slice(1, 0, 1);
    const timeContext = first.reshape([B, L, D]);
    disposeAll(cv, first);

    const n = this.norm.forward(x);
    trace?.('norm', n);
    const np = n.permute([0, 2, 3, 1]);
    const tokens = np.reshape([BF, S, C]);
    disposeAll(n, np);
    let h = this.proj_in.forward(tokens);
    tokens.dispose();
    trace?.('proj_in', h);

    // Frame-index embedding: arange(F) repeated for each video.
    const idx = Float32Array.from({ length: BF }, (_, i) => i % numFrames);
    const t = this.backend.fromRaw(idx, [BF]);
    const tp = this.time_proj.forward(t);
    const emb = this.time_pos_embed.forward(tp); // [B*F, C]
    disposeAll(t, tp);
    trace?.('time_pos_embed', emb);
    const emb3 = emb.reshape([BF, 1, C]);

    this.transformer_blocks.forEach((block, i) => {
      const s = block.forward(h, context, subTrace(trace, `transformer_blocks.${i}`));
      h.dispose();
      const mixIn = ops.add(s, emb3);
      const m = this.temporal_transformer_blocks[i]!.forward(mixIn, numFrames, timeContext);
      mixIn.dispose();
      trace?.(`temporal_transformer_blocks.${i}`, m);
      h = this.time_mixer.forward(s, m);
      disposeAll(s, m);
      trace?.('time_mixer', h);
    });
    disposeAll(emb, emb3, timeContext);

    const o = this.proj_out.forward(h);
    h.dispose();
    trace?.('proj_out', o);
    const r = o.reshape([BF, H, W, C]);
    const p = r.permute([0, 3, 1, 2]);
    const out = ops.add(p, x);
    disposeAll(o, r, p);
    trace?.('0', out);
    return out;
  }
}
