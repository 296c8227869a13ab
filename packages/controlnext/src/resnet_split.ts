// diffusers ResnetBlock2D split at the time-embedding add (diffusers/models/resnet.py, v0.29.2):
//
//   forward(x, temb) = skip(x) + conv2(silu(norm2( conv1(silu(norm1(x))) + time_emb_proj(silu(temb)) )))
//                                                 \________ prefix ________/
//
// The prefix conv1(silu(norm1(x))) and skip(x) do not depend on the timestep, so a control module whose
// first block sees a timestep-independent input (the control image, or the stem's output) can compute
// them once per generation and run only the suffix at each step. The suffix below is the remainder of
// @cnx/unet's ResnetBlock2D.forward, op for op, so cached and uncached paths agree to rounding (tested
// in test/cached_prefix.test.ts).

import { ops, type Tensor } from '@cnx/tensor';
import type { ResnetBlock2D } from '@cnx/unet';

/** The timestep-independent part of a ResnetBlock2D for input x [B, Cin, H, W]. */
export interface ResnetPrefix {
  /** conv1(silu(norm1(x))): [B, Cout, H, W]. */
  h: Tensor;
  /** conv_shortcut(x), or x itself (a new view) when the block has no shortcut: [B, Cout, H, W]. */
  skip: Tensor;
}

export function resnetPrefix(block: ResnetBlock2D, x: Tensor): ResnetPrefix {
  const a = block.norm1.forward(x, true);
  const h = block.conv1.forward(a);
  a.dispose();
  const skip = block.conv_shortcut ? block.conv_shortcut.forward(x) : x.contiguous();
  return { h, skip };
}

/** The block's output from its prefix and the time embedding temb [B or 1, tembC]. */
export function resnetSuffix(block: ResnetBlock2D, prefix: ResnetPrefix, temb: Tensor | undefined): Tensor {
  if (block.outputScaleFactor !== 1) throw new Error(`resnetSuffix: output_scale_factor ${block.outputScaleFactor} is not supported (control modules use 1)`);
  let h = prefix.h;
  if (block.time_emb_proj) {
    if (!temb) throw new Error('resnetSuffix: this block has time_emb_proj and needs a time embedding [B, tembC]');
    const act = ops.silu(temb);
    const t = block.time_emb_proj.forward(act);
    const t4 = t.reshape([t.shape[0]!, t.shape[1]!, 1, 1]); // [B, C, 1, 1], broadcast over H, W
    h = ops.add(prefix.h, t4);
    [act, t, t4].forEach((v) => v.dispose());
  }
  const h2 = block.norm2.forward(h, true);
  if (h !== prefix.h) h.dispose();
  // The cached prefix may be batch 1 while temb is batch B (or the reverse): broadcast the skip.
  const skip = prefix.skip.shape[0] === h2.shape[0] ? prefix.skip : prefix.skip.expand(h2.shape);
  const out = block.conv2.forward(h2, { residual: skip });
  h2.dispose();
  if (skip !== prefix.skip) skip.dispose();
  return out;
}
