// The UNet and VAE blocks of diffusers/models/unets/unet_2d_blocks.py (v0.29.2), in the configurations
// UNet2DConditionModel and AutoencoderKL build: CrossAttnDownBlock2D, DownBlock2D,
// UNetMidBlock2DCrossAttn, UpBlock2D, CrossAttnUpBlock2D, and the VAE's DownEncoderBlock2D,
// UNetMidBlock2D and UpDecoderBlock2D. Trace names follow the module's python outputs: a down block
// reports '0' (hidden state) and '1.j' (its j-th skip tensor), other blocks report '' (their output).

import { ops, subTrace, type Backend, type Tensor, type Trace, type WeightSource } from '@cnx/tensor';
import { Module } from './module.js';
import { Attention } from './attention.js';
import { Downsample2D } from './downsampling.js';
import { ResnetBlock2D } from './resnet.js';
import { Transformer2DModel } from './transformer_2d.js';
import { Upsample2D } from './upsampling.js';

/** What every resnet-carrying block needs. */
export interface BlockOptions {
  inC: number;
  outC: number;
  /** Time embedding width; undefined for the VAE (temb_channels=None). */
  tembC?: number;
  numLayers: number;
  groups: number;
  eps: number;
}

/** The transformer of a cross-attention block. */
export interface CrossAttnOptions {
  heads: number;
  crossAttentionDim: number;
  /** Transformer depth per layer (diffusers transformer_layers_per_block: an int or one per layer). */
  transformerLayers: number | readonly number[];
  useLinearProjection: boolean;
}

/** A down block's result: `hidden` goes on, `skips` are the residual tensors for the up path (owned separately). */
export interface DownBlockOutput {
  hidden: Tensor;
  skips: Tensor[];
}

function depthAt(layers: number | readonly number[], i: number, block: string): number {
  if (typeof layers === 'number') return layers;
  const d = layers[i];
  if (d === undefined) throw new Error(`${block}: transformer_layers_per_block ${JSON.stringify(layers)} has no entry for layer ${i}`);
  return d;
}

function transformer(ws: WeightSource, backend: Backend, c: CrossAttnOptions, channels: number, groups: number, i: number, block: string): Transformer2DModel {
  if (channels % c.heads !== 0) throw new Error(`${block}: ${channels} channels do not split into ${c.heads} attention heads`);
  return new Transformer2DModel(ws.sub(`attentions.${i}`), backend, {
    heads: c.heads, dimHead: channels / c.heads, inC: channels, numLayers: depthAt(c.transformerLayers, i, block),
    crossAttentionDim: c.crossAttentionDim, groups, useLinearProjection: c.useLinearProjection,
  });
}

/** Replace `h` by `f(h)`, disposing `h`. */
function step(h: Tensor, f: (h: Tensor) => Tensor): Tensor {
  const out = f(h);
  if (out !== h) h.dispose();
  return out;
}

// ------------------------------------------------------------------------------------------- down

/** Shared by DownBlock2D and CrossAttnDownBlock2D: resnets (+ attentions), then an optional stride-2 conv. */
abstract class DownBlockBase extends Module {
  abstract resnets: ResnetBlock2D[];
  abstract downsamplers?: Downsample2D[];
  protected abstract attend(i: number, h: Tensor, context: Tensor | undefined, trace?: Trace): Tensor;

  /** x [B, inC, H, W] -> hidden [B, outC, H', W'] and numLayers (+1 with a downsampler) skips. */
  forward(x: Tensor, temb: Tensor | undefined, context?: Tensor, trace?: Trace): DownBlockOutput {
    const skips: Tensor[] = [];
    let h = x;
    this.resnets.forEach((r, i) => {
      // Every layer output is a skip, so none is disposed here: `skips` owns them.
      const next = r.forward(h, temb, subTrace(trace, `resnets.${i}`));
      h = step(next, (t) => this.attend(i, t, context, trace));
      skips.push(h);
    });
    const down = this.downsamplers?.[0];
    if (down) {
      h = down.forward(h, subTrace(trace, 'downsamplers.0'));
      skips.push(h);
    }
    skips.forEach((s, j) => trace?.(`1.${j}`, s));
    const hidden = h === x ? x.contiguous() : h.contiguous(); // a second view: the skip stays owned by `skips`
    trace?.('0', hidden);
    return { hidden, skips };
  }
}

export interface DownBlock2DOptions extends BlockOptions {
  addDownsample: boolean;
  /** UNet downsample_padding (1); the VAE uses 0 (asymmetric pad). */
  downsamplePadding: number;
  outputScaleFactor?: number;
}

function resnetsFor(ws: WeightSource, backend: Backend, o: BlockOptions & { outputScaleFactor?: number }, inAt: (i: number) => number): ResnetBlock2D[] {
  return Array.from({ length: o.numLayers }, (_, i) => new ResnetBlock2D(ws.sub(`resnets.${i}`), backend, {
    inC: inAt(i), outC: o.outC, tembC: o.tembC, groups: o.groups, eps: o.eps, outputScaleFactor: o.outputScaleFactor,
  }));
}

/** diffusers DownBlock2D: resnets, then an optional downsampler. */
export class DownBlock2D extends DownBlockBase {
  resnets: ResnetBlock2D[];
  downsamplers?: Downsample2D[];

  constructor(ws: WeightSource, backend: Backend, o: DownBlock2DOptions) {
    super();
    this.resnets = resnetsFor(ws, backend, o, (i) => (i === 0 ? o.inC : o.outC));
    if (o.addDownsample) {
      this.downsamplers = [new Downsample2D(ws.sub('downsamplers.0'), backend, { channels: o.outC, padding: o.downsamplePadding })];
    }
  }

  protected attend(_i: number, h: Tensor): Tensor { return h; }
}

export class CrossAttnDownBlock2D extends DownBlockBase {
  attentions: Transformer2DModel[];
  resnets: ResnetBlock2D[];
  downsamplers?: Downsample2D[];

  constructor(ws: WeightSource, backend: Backend, o: DownBlock2DOptions & CrossAttnOptions) {
    super();
    this.attentions = Array.from({ length: o.numLayers }, (_, i) => transformer(ws, backend, o, o.outC, o.groups, i, 'CrossAttnDownBlock2D'));
    this.resnets = resnetsFor(ws, backend, o, (i) => (i === 0 ? o.inC : o.outC));
    if (o.addDownsample) {
      this.downsamplers = [new Downsample2D(ws.sub('downsamplers.0'), backend, { channels: o.outC, padding: o.downsamplePadding })];
    }
  }

  protected attend(i: number, h: Tensor, context: Tensor | undefined, trace?: Trace): Tensor {
    if (!context) throw new Error('CrossAttnDownBlock2D: encoder_hidden_states are required');
    return this.attentions[i]!.forward(h, context, subTrace(trace, `attentions.${i}`));
  }
}

// -------------------------------------------------------------------------------------------- mid

export interface MidBlockOptions {
  channels: number;
  tembC?: number;
  groups: number;
  eps: number;
  outputScaleFactor?: number;
  /** Number of (attention, resnet) pairs after resnets.0 (diffusers num_layers, 1). */
  numLayers?: number;
}

/** Shared by UNetMidBlock2DCrossAttn and UNetMidBlock2D: resnets.0, then (attentions.i, resnets.i+1) pairs. */
abstract class MidBlockBase extends Module {
  abstract attentions: unknown[];
  abstract resnets: ResnetBlock2D[];
  protected abstract attend(i: number, h: Tensor, context: Tensor | undefined, trace?: Trace): Tensor;

  /** x [B, C, h, w] -> [B, C, h, w]. */
  protected run(x: Tensor, temb: Tensor | undefined, context: Tensor | undefined, trace?: Trace): Tensor {
    let h = this.resnets[0]!.forward(x, temb, subTrace(trace, 'resnets.0'));
    this.attentions.forEach((_, i) => {
      h = step(h, (t) => this.attend(i, t, context, trace));
      h = step(h, (t) => this.resnets[i + 1]!.forward(t, temb, subTrace(trace, `resnets.${i + 1}`)));
    });
    trace?.('', h);
    return h;
  }
}

/** The numLayers + 1 same-width resnets of a mid block. */
function midResnets(ws: WeightSource, backend: Backend, o: MidBlockOptions): ResnetBlock2D[] {
  return Array.from({ length: (o.numLayers ?? 1) + 1 }, (_, i) => new ResnetBlock2D(ws.sub(`resnets.${i}`), backend, {
    inC: o.channels, tembC: o.tembC, groups: o.groups, eps: o.eps, outputScaleFactor: o.outputScaleFactor,
  }));
}

/** diffusers UNetMidBlock2DCrossAttn: resnets.0, then (attentions.i, resnets.i+1) pairs. */
export class UNetMidBlock2DCrossAttn extends MidBlockBase {
  attentions: Transformer2DModel[];
  resnets: ResnetBlock2D[];

  constructor(ws: WeightSource, backend: Backend, o: MidBlockOptions & CrossAttnOptions) {
    super();
    const n = o.numLayers ?? 1;
    this.attentions = Array.from({ length: n }, (_, i) => transformer(ws, backend, o, o.channels, o.groups, i, 'UNetMidBlock2DCrossAttn'));
    this.resnets = midResnets(ws, backend, o);
  }

  /** x [B, C, h, w] -> [B, C, h, w]. */
  forward(x: Tensor, temb: Tensor | undefined, context: Tensor, trace?: Trace): Tensor {
    return this.run(x, temb, context, trace);
  }

  protected attend(i: number, h: Tensor, context: Tensor | undefined, trace?: Trace): Tensor {
    if (!context) throw new Error('UNetMidBlock2DCrossAttn: encoder_hidden_states are required');
    return this.attentions[i]!.forward(h, context, subTrace(trace, `attentions.${i}`));
  }
}

/**
 * diffusers UNetMidBlock2D as AutoencoderKL builds it: resnets.0, then (attentions.i, resnets.i+1) pairs;
 * the attention is spatial self-attention with channels / attention_head_dim heads (one head in the VAE,
 * whose attention_head_dim is the channel count), its own group_norm, biases on q/k/v, a residual
 * connection and rescale_output_factor.
 */
export class UNetMidBlock2D extends MidBlockBase {
  attentions: Attention[];
  resnets: ResnetBlock2D[];

  constructor(ws: WeightSource, backend: Backend, o: MidBlockOptions & { attentionHeadDim: number }) {
    super();
    const n = o.numLayers ?? 1;
    if (o.channels % o.attentionHeadDim !== 0) {
      throw new Error(`UNetMidBlock2D: ${o.channels} channels do not split into heads of attention_head_dim=${o.attentionHeadDim}`);
    }
    this.attentions = Array.from({ length: n }, (_, i) => new Attention(ws.sub(`attentions.${i}`), backend, {
      queryDim: o.channels, heads: o.channels / o.attentionHeadDim, dimHead: o.attentionHeadDim, bias: true, outBias: true,
      groupNorm: { groups: o.groups, eps: o.eps }, residualConnection: true, rescaleOutputFactor: o.outputScaleFactor ?? 1,
    }));
    this.resnets = midResnets(ws, backend, o);
  }

  /** x [B, C, h, w] -> [B, C, h, w]. */
  forward(x: Tensor, temb?: Tensor, trace?: Trace): Tensor {
    return this.run(x, temb, undefined, trace);
  }

  protected attend(i: number, h: Tensor, _context: Tensor | undefined, trace?: Trace): Tensor {
    return this.attentions[i]!.forward(h, undefined, subTrace(trace, `attentions.${i}`));
  }
}

// --------------------------------------------------------------------------------------------- up

export interface UpBlock2DOptions extends BlockOptions {
  /** Channels of the incoming hidden state (diffusers prev_output_channel). */
  prevOutC: number;
  addUpsample: boolean;
}

/**
 * Shared by UpBlock2D and CrossAttnUpBlock2D: each layer concatenates the last unused skip on the channel
 * dim (torch.cat([hidden, skip], dim=1)), then resnet (+ attention); then an optional Upsample2D.
 * Resnet i has in = (i == 0 ? prevOutC : outC) + (i == numLayers-1 ? inC : outC) channels.
 */
abstract class UpBlockBase extends Module {
  abstract resnets: ResnetBlock2D[];
  abstract upsamplers?: Upsample2D[];
  protected abstract attend(i: number, h: Tensor, context: Tensor | undefined, trace?: Trace): Tensor;

  /**
   * x [B, prevOutC, H, W], skips: this block's skip tensors in the order the down path produced them
   * (consumed from the last; not disposed here). upsampleSize: the explicit output size diffusers
   * forwards when the latent is not divisible by 2^num_upsamplers.
   */
  forward(x: Tensor, skips: readonly Tensor[], temb: Tensor | undefined, context?: Tensor, upsampleSize?: readonly [number, number], trace?: Trace): Tensor {
    if (skips.length !== this.resnets.length) {
      throw new Error(`${this.constructor.name}: expected ${this.resnets.length} skip tensors, found ${skips.length}`);
    }
    let h = x;
    this.resnets.forEach((r, i) => {
      const cat = ops.concat([h, skips[skips.length - 1 - i]!], 1);
      if (h !== x) h.dispose();
      h = step(cat, (t) => r.forward(t, temb, subTrace(trace, `resnets.${i}`)));
      h = step(h, (t) => this.attend(i, t, context, trace));
    });
    const up = this.upsamplers?.[0];
    if (up) h = step(h, (t) => up.forward(t, upsampleSize, subTrace(trace, 'upsamplers.0')));
    trace?.('', h);
    return h;
  }
}

function upResnets(ws: WeightSource, backend: Backend, o: UpBlock2DOptions): ResnetBlock2D[] {
  return resnetsFor(ws, backend, o, (i) => (i === 0 ? o.prevOutC : o.outC) + (i === o.numLayers - 1 ? o.inC : o.outC));
}

export class UpBlock2D extends UpBlockBase {
  resnets: ResnetBlock2D[];
  upsamplers?: Upsample2D[];

  constructor(ws: WeightSource, backend: Backend, o: UpBlock2DOptions) {
    super();
    this.resnets = upResnets(ws, backend, o);
    if (o.addUpsample) this.upsamplers = [new Upsample2D(ws.sub('upsamplers.0'), backend, { channels: o.outC })];
  }

  protected attend(_i: number, h: Tensor): Tensor { return h; }
}

export class CrossAttnUpBlock2D extends UpBlockBase {
  attentions: Transformer2DModel[];
  resnets: ResnetBlock2D[];
  upsamplers?: Upsample2D[];

  constructor(ws: WeightSource, backend: Backend, o: UpBlock2DOptions & CrossAttnOptions) {
    super();
    this.attentions = Array.from({ length: o.numLayers }, (_, i) => transformer(ws, backend, o, o.outC, o.groups, i, 'CrossAttnUpBlock2D'));
    this.resnets = upResnets(ws, backend, o);
    if (o.addUpsample) this.upsamplers = [new Upsample2D(ws.sub('upsamplers.0'), backend, { channels: o.outC })];
  }

  protected attend(i: number, h: Tensor, context: Tensor | undefined, trace?: Trace): Tensor {
    if (!context) throw new Error('CrossAttnUpBlock2D: encoder_hidden_states are required');
    return this.attentions[i]!.forward(h, context, subTrace(trace, `attentions.${i}`));
  }
}

/** diffusers DownEncoderBlock2D (VAE encoder): resnets without time embedding, then Downsample2D (padding 0). */
export class DownEncoderBlock2D extends Module {
  resnets: ResnetBlock2D[];
  downsamplers?: Downsample2D[];

  constructor(ws: WeightSource, backend: Backend, o: BlockOptions & { addDownsample: boolean; downsamplePadding: number }) {
    super();
    this.resnets = resnetsFor(ws, backend, o, (i) => (i === 0 ? o.inC : o.outC));
    if (o.addDownsample) {
      this.downsamplers = [new Downsample2D(ws.sub('downsamplers.0'), backend, { channels: o.outC, padding: o.downsamplePadding })];
    }
  }

  /** x [B, inC, H, W] -> [B, outC, H/2, W/2] (H, W without a downsampler). */
  forward(x: Tensor, trace?: Trace): Tensor {
    let h = x;
    this.resnets.forEach((r, i) => {
      const next = r.forward(h, undefined, subTrace(trace, `resnets.${i}`));
      if (h !== x) h.dispose();
      h = next;
    });
    const down = this.downsamplers?.[0];
    if (down) h = step(h, (t) => down.forward(t, subTrace(trace, 'downsamplers.0')));
    trace?.('', h);
    return h;
  }
}

/** diffusers UpDecoderBlock2D (VAE decoder): resnets without skips or time embedding, then Upsample2D. */
export class UpDecoderBlock2D extends Module {
  resnets: ResnetBlock2D[];
  upsamplers?: Upsample2D[];

  constructor(ws: WeightSource, backend: Backend, o: BlockOptions & { addUpsample: boolean }) {
    super();
    this.resnets = resnetsFor(ws, backend, o, (i) => (i === 0 ? o.inC : o.outC));
    if (o.addUpsample) this.upsamplers = [new Upsample2D(ws.sub('upsamplers.0'), backend, { channels: o.outC })];
  }

  /** x [B, inC, H, W] -> [B, outC, 2H, 2W] (H, W without an upsampler). */
  forward(x: Tensor, trace?: Trace): Tensor {
    let h = x;
    this.resnets.forEach((r, i) => {
      const next = r.forward(h, undefined, subTrace(trace, `resnets.${i}`));
      if (h !== x) h.dispose();
      h = next;
    });
    const up = this.upsamplers?.[0];
    if (up) h = step(h, (t) => up.forward(t, undefined, subTrace(trace, 'upsamplers.0')));
    trace?.('', h);
    return h;
  }
}
