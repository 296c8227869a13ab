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
import { Conv2d, Downsample2D, Module, ResnetBlock2D, TimestepEmbedding, Timesteps, loadParameter } from '@cnx/unet';
import type { ControlModule, ControlOutput, PreparedControl } from './control_module.js';
import { preparedFrom, timestepBatch } from './control_module.js';

/** A shape lookup over the weight file (WeightStore.shapeOf). */
export type ShapeOf = (path: string) => readonly number[] | undefined;

export interface ReleaseStructure {
  /** Sinusoid width (time_embedding.linear_1 input), 128. */
  timeProjDim: number;
  /** time_embedding width T, 256. */
  timeEmbedDim: number;
  /** down_res.i in / out channels. */
  inChannels: number[];
  outChannels: number[];
  /** GroupNorm groups of down_res.i (norm1 and norm2): the repo hard-codes [1, 8, 8]. */
  groups: number[];
  /** mid_convs.0 width. */
  midChannels: number;
  /** mid_convs.1 output F (1280: the SD1.5 mid-block width). */
  finalChannels: number;
}

/** The release module's hard-coded GroupNorm groups (ControlNeXt-SD1.5/models/controlnet.py). */
export const RELEASE_GROUPS = [1, 8, 8] as const;

/** The released widths (spec 3.1), for random-weight benchmarks. */
export const RELEASE_SD15_STRUCTURE: ReleaseStructure = {
  timeProjDim: 128, timeEmbedDim: 256, inChannels: [3, 128, 256], outChannels: [128, 256, 256],
  groups: [...RELEASE_GROUPS], midChannels: 256, finalChannels: 1280,
};

function need(shapeOf: ShapeOf, path: string, rank: number): readonly number[] {
  const s = shapeOf(path);
  if (!s) throw new Error(`ControlNeXt-SD1.5 module: the weights have no '${path}' (needed to read the module's widths)`);
  if (s.length !== rank) throw new Error(`ControlNeXt-SD1.5 module: '${path}' should have rank ${rank}, found [${s.join(', ')}]`);
  return s;
}

/** Widths from the weight shapes (the released config.json is not reliable, spec 3.1). */
export function inferReleaseStructure(shapeOf: ShapeOf, groups?: readonly number[]): ReleaseStructure {
  const te = need(shapeOf, 'time_embedding.linear_1.weight', 2);
  const inChannels: number[] = [], outChannels: number[] = [];
  for (let i = 0; shapeOf(`down_res.${i}.conv1.weight`); i++) {
    const c = need(shapeOf, `down_res.${i}.conv1.weight`, 4);
    outChannels.push(c[0]!);
    inChannels.push(c[1]!);
  }
  if (inChannels.length === 0) throw new Error("ControlNeXt-SD1.5 module: the weights have no 'down_res.0.conv1.weight'");
  const mid = need(shapeOf, 'mid_convs.0.0.weight', 4);
  const last = need(shapeOf, 'mid_convs.1.weight', 4);
  const g = groups ?? (inChannels.length === RELEASE_GROUPS.length ? RELEASE_GROUPS : undefined);
  if (!g || g.length !== inChannels.length) {
    throw new Error(`ControlNeXt-SD1.5 module: ${inChannels.length} down_res blocks need ${inChannels.length} GroupNorm group counts, ` +
      `found ${g ? `[${g.join(', ')}]` : 'none (the repo hard-codes 3: [1, 8, 8])'}`);
  }
  return {
    timeProjDim: te[1]!, timeEmbedDim: te[0]!, inChannels, outChannels, groups: [...g],
    midChannels: mid[0]!, finalChannels: last[0]!,
  };
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

export class ControlNeXtSD15Module extends Module implements ControlModule {
  readonly arch = 'release' as const;
  readonly time_proj: Timesteps;
  time_embedding: TimestepEmbedding;
  down_res: ResnetBlock2D[];
  down_sample: Downsample2D[];
  mid_convs: [ReleaseMidConvs, Conv2d];
  /** The learned strength, a 0-d tensor (key `scale`). */
  scale: Tensor;

  constructor(ws: WeightSource, private readonly backend: Backend, readonly structure: ReleaseStructure) {
    super();
    const s = structure;
    this.time_proj = new Timesteps({ numChannels: s.timeProjDim, flipSinToCos: true, downscaleFreqShift: 0 });
    this.time_embedding = new TimestepEmbedding(ws.sub('time_embedding'), backend, { inC: s.timeProjDim, timeEmbedDim: s.timeEmbedDim });
    this.down_res = s.inChannels.map((inC, i) => new ResnetBlock2D(ws.sub(`down_res.${i}`), backend, {
      inC, outC: s.outChannels[i]!, tembC: s.timeEmbedDim, groups: s.groups[i]!, eps: 1e-6,
    }));
    this.down_sample = s.outChannels.map((c, i) => new Downsample2D(ws.sub(`down_sample.${i}`), backend, { channels: c, padding: 1 }));
    const last = s.outChannels[s.outChannels.length - 1]!;
    if (last !== s.midChannels) throw new Error(`ControlNeXt-SD1.5 module: mid_convs.0 has ${s.midChannels} channels, the last down_res gives ${last}`);
    this.mid_convs = [
      new ReleaseMidConvs(ws.sub('mid_convs.0'), backend, s.midChannels),
      new Conv2d(ws.sub('mid_convs.1'), backend, { inC: s.midChannels, outC: s.finalChannels, k: 1 }),
    ];
    this.scale = loadParameter(ws, 'scale', [], backend);
  }

  get outChannels(): number { return this.structure.finalChannels; }

  private embed(timestep: Tensor | number, batch: number, trace?: Trace): Tensor {
    const t = timestepBatch(this.backend, timestep, batch);
    const proj = this.time_proj.forward(t);
    trace?.('time_proj', proj);
    const emb = this.time_embedding.forward(proj);
    trace?.('time_embedding', emb);
    t.dispose();
    proj.dispose();
    return emb;
  }

  /** From the first block's output on: down_sample.0, the other stages, mid_convs. */
  private rest(x0: Tensor, emb: Tensor, trace?: Trace): ControlOutput {
    let x = this.down_sample[0]!.forward(x0, subTrace(trace, 'down_sample.0'));
    for (let i = 1; i < this.down_res.length; i++) {
      const r = this.down_res[i]!.forward(x, emb, subTrace(trace, `down_res.${i}`));
      x.dispose();
      x = this.down_sample[i]!.forward(r, subTrace(trace, `down_sample.${i}`));
      r.dispose();
    }
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

  forwardPrepared(p: PreparedControl, timestep: Tensor | number, opts: { trace?: Trace } = {}): ControlOutput {
    const { trace } = opts;
    const emb = this.embed(timestep, p.batch, trace);
    const x0 = this.down_res[0]!.finish(p.first, emb);
    trace?.('down_res.0', x0);
    const res = this.rest(x0, emb, trace);
    x0.dispose();
    emb.dispose();
    return res;
  }
}
