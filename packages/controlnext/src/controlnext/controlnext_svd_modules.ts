// ControlNeXt-SVD control modules, both the repo's `ControlNeXtSDVModel` (spec 6.1 and 7.1):
//
//  v1 (ControlNeXt-SVD/models/controlnext_vid_svd.py): constructor arguments ignored, hard-coded
//     time_proj Timesteps(128) -> time_embedding 128 -> 256 -> 256
//     embedding  Conv3x3 3->64 s2 p1 [.0], GN(2) [.1], ReLU, Conv3x3 64->64 p0 [.3], GN(2) [.4], ReLU,
//                Conv3x3 64->128 p0 [.6], GN(2) [.7], ReLU, MaxPool2d(2, 2) [.9]
//     down_res.i / down_sample.i  [128->128, 128->256, 256->256], groups [4, 8, 8]
//     mid_convs.0 (residual) and mid_convs.1 Conv1x1 256 -> 1280 (the UNet's mid-block width)
//     scale      nn.Parameter(1.0), STORED in the file (a 0-d tensor)
//  v2 (ControlNeXt-SVD-v2/models/controlnext_vid_svd.py): the light module (controlnext_light.ts) with
//     the stem's embedding.3 / .6 at padding 0 (the training copy uses 1), no max pool, output 320 wide,
//     scale = the float 1.0 (not stored).
//
// Both take a video [B, F, 3, H, W] in [0, 1]: the frames are flattened into the batch, the time embedding
// is computed for the B videos and repeated over frames (repeat_interleave). Every layer works per frame, so
// the module is a per-frame map: forwardVideo() is the repo's path; the pipeline's path (prepare /
// forwardPrepared from DownPathControlModule) runs the F frames of one window ONCE (not on the CFG-doubled
// batch) with a batch-1 time embedding broadcast over frames, and caches the timestep-independent prefix.
// Widths are read from the weight shapes (a shrunk test module loads the same way); the GroupNorm groups of
// down_res are not in the file: config.json `groups` (v2 constructor argument), else the class defaults.

import { ops, type Backend, type Tensor, type Trace, type WeightSource } from '@cnx/tensor';
import { Conv2d, loadParameter } from '@cnx/unet';
import type { ControlModule, ControlOutput, PreparedControl } from './control_module.js';
import { ControlNeXtLightModule, LightMidConvs, LightStem, type LightStructure } from './controlnext_light.js';
import { DownPathControlModule } from './down_path_module.js';

/** [B, T] -> [B*F, T]: each row repeated F times in place (torch repeat_interleave on dim 0). */
export function repeatInterleave(x: Tensor, times: number): Tensor {
  if (times === 1) return x.contiguous();
  const rest = x.shape.slice(1);
  const v = x.reshape([x.shape[0]!, 1, ...rest]);
  const e = v.expand([x.shape[0]!, times, ...rest]);
  const c = e.contiguous();
  const out = c.reshape([x.shape[0]! * times, ...rest]);
  [v, e, c].forEach((t) => t.dispose());
  return out;
}

/** nn.MaxPool2d(2, 2) (floor mode): x [N, C, H, W] -> [N, C, floor(H/2), floor(W/2)]. */
export function maxPool2x2(x: Tensor): Tensor {
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const Ho = Math.floor(H / 2), Wo = Math.floor(W / 2);
  if (Ho === 0 || Wo === 0) throw new Error(`maxPool2x2: a ${H}x${W} map is too small for a 2x2 pool`);
  const a = x.slice(2, 0, 2 * Ho);
  const b = a.slice(3, 0, 2 * Wo);
  const r = b.reshape([N, C, Ho, 2, Wo, 2]);
  const m = ops.max(r, [3, 5]);
  [a, b, r].forEach((t) => t.dispose());
  return m;
}

/** A ControlNeXt-SVD module: the ControlModule paths plus the repo's video forward. */
export interface SvdControlModule extends ControlModule {
  readonly svdVersion: 1 | 2;
  /**
   * The repo's forward: frames [B, F, 3, H, W] in [0, 1] -> {output [B*F, C, h', w'], scale}; the time
   * embedding is computed for B and repeated over frames.
   */
  forwardVideo(frames: Tensor, timestep: Tensor | number, opts?: { trace?: Trace }): ControlOutput;
}

/**
 * The time embedding at batch 1 when the timestep is one value (always, in the SVD pipelines): every
 * frame's row would be the same, and the ResNet blocks broadcast a [1, T] embedding.
 */
function embedOnce(m: { embedBase(t: Tensor | number, b: number, trace?: Trace): Tensor }, timestep: Tensor | number, batch: number, trace?: Trace): Tensor {
  const scalar = typeof timestep === 'number' || timestep.size === 1;
  return m.embedBase(timestep, scalar ? 1 : batch, trace);
}

/** The repo's video path from the stem output: emb for B videos, repeated over F frames. */
function videoEmbedding(m: { embedBase(t: Tensor | number, b: number, trace?: Trace): Tensor }, frames: Tensor, timestep: Tensor | number, trace?: Trace): { flat: Tensor; emb: Tensor } {
  if (frames.rank !== 5 || frames.shape[2] !== 3) throw new Error(`ControlNeXt-SVD module: expected frames [B, F, 3, H, W], found ${frames.toString()}`);
  const [B, F, C, H, W] = frames.shape as [number, number, number, number, number];
  const embB = m.embedBase(timestep, B, trace);
  const emb = repeatInterleave(embB, F);
  embB.dispose();
  return { flat: frames.reshape([B * F, C, H, W]), emb };
}

// ------------------------------------------------------------------------------------------------ v2

/** ControlNeXt-SVD-v2's module: the light module, stem padding 0 (set by the loader from the variant). */
export class ControlNeXtSVDv2Module extends ControlNeXtLightModule implements SvdControlModule {
  readonly svdVersion = 2 as const;

  embedBase(t: Tensor | number, b: number, trace?: Trace): Tensor { return super.embed(t, b, trace); }
  protected override embed(timestep: Tensor | number, batch: number, trace?: Trace): Tensor {
    return embedOnce(this, timestep, batch, trace);
  }

  forwardVideo(frames: Tensor, timestep: Tensor | number, opts: { trace?: Trace } = {}): ControlOutput {
    const { trace } = opts;
    const { flat, emb } = videoEmbedding(this, frames, timestep, trace);
    const e = this.embedding.forward(flat);
    flat.dispose();
    return this.fromStem(e, emb, trace);
  }
}

// ------------------------------------------------------------------------------------------------ v1

/** v1's widths: the light layout (stem padding 0) plus the max pool; the scale is a parameter. */
export type SvdV1Structure = Omit<LightStructure, 'scale'>;

/** v1's `embedding`: the light stem, then MaxPool2d(2, 2) at index 9 (no parameters). */
export class SvdV1Stem extends LightStem {
  override forward(x: Tensor): Tensor {
    const h = super.forward(x);
    const p = maxPool2x2(h);
    h.dispose();
    return p;
  }
}

export class ControlNeXtSVDv1Module extends DownPathControlModule<SvdV1Structure> implements SvdControlModule {
  readonly arch = 'svd_v1' as const;
  readonly svdVersion = 1 as const;
  embedding: SvdV1Stem;
  mid_convs: [LightMidConvs, Conv2d];
  /** The learned strength (0-d in the file, [1] here); the UNet applies sigmoid(scale) * 1.3. */
  scale: Tensor;

  constructor(ws: WeightSource, backend: Backend, structure: SvdV1Structure) {
    const s = structure;
    if (s.inChannels[0] !== s.stemChannels[2]) {
      throw new Error(`ControlNeXt-SVD v1 module: down_res.0 takes ${s.inChannels[0]} channels, the stem (embedding.6) gives ${s.stemChannels[2]}`);
    }
    super(ws, backend, structure, 'ControlNeXt-SVD v1 module');
    this.embedding = new SvdV1Stem(ws.sub('embedding'), backend, s.stemChannels, s.stemPadding);
    this.mid_convs = [
      new LightMidConvs(ws.sub('mid_convs.0'), backend, s.midChannels),
      new Conv2d(ws.sub('mid_convs.1'), backend, { inC: s.midChannels, outC: s.finalChannels, k: 1 }),
    ];
    const sc = loadParameter(ws, 'scale', [], backend);
    this.scale = sc.reshape([1]);
    sc.dispose();
  }

  embedBase(t: Tensor | number, b: number, trace?: Trace): Tensor { return super.embed(t, b, trace); }
  protected override embed(timestep: Tensor | number, batch: number, trace?: Trace): Tensor {
    return embedOnce(this, timestep, batch, trace);
  }

  protected mid(x: Tensor, trace?: Trace): ControlOutput {
    const m = this.mid_convs[0].forward(x);
    trace?.('mid_convs.0', m);
    const xm = ops.add(m, x); // sample = mid_convs[0](sample) + sample
    [m, x].forEach((t) => t.dispose());
    trace?.('mid_convs.1.input', xm);
    const out = this.mid_convs[1].forward(xm);
    xm.dispose();
    trace?.('mid_convs.1', out);
    return { out, scale: this.scale };
  }

  /** frames [N, 3, H, W] -> {out [N, 1280, ~H/32, ~W/32], scale [1] (the raw parameter)}. */
  forward(image: Tensor, timestep: Tensor | number, opts: { trace?: Trace } = {}): ControlOutput {
    const { trace } = opts;
    const emb = this.embed(timestep, image.shape[0]!, trace);
    return this.fromStem(this.embedding.forward(image), emb, trace);
  }

  forwardVideo(frames: Tensor, timestep: Tensor | number, opts: { trace?: Trace } = {}): ControlOutput {
    const { trace } = opts;
    const { flat, emb } = videoEmbedding(this, frames, timestep, trace);
    const e = this.embedding.forward(flat);
    flat.dispose();
    return this.fromStem(e, emb, trace);
  }

  /** The stem (with its pool) and down_res.0's conv1(silu(norm1(.))) / shortcut: once per set of frames. */
  prepare(image: Tensor, opts: { trace?: Trace } = {}): PreparedControl {
    return this.prepareFromStem(this.embedding.forward(image), image.shape[0]!, opts.trace);
  }
}
