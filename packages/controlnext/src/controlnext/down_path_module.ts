// What the two ControlNeXt control-module architectures share (controlnext_sd15.ts: the SD1.5 release
// module; controlnext_light.ts: the light module of SD1.5-Training / SDXL / SVD-v2), spec 3.1 / 4.1:
//
//   time_proj Timesteps(128, flip_sin_to_cos, shift 0) -> time_embedding 128 -> T -> T     emb [B, T]
//   down_res.i     ResnetBlock2D(in_i -> out_i, groups_i, eps 1e-6, temb T)
//   down_sample.i  Downsample2D (3x3 stride 2 pad 1)
//
// with the widths read from the weight shapes. Each module puts its own input before down_res.0 (the
// image itself, or the light module's stem) and its own mid_convs after the last down_sample.

import { subTrace, type Backend, type Tensor, type Trace, type WeightSource } from '@cnx/tensor';
import { Downsample2D, Module, ResnetBlock2D, TimestepEmbedding, Timesteps } from '@cnx/unet';
import type { ControlOutput, PreparedControl } from './control_module.js';
import { preparedFrom, timestepBatch } from './control_module.js';

/** A shape lookup over the weight file (WeightStore.shapeOf). */
export type ShapeOf = (path: string) => readonly number[] | undefined;

/** The widths of the shared part, and the mid_convs widths both modules have. */
export interface DownPathStructure {
  /** Sinusoid width (time_embedding.linear_1 input), 128. */
  timeProjDim: number;
  /** time_embedding width T, 256. */
  timeEmbedDim: number;
  /** down_res.i in / out channels. */
  inChannels: number[];
  outChannels: number[];
  /** GroupNorm groups of down_res.i (norm1 and norm2): not in the file. */
  groups: number[];
  /** mid_convs.0 width. */
  midChannels: number;
  /** mid_convs.1 output F (the UNet width at the injection point). */
  finalChannels: number;
}

/** The shape of `path`, which must exist with the given rank; errors name the module (`what`). */
export function needShape(shapeOf: ShapeOf, what: string, path: string, rank: number): readonly number[] {
  const s = shapeOf(path);
  if (!s) throw new Error(`${what}: the weights have no '${path}' (needed to read the module's widths)`);
  if (s.length !== rank) throw new Error(`${what}: '${path}' should have rank ${rank}, found [${s.join(', ')}]`);
  return s;
}

/**
 * DownPathStructure from the weight shapes. The groups are not in the file: `groups`, else
 * `defaultGroups` when the block count matches it; `groupsHint` says where they come from in the error.
 */
export function inferDownPathStructure(
  shapeOf: ShapeOf, what: string, groups: readonly number[] | undefined, defaultGroups: readonly number[], groupsHint: string,
): DownPathStructure {
  const te = needShape(shapeOf, what, 'time_embedding.linear_1.weight', 2);
  const inChannels: number[] = [], outChannels: number[] = [];
  for (let i = 0; shapeOf(`down_res.${i}.conv1.weight`); i++) {
    const c = needShape(shapeOf, what, `down_res.${i}.conv1.weight`, 4);
    outChannels.push(c[0]!);
    inChannels.push(c[1]!);
  }
  if (inChannels.length === 0) throw new Error(`${what}: the weights have no 'down_res.0.conv1.weight'`);
  const mid = needShape(shapeOf, what, 'mid_convs.0.0.weight', 4);
  const last = needShape(shapeOf, what, 'mid_convs.1.weight', 4);
  const g = groups ?? (inChannels.length === defaultGroups.length ? defaultGroups : undefined);
  if (!g || g.length !== inChannels.length) {
    throw new Error(`${what}: ${inChannels.length} down_res blocks need ${inChannels.length} GroupNorm group counts, ` +
      `found ${g ? `[${g.join(', ')}]` : `none (${groupsHint})`}`);
  }
  // Each block normalises its input and output widths with these groups (ResnetBlock2D norm1 / norm2).
  g.forEach((n, i) => {
    if (!Number.isInteger(n) || n < 1 || inChannels[i]! % n !== 0 || outChannels[i]! % n !== 0) {
      throw new Error(`${what}: GroupNorm groups [${g.join(', ')}] (${groupsHint}): entry ${i} must be a positive integer dividing ` +
        `block ${i}'s ${inChannels[i]} input and ${outChannels[i]} output channels, found ${n}`);
    }
  });
  return {
    timeProjDim: te[1]!, timeEmbedDim: te[0]!, inChannels, outChannels, groups: [...g],
    midChannels: mid[0]!, finalChannels: last[0]!,
  };
}

/** The time embedding and down path of a control module; subclasses add the input side and mid_convs. */
export abstract class DownPathControlModule<S extends DownPathStructure> extends Module {
  readonly time_proj: Timesteps;
  time_embedding: TimestepEmbedding;
  down_res: ResnetBlock2D[];
  down_sample: Downsample2D[];

  /** `what` names the module in errors. */
  constructor(ws: WeightSource, protected readonly backend: Backend, readonly structure: S, what: string) {
    super();
    const s = structure;
    this.time_proj = new Timesteps({ numChannels: s.timeProjDim, flipSinToCos: true, downscaleFreqShift: 0 });
    this.time_embedding = new TimestepEmbedding(ws.sub('time_embedding'), backend, { inC: s.timeProjDim, timeEmbedDim: s.timeEmbedDim });
    this.down_res = s.inChannels.map((inC, i) => new ResnetBlock2D(ws.sub(`down_res.${i}`), backend, {
      inC, outC: s.outChannels[i]!, tembC: s.timeEmbedDim, groups: s.groups[i]!, eps: 1e-6,
    }));
    this.down_sample = s.outChannels.map((c, i) => new Downsample2D(ws.sub(`down_sample.${i}`), backend, { channels: c, padding: 1 }));
    const last = s.outChannels[s.outChannels.length - 1]!;
    if (last !== s.midChannels) throw new Error(`${what}: mid_convs.0 has ${s.midChannels} channels, the last down_res gives ${last}`);
  }

  get outChannels(): number { return this.structure.finalChannels; }

  /** mid_convs from the last down_sample's output x (which it disposes) to the module's output. */
  protected abstract mid(x: Tensor, trace?: Trace): ControlOutput;

  protected embed(timestep: Tensor | number, batch: number, trace?: Trace): Tensor {
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
  protected rest(x0: Tensor, emb: Tensor, trace?: Trace): ControlOutput {
    let x = this.down_sample[0]!.forward(x0, subTrace(trace, 'down_sample.0'));
    for (let i = 1; i < this.down_res.length; i++) {
      const r = this.down_res[i]!.forward(x, emb, subTrace(trace, `down_res.${i}`));
      x.dispose();
      x = this.down_sample[i]!.forward(r, subTrace(trace, `down_sample.${i}`));
      r.dispose();
    }
    return this.mid(x, trace);
  }

  /** Stem-based modules (light, SVD): down_res.0 and the rest from the stem's output e; consumes e and emb. */
  protected fromStem(e: Tensor, emb: Tensor, trace?: Trace): ControlOutput {
    trace?.('embedding', e);
    const x0 = this.down_res[0]!.forward(e, emb, subTrace(trace, 'down_res.0'));
    e.dispose();
    const res = this.rest(x0, emb, trace);
    x0.dispose();
    emb.dispose();
    return res;
  }

  /** Stem-based modules: the prepared prefix (down_res.0's input-only part) from the stem's output e, consumed. */
  protected prepareFromStem(e: Tensor, batch: number, trace?: Trace): PreparedControl {
    trace?.('embedding', e);
    const first = this.down_res[0]!.prefix(e);
    e.dispose();
    return preparedFrom(batch, first);
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
