// The ControlNeXt-SD1.5 release control module: `ControlNetModel` of
// ControlNeXt-SD1.5/models/controlnet.py (spec 3.1). Its constructor ignores its arguments; the layers
// are hard-coded (released widths in brackets), here read from the weight shapes:
//
//   time_proj  Timesteps(128, flip_sin_to_cos, shift 0) -> time_embedding 128 -> T -> T    emb [B, T=256]
//   down_res.i   ResnetBlock2D(in_i -> out_i, groups_i, eps 1e-6, temb T)  [3->128, 128->256, 256->256],
//                groups [1, 8, 8] (not in the file: hard-coded by the repo, overridable)
//   down_sample.i  Downsample2D (3x3 stride 2 pad 1)                       image / 2^(i+1)
//   mid_convs.0  Sequential(Conv3x3 [.0], ReLU, Conv3x3 [.2])  NOT residual     [256 -> 256]
//   mid_convs.1  Conv1x1 C -> F                                                  [256 -> 1280]
//   scale        learned 0-d parameter
//
// All of it runs at full image resolution first (down_res.0 at H x W), which is why this module is
// heavy (about 37 % of a UNet step at 512, spec 12.4). forward() returns {out [B, F, H/8, W/8], scale}.

import { subTrace, type Backend, type Tensor, type Trace, type WeightSource } from '@cnx/tensor';
import { Conv2d, Module, loadParameter } from '@cnx/unet';
import type { ControlModule, ControlOutput, PreparedControl } from './control_module.js';
import { preparedFrom } from './control_module.js';
import { DownPathControlModule, inferDownPathStructure, type DownPathStructure, type ShapeOf } from './down_path_module.js';

/** The release module's widths: the shared down path's, nothing more (the scale is a parameter). */
export type ReleaseStructure = DownPathStructure;

/** The release module's hard-coded GroupNorm groups (ControlNeXt-SD1.5/models/controlnet.py). */
export const RELEASE_GROUPS = [1, 8, 8] as const;

/** The released widths (spec 3.1), for random-weight benchmarks. */
export const RELEASE_SD15_STRUCTURE: ReleaseStructure = {
  timeProjDim: 128, timeEmbedDim: 256, inChannels: [3, 128, 256], outChannels: [128, 256, 256],
  groups: [...RELEASE_GROUPS], midChannels: 256, finalChannels: 1280,
};

const WHAT = 'ControlNeXt-SD1.5 module';

/** Widths from the weight shapes (the released config.json is not reliable, spec 3.1). */
export function inferReleaseStructure(shapeOf: ShapeOf, groups?: readonly number[]): ReleaseStructure {
  return inferDownPathStructure(shapeOf, WHAT, groups, RELEASE_GROUPS, 'the repo hard-codes 3: [1, 8, 8]');
}

/** mid_convs.0 = nn.Sequential(Conv3x3, ReLU, Conv3x3): parameters at indices 0 and 2. */
export class ReleaseMidConvs extends Module {
  '0': Conv2d;
  '2': Conv2d;

  constructor(ws: WeightSource, backend: Backend, channels: number) {
    super();
    this['0'] = new Conv2d(ws.sub('0'), backend, { inC: channels, outC: channels, k: 3, padding: 1 });
    this['2'] = new Conv2d(ws.sub('2'), backend, { inC: channels, outC: channels, k: 3, padding: 1 });
  }

  forward(x: Tensor): Tensor {
    const h = this['0'].forward(x, { activation: 'relu' });
    const y = this['2'].forward(h);
    h.dispose();
    return y;
  }
}

export class ControlNeXtSD15Module extends DownPathControlModule<ReleaseStructure> implements ControlModule {
  readonly arch = 'release' as const;
  mid_convs: [ReleaseMidConvs, Conv2d];
  /** The learned strength, a 0-d tensor (key `scale`). */
  scale: Tensor;

  constructor(ws: WeightSource, backend: Backend, structure: ReleaseStructure) {
    super(ws, backend, structure, WHAT);
    const s = structure;
    this.mid_convs = [
      new ReleaseMidConvs(ws.sub('mid_convs.0'), backend, s.midChannels),
      new Conv2d(ws.sub('mid_convs.1'), backend, { inC: s.midChannels, outC: s.finalChannels, k: 1 }),
    ];
    this.scale = loadParameter(ws, 'scale', [], backend);
  }

  protected mid(x: Tensor, trace?: Trace): ControlOutput {
    const m = this.mid_convs[0].forward(x);
    x.dispose();
    trace?.('mid_convs.0', m);
    trace?.('mid_convs.1.input', m);
    const out = this.mid_convs[1].forward(m);
    m.dispose();
    trace?.('mid_convs.1', out);
    const scale = this.scale.reshape([1]);
    return { out, scale };
  }

  /** image [B, 3, H, W] in [0, 1], timestep scalar or [B] -> {out [B, F, H/8, W/8], scale [1]}. */
  forward(image: Tensor, timestep: Tensor | number, opts: { trace?: Trace } = {}): ControlOutput {
    const { trace } = opts;
    const emb = this.embed(timestep, image.shape[0]!, trace);
    const x0 = this.down_res[0]!.forward(image, emb, subTrace(trace, 'down_res.0'));
    const res = this.rest(x0, emb, trace);
    x0.dispose();
    emb.dispose();
    return res;
  }

  /** down_res.0's conv1(silu(norm1(image))) and conv_shortcut(image): once per control image. */
  prepare(image: Tensor): PreparedControl {
    return preparedFrom(image.shape[0]!, this.down_res[0]!.prefix(image));
  }
}
