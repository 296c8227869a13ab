// The video ResNet pieces of diffusers/models/resnet.py (v0.29.2) that Stable Video Diffusion's UNet and
// temporal VAE decoder are built from:
//   TemporalConv3d        nn.Conv3d with a (kt, 1, 1) kernel: a convolution along the frames only
//   TemporalResnetBlock   GroupNorm(32) -> SiLU -> Conv3d(3,1,1) (+ time_emb_proj(SiLU(temb)) per frame)
//                         -> GroupNorm(32) -> SiLU -> Conv3d(3,1,1), + shortcut (Conv3d 1x1x1 when in != out)
//   AlphaBlender          x = alpha * x_spatial + (1 - alpha) * x_temporal, alpha = sigmoid(mix_factor)
//                         ('learned' / 'learned_with_images' with an all-zero image_only_indicator, which
//                         is what every SVD pipeline passes); switch_spatial_to_temporal_mix: alpha -> 1 - alpha
//   SpatioTemporalResBlock  spatial_res_block (ResnetBlock2D, per frame), then temporal_res_block over the
//                         frames of each video, blended by time_mixer
//
// Layouts: the models keep activations as diffusers does, frames flattened into the batch:
// [B*F, C, H, W]. The temporal block works on [B, C, F, H*W] (the memory of diffusers' [B, C, F, H, W]):
// its GroupNorm then normalises each video over (C/32, F, H, W) exactly as GroupNorm on a 5-D tensor
// does, and a (kt, 1, 1) Conv3d is a conv2d with a (kt, 1) kernel and padding (kt-1)/2 on the frame axis.

import { ops, subTrace, type Backend, type Tensor, type Trace, type WeightSource } from '@cnx/tensor';
import { loadParameter, Module } from './module.js';
import { GroupNorm } from './layers/group_norm.js';
import { Linear } from './layers/linear.js';
import { ResnetBlock2D } from './resnet.js';

function disposeAll(...ts: (Tensor | undefined)[]): void {
  for (const t of ts) t?.dispose();
}

/** nn.Conv3d(inC, outC, kernel (kt, 1, 1), padding ((kt-1)/2, 0, 0)): weight [O, C, kt, 1, 1], bias [O]. */
export class TemporalConv3d extends Module {
  weight: Tensor;
  bias: Tensor;

  constructor(ws: WeightSource, backend: Backend, readonly opts: { inC: number; outC: number; kt: number }) {
    super();
    if (opts.kt % 2 !== 1) throw new Error(`TemporalConv3d: kernel depth ${opts.kt} must be odd (padding (kt-1)/2)`);
    this.weight = loadParameter(ws, 'weight', [opts.outC, opts.inC, opts.kt, 1, 1], backend, { half: true });
    this.bias = loadParameter(ws, 'bias', [opts.outC], backend);
  }

  /** x [N, C, F, P] (P = H*W positions) -> [N, O, F, P]; frames outside [0, F) are zeros. */
  forward(x: Tensor, residual?: Tensor): Tensor {
    const { inC, outC, kt } = this.opts;
    const w = this.weight.reshape([outC, inC, kt, 1]); // a 16-bit weight is widened by the conv kernel on load
    const p = (kt - 1) / 2;
    const y = ops.conv2d(x, w, this.bias, { padding: [p, p, 0, 0], residual });
    w.dispose();
    return y;
  }
}

export interface TemporalResnetBlockOptions {
  inC: number;
  outC: number;
  /** Time embedding width; undefined in the VAE decoder (temb_channels=None). */
  tembC?: number;
  eps: number;
}

export class TemporalResnetBlock extends Module {
  norm1: GroupNorm;
  conv1: TemporalConv3d;
  time_emb_proj?: Linear;
  norm2: GroupNorm;
  conv2: TemporalConv3d;
  conv_shortcut?: TemporalConv3d;

  constructor(ws: WeightSource, backend: Backend, o: TemporalResnetBlockOptions) {
    super();
    this.norm1 = new GroupNorm(ws.sub('norm1'), backend, { groups: 32, channels: o.inC, eps: o.eps });
    this.conv1 = new TemporalConv3d(ws.sub('conv1'), backend, { inC: o.inC, outC: o.outC, kt: 3 });
    if (o.tembC !== undefined) this.time_emb_proj = new Linear(ws.sub('time_emb_proj'), backend, { inF: o.tembC, outF: o.outC });
    this.norm2 = new GroupNorm(ws.sub('norm2'), backend, { groups: 32, channels: o.outC, eps: o.eps });
    this.conv2 = new TemporalConv3d(ws.sub('conv2'), backend, { inC: o.outC, outC: o.outC, kt: 3 });
    if (o.inC !== o.outC) this.conv_shortcut = new TemporalConv3d(ws.sub('conv_shortcut'), backend, { inC: o.inC, outC: o.outC, kt: 1 });
  }

  /**
   * x [B, C, F, P] -> [B, O, F, P]; temb [B*F, tembC] (per frame, frames of a video consecutive) or
   * [1, tembC] (one embedding for every frame).
   */
  forward(x: Tensor, temb?: Tensor): Tensor {
    const [B, , F] = x.shape as [number, number, number, number];
    const h0 = this.norm1.forward(x, true);
    let h = this.conv1.forward(h0);
    h0.dispose();
    if (this.time_emb_proj) {
      if (!temb) throw new Error('TemporalResnetBlock: this block has time_emb_proj and needs a time embedding');
      const act = ops.silu(temb);
      const t = this.time_emb_proj.forward(act); // [B*F or 1, O]
      act.dispose();
      const O = t.shape[1]!;
      // temb.reshape(B, F, O) -> [B, O, F, 1] (diffusers: [:, :, :, None, None].permute(0, 2, 1, 3, 4))
      const t4 = t.shape[0] === 1 ? t.reshape([1, O, 1, 1]) : t.reshape([B, F, O, 1]);
      const tv = t.shape[0] === 1 ? t4 : t4.permute([0, 2, 1, 3]);
      const sum = ops.add(h, tv);
      disposeAll(t, t4, tv === t4 ? undefined : tv, h);
      h = sum;
    }
    const h2 = this.norm2.forward(h, true);
    h.dispose();
    const skip = this.conv_shortcut ? this.conv_shortcut.forward(x) : x;
    const out = this.conv2.forward(h2, skip); // skip + conv2(h), fused
    h2.dispose();
    if (skip !== x) skip.dispose();
    return out;
  }
}

/**
 * diffusers AlphaBlender with image_only_indicator all zeros: alpha = sigmoid(mix_factor) for the
 * 'learned' and 'learned_with_images' strategies (the 'fixed' strategy has no parameter and is not used
 * by SVD). `switchSpatialToTemporalMix` (the temporal VAE) uses 1 - alpha.
 */
export class AlphaBlender extends Module {
  mix_factor: Tensor;

  constructor(ws: WeightSource, backend: Backend, readonly switchSpatialToTemporalMix: boolean) {
    super();
    this.mix_factor = loadParameter(ws, 'mix_factor', [1], backend);
  }

  /** alpha * spatial + (1 - alpha) * temporal; inputs of one shape, any layouts; contiguous result. */
  forward(spatial: Tensor, temporal: Tensor): Tensor {
    const s = ops.sigmoid(this.mix_factor);
    const oneMinus = ops.affine(s, -1, 1);
    const [a, b] = this.switchSpatialToTemporalMix ? [oneMinus, s] : [s, oneMinus];
    const p = ops.mul(spatial, a);
    const q = ops.mul(temporal, b);
    const out = ops.add(p, q);
    disposeAll(s, oneMinus, p, q);
    return out;
  }
}

export interface SpatioTemporalResBlockOptions {
  inC: number;
  outC: number;
  tembC?: number;
  /** Spatial ResNet eps. */
  eps: number;
  /** Temporal ResNet eps (defaults to eps). */
  temporalEps?: number;
  /** AlphaBlender switch_spatial_to_temporal_mix (true in the VAE decoder). */
  switchSpatialToTemporalMix?: boolean;
}

export class SpatioTemporalResBlock extends Module {
  spatial_res_block: ResnetBlock2D;
  temporal_res_block: TemporalResnetBlock;
  time_mixer: AlphaBlender;

  constructor(ws: WeightSource, backend: Backend, o: SpatioTemporalResBlockOptions) {
    super();
    this.spatial_res_block = new ResnetBlock2D(ws.sub('spatial_res_block'), backend, {
      inC: o.inC, outC: o.outC, tembC: o.tembC, groups: 32, eps: o.eps,
    });
    this.temporal_res_block = new TemporalResnetBlock(ws.sub('temporal_res_block'), backend, {
      inC: o.outC, outC: o.outC, tembC: o.tembC, eps: o.temporalEps ?? o.eps,
    });
    this.time_mixer = new AlphaBlender(ws.sub('time_mixer'), backend, o.switchSpatialToTemporalMix ?? false);
  }

  /**
   * x [B*F, Cin, H, W], temb [B*F, T] (or [1, T], or undefined without time embedding), numFrames F ->
   * [B*F, Cout, H, W]. Traces 'spatial_res_block', 'temporal_res_block' and 'time_mixer' (the latter two
   * in diffusers' [B, C, F, H, W] layout) and '' (the block output).
   */
  forward(x: Tensor, temb: Tensor | undefined, numFrames: number, trace?: Trace): Tensor {
    const s = this.spatial_res_block.forward(x, temb, subTrace(trace, 'spatial_res_block'));
    const [BF, C, H, W] = s.shape as [number, number, number, number];
    if (BF % numFrames !== 0) throw new Error(`SpatioTemporalResBlock: batch ${BF} is not a multiple of ${numFrames} frames`);
    const B = BF / numFrames, P = H * W;
    const sv = s.reshape([B, numFrames, C, P]);
    const sp = sv.permute([0, 2, 1, 3]);
    const s5 = sp.contiguous(); // [B, C, F, P]
    sp.dispose();
    const t5 = this.temporal_res_block.forward(s5, temb);
    s5.dispose();
    if (trace) {
      const v = t5.reshape([B, C, numFrames, H, W]);
      trace('temporal_res_block', v);
      v.dispose();
    }
    // Blend in the output layout [B, F, C, P]: the temporal result is read through a permuted view.
    const tv = t5.permute([0, 2, 1, 3]);
    const mixed = this.time_mixer.forward(sv, tv);
    disposeAll(tv, t5, sv, s);
    if (trace) {
      const m4 = mixed.permute([0, 2, 1, 3]);
      const m5 = m4.contiguous();
      const v = m5.reshape([B, C, numFrames, H, W]);
      trace('time_mixer', v);
      disposeAll(m4, m5, v);
    }
    const out = mixed.reshape([BF, C, H, W]);
    mixed.dispose();
    trace?.('', out);
    return out;
  }
}
