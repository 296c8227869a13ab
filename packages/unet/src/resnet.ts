// diffusers ResnetBlock2D (diffusers/models/resnet.py, v0.29.2), the default configuration every SD
// model and ControlNeXt module uses: time_embedding_norm "default", SiLU, no up/down inside the block.
//
//   h = conv1(silu(norm1(x)));  h += time_emb_proj(silu(temb))[:, :, None, None];
//   h = conv2(silu(norm2(h)));  out = (shortcut(x) + h) / output_scale_factor
//
// with shortcut = conv_shortcut (1x1) when in != out, else identity.
//
// forward = finish(prefix(x), temb): the split at the time-embedding add lets a caller whose input does
// not depend on the timestep (ControlNeXt's first control block) compute prefix(x) =
// {conv1(silu(norm1(x))), shortcut(x)} once and run only finish() at each step, op for op the same.

import { ops, type Backend, type Tensor, type Trace, type WeightSource } from '@cnx/tensor';
import { Module } from './module.js';
import { Conv2d } from './layers/conv2d.js';
import { GroupNorm } from './layers/group_norm.js';
import { Linear } from './layers/linear.js';

export interface ResnetBlock2DOptions {
  inC: number;
  /** Defaults to inC. */
  outC?: number;
  /** Width of the time embedding; undefined = no time_emb_proj (VAE blocks: temb_channels=None). */
  tembC?: number;
  groups: number;
  /** diffusers `groups_out`, defaults to `groups`. */
  groupsOut?: number;
  eps: number;
  outputScaleFactor?: number;
  /** diffusers `use_in_shortcut`; defaults to inC != outC. */
  useInShortcut?: boolean;
}

/** The timestep-independent part of a ResnetBlock2D's forward for an input x [B, Cin, H, W]. */
export interface ResnetPrefix {
  /** conv1(silu(norm1(x))): [B, Cout, H, W]. */
  h: Tensor;
  /** conv_shortcut(x), or x itself (a new view; a copy when x is not contiguous) without a shortcut: [B, Cout, H, W]. */
  skip: Tensor;
}

export class ResnetBlock2D extends Module {
  norm1: GroupNorm;
  conv1: Conv2d;
  time_emb_proj?: Linear;
  norm2: GroupNorm;
  conv2: Conv2d;
  conv_shortcut?: Conv2d;
  readonly outputScaleFactor: number;

  constructor(ws: WeightSource, backend: Backend, opts: ResnetBlock2DOptions) {
    super();
    const outC = opts.outC ?? opts.inC;
    this.outputScaleFactor = opts.outputScaleFactor ?? 1;
    this.norm1 = new GroupNorm(ws.sub('norm1'), backend, { groups: opts.groups, channels: opts.inC, eps: opts.eps });
    this.conv1 = new Conv2d(ws.sub('conv1'), backend, { inC: opts.inC, outC, k: 3, padding: 1 });
    if (opts.tembC !== undefined) this.time_emb_proj = new Linear(ws.sub('time_emb_proj'), backend, { inF: opts.tembC, outF: outC });
    this.norm2 = new GroupNorm(ws.sub('norm2'), backend, { groups: opts.groupsOut ?? opts.groups, channels: outC, eps: opts.eps });
    this.conv2 = new Conv2d(ws.sub('conv2'), backend, { inC: outC, outC, k: 3, padding: 1 });
    if (opts.useInShortcut ?? opts.inC !== outC) {
      this.conv_shortcut = new Conv2d(ws.sub('conv_shortcut'), backend, { inC: opts.inC, outC, k: 1 });
    }
  }

  /** x [B, Cin, H, W], temb [B, tembC] (the raw time embedding; SiLU is applied here) -> [B, Cout, H, W]. */
  forward(x: Tensor, temb?: Tensor, trace?: Trace): Tensor {
    return this.finish(this.prefix(x, trace), temb, trace, true);
  }

  /**
   * The timestep-independent part of forward for x [B, Cin, H, W]: conv1(silu(norm1(x))) and the
   * shortcut. The caller owns both tensors (a control module caches them for a whole generation).
   */
  prefix(x: Tensor, trace?: Trace): ResnetPrefix {
    const h0 = this.norm1.forwardSilu(x, trace && ((n) => trace('norm1', n)));
    const h = this.conv1.forward(h0);
    h0.dispose();
    trace?.('conv1', h);
    const skip = this.conv_shortcut ? this.conv_shortcut.forward(x) : x.contiguous();
    return { h, skip };
  }

  /**
   * The rest of forward from a prefix and temb [B or 1, tembC]. A prefix of batch 1 with temb of batch
   * B (or the reverse) broadcasts. `consume` disposes the prefix as soon as it is used (forward's
   * memory profile); otherwise the prefix stays with the caller, untouched.
   */
  finish(p: ResnetPrefix, temb?: Tensor, trace?: Trace, consume = false): Tensor {
    let h = p.h;
    if (this.time_emb_proj) {
      if (!temb) throw new Error('ResnetBlock2D: this block has time_emb_proj and needs a time embedding [B, tembC]');
      const act = ops.silu(temb);
      const t = this.time_emb_proj.forward(act);
      act.dispose();
      trace?.('time_emb_proj', t);
      const t4 = t.reshape([t.shape[0]!, t.shape[1]!, 1, 1]); // [B, C, 1, 1], broadcast over H, W
      h = ops.add(p.h, t4);
      [t, t4].forEach((v) => v.dispose());
      if (consume) p.h.dispose();
    }
    const h2 = this.norm2.forwardSilu(h, trace && ((n) => trace('norm2', n)));
    if (h !== p.h || consume) h.dispose();
    const skip = p.skip.shape[0] === h2.shape[0] ? p.skip : p.skip.expand(h2.shape);
    let out: Tensor;
    if (this.outputScaleFactor === 1) {
      out = this.conv2.forward(h2, { residual: skip }); // skip + conv2(h), fused
    } else {
      const c = this.conv2.forward(h2);
      const s = ops.add(skip, c);
      out = ops.scale(s, 1 / this.outputScaleFactor);
      [c, s].forEach((v) => v.dispose());
    }
    h2.dispose();
    if (skip !== p.skip) skip.dispose();
    if (consume) p.skip.dispose();
    trace?.('', out);
    return out;
  }
}
