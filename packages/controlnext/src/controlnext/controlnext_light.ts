// The light ControlNeXt control module shared by SD1.5-Training (`ControlNeXtModel`,
// ControlNeXt-SD1.5-Training/models/controlnext.py), SDXL (`ControlNetModel`,
// ControlNeXt-SDXL/models/controlnet.py) and SVD-v2 (`ControlNeXtSDVModel`,
// ControlNeXt-SVD-v2/models/controlnext_vid_svd.py): spec 4.1, 5.1, 7.1. Released widths in brackets:
//
//   time_proj Timesteps(128) -> time_embedding 128 -> T -> T                        emb [B, T=256]
//   embedding  Conv3x3 3->E0 stride 2 pad 1 [.0], GroupNorm(2) [.1], ReLU,
//              Conv3x3 E0->E1 pad p [.3], GroupNorm(2) [.4], ReLU,
//              Conv3x3 E1->E2 pad p [.6], GroupNorm(2) [.7], ReLU                   [64, 64, 128] @ H/2
//              (p = 1; SVD-v2 inference uses p = 0)
//   down_res.i   ResnetBlock2D(in_i -> out_i, groups_i, eps 1e-6, temb T)   [128->128, 128->256], groups [4, 8]
//   down_sample.i  Downsample2D (3x3 stride 2 pad 1)
//   mid_convs.0  Sequential(Conv3x3 [.0], ReLU, GroupNorm(8) [.2], Conv3x3 [.3], GroupNorm(8) [.4]), RESIDUAL
//   mid_convs.1  Conv1x1 C -> F                                                 [256 -> 320]
//   scale        a Python float, not in the state dict (1.0; SD1.5-Training: controlnext_scale)
//
// nn.GroupNorm layers use torch's default eps 1e-5; the ResNet blocks diffusers' 1e-6 (spec 2.3, 2.5).

import { ops, type Backend, type Tensor, type Trace, type WeightSource } from '@cnx/tensor';
import { Conv2d, GroupNorm, Module } from '@cnx/unet';
import type { ControlModule, ControlOutput, PreparedControl } from './control_module.js';
import { DownPathControlModule, inferDownPathStructure, needShape, type DownPathStructure, type ShapeOf } from './down_path_module.js';

/** The shared down path's widths (groups: config.json `groups`, class default [4, 8]) and the stem's. */
export interface LightStructure extends DownPathStructure {
  /** Output channels of embedding.0 / .3 / .6. */
  stemChannels: [number, number, number];
  /** Padding of embedding.3 and embedding.6 (1; 0 in SVD-v2 inference). */
  stemPadding: number;
  /** The module's float `scale` (not a parameter). */
  scale: number;
}

/** Hard-coded by the repo: the stem's nn.GroupNorm(2, C) and mid_convs' nn.GroupNorm(8, C). */
export const STEM_GROUPS = 2;
export const MID_GROUPS = 8;
/** Class default `groups=[4, 8]` (spec 4.1 / 5.1). */
export const LIGHT_DEFAULT_GROUPS = [4, 8] as const;
/** nn.GroupNorm default eps. */
const TORCH_GN_EPS = 1e-5;

/** The released SD1.5-Training / SDXL widths (spec 5.1) with a given output width. */
export function lightReleasedStructure(finalChannels: number, scale = 1): LightStructure {
  return {
    timeProjDim: 128, timeEmbedDim: 256, stemChannels: [64, 64, 128], stemPadding: 1,
    inChannels: [128, 128], outChannels: [128, 256], groups: [...LIGHT_DEFAULT_GROUPS],
    midChannels: 256, finalChannels, scale,
  };
}

const WHAT = 'ControlNeXt light module';

/** Widths from the weight shapes; groups, padding and scale are not in the file and come from opts. */
export function inferLightStructure(shapeOf: ShapeOf, opts: { groups?: readonly number[]; stemPadding?: number; scale?: number } = {}): LightStructure {
  const downPath = inferDownPathStructure(shapeOf, WHAT, opts.groups, LIGHT_DEFAULT_GROUPS, 'config.json "groups"; the class default is [4, 8]');
  const stemOut = (i: number) => needShape(shapeOf, WHAT, `embedding.${i}.weight`, 4)[0]!;
  return { ...downPath, stemChannels: [stemOut(0), stemOut(3), stemOut(6)], stemPadding: opts.stemPadding ?? 1, scale: opts.scale ?? 1 };
}

/** `embedding` = nn.Sequential(Conv, GN, ReLU, Conv, GN, ReLU, Conv, GN, ReLU): parameters at 0/1, 3/4, 6/7. */
export class LightStem extends Module {
  '0': Conv2d;
  '1': GroupNorm;
  '3': Conv2d;
  '4': GroupNorm;
  '6': Conv2d;
  '7': GroupNorm;

  constructor(ws: WeightSource, backend: Backend, ch: readonly [number, number, number], padding: number) {
    super();
    this['0'] = new Conv2d(ws.sub('0'), backend, { inC: 3, outC: ch[0], k: 3, stride: 2, padding: 1 });
    this['1'] = new GroupNorm(ws.sub('1'), backend, { groups: STEM_GROUPS, channels: ch[0], eps: TORCH_GN_EPS });
    this['3'] = new Conv2d(ws.sub('3'), backend, { inC: ch[0], outC: ch[1], k: 3, padding });
    this['4'] = new GroupNorm(ws.sub('4'), backend, { groups: STEM_GROUPS, channels: ch[1], eps: TORCH_GN_EPS });
    this['6'] = new Conv2d(ws.sub('6'), backend, { inC: ch[1], outC: ch[2], k: 3, padding });
    this['7'] = new GroupNorm(ws.sub('7'), backend, { groups: STEM_GROUPS, channels: ch[2], eps: TORCH_GN_EPS });
  }

  /** image [B, 3, H, W] -> [B, E2, H/2, W/2] (with padding 1). */
  forward(x: Tensor): Tensor {
    let h = x;
    for (const [conv, norm] of [[this['0'], this['1']], [this['3'], this['4']], [this['6'], this['7']]] as const) {
      const c = conv.forward(h);
      if (h !== x) h.dispose();
      const n = norm.forward(c);
      c.dispose();
      h = ops.relu(n);
      n.dispose();
    }
    return h;
  }
}

/** mid_convs.0 = nn.Sequential(Conv3x3, ReLU, GroupNorm(8), Conv3x3, GroupNorm(8)): parameters at 0, 2, 3, 4. */
export class LightMidConvs extends Module {
  '0': Conv2d;
  '2': GroupNorm;
  '3': Conv2d;
  '4': GroupNorm;

  constructor(ws: WeightSource, backend: Backend, channels: number) {
    super();
    this['0'] = new Conv2d(ws.sub('0'), backend, { inC: channels, outC: channels, k: 3, padding: 1 });
    this['2'] = new GroupNorm(ws.sub('2'), backend, { groups: MID_GROUPS, channels, eps: TORCH_GN_EPS });
    this['3'] = new Conv2d(ws.sub('3'), backend, { inC: channels, outC: channels, k: 3, padding: 1 });
    this['4'] = new GroupNorm(ws.sub('4'), backend, { groups: MID_GROUPS, channels, eps: TORCH_GN_EPS });
  }

  /** The Sequential's own output (the residual add is the caller's, as in the repo's forward). */
  forward(x: Tensor): Tensor {
    const a = this['0'].forward(x, { activation: 'relu' });
    const b = this['2'].forward(a);
    a.dispose();
    const c = this['3'].forward(b);
    b.dispose();
    const d = this['4'].forward(c);
    c.dispose();
    return d;
  }
}

export class ControlNeXtLightModule extends DownPathControlModule<LightStructure> implements ControlModule {
  readonly arch = 'light' as const;
  embedding: LightStem;
  mid_convs: [LightMidConvs, Conv2d];

  constructor(ws: WeightSource, backend: Backend, structure: LightStructure) {
    const s = structure;
    if (s.inChannels[0] !== s.stemChannels[2]) {
      throw new Error(`${WHAT}: down_res.0 takes ${s.inChannels[0]} channels, the stem (embedding.6) gives ${s.stemChannels[2]}`);
    }
    super(ws, backend, structure, WHAT);
    this.embedding = new LightStem(ws.sub('embedding'), backend, s.stemChannels, s.stemPadding);
    this.mid_convs = [
      new LightMidConvs(ws.sub('mid_convs.0'), backend, s.midChannels),
      new Conv2d(ws.sub('mid_convs.1'), backend, { inC: s.midChannels, outC: s.finalChannels, k: 1 }),
    ];
  }

  protected mid(x: Tensor, trace?: Trace): ControlOutput {
    const m = this.mid_convs[0].forward(x);
    trace?.('mid_convs.0', m);
    const xm = ops.add(m, x); // x = mid_convs[0](x) + x
    [m, x].forEach((t) => t.dispose());
    trace?.('mid_convs.1.input', xm);
    const out = this.mid_convs[1].forward(xm);
    xm.dispose();
    trace?.('mid_convs.1', out);
    return { out, scale: this.structure.scale };
  }

  /** image [B, 3, H, W] in [0, 1], timestep scalar or [B] -> {out [B, F, H/8, W/8], scale}. */
  forward(image: Tensor, timestep: Tensor | number, opts: { trace?: Trace } = {}): ControlOutput {
    const { trace } = opts;
    const emb = this.embed(timestep, image.shape[0]!, trace);
    return this.fromStem(this.embedding.forward(image), emb, trace);
  }

  /** The stem and down_res.0's conv1(silu(norm1(.))) / shortcut: once per control image. */
  prepare(image: Tensor, opts: { trace?: Trace } = {}): PreparedControl {
    return this.prepareFromStem(this.embedding.forward(image), image.shape[0]!, opts.trace);
  }
}
