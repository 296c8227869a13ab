// The spatio-temporal UNet blocks of diffusers/models/unets/unet_3d_blocks.py (v0.29.2) that
// UNetSpatioTemporalConditionModel builds: DownBlockSpatioTemporal, CrossAttnDownBlockSpatioTemporal,
// UNetMidBlockSpatioTemporal, UpBlockSpatioTemporal, CrossAttnUpBlockSpatioTemporal. Same structure as the
// 2-D blocks (unet_blocks.ts) with SpatioTemporalResBlock resnets and TransformerSpatioTemporalModel
// attentions; activations are [B*F, C, H, W] and every block takes the frame count.
// ResNet eps as diffusers hard-codes them: CrossAttnDown 1e-6, Down 1e-5, Mid 1e-5, both Up blocks 1e-6
// (get_up_block does not pass resnet_eps to them). Trace names as in unet_blocks.ts: a down block reports
// '0' (hidden state) and '1.j' (its j-th skip), the others '' (their output).

import { ops, subTrace, type Backend, type Tensor, type Trace, type WeightSource } from '@cnx/tensor';
import { Module } from './module.js';
import { Downsample2D } from './downsampling.js';
import { Upsample2D } from './upsampling.js';
import { SpatioTemporalResBlock } from './resnet_temporal.js';
import { TransformerSpatioTemporalModel } from './transformer_temporal.js';
import type { DownBlockOutput } from './unet_blocks.js';

export interface SpatioTemporalBlockOptions {
  inC: number;
  outC: number;
  tembC: number;
  numLayers: number;
}

export interface SpatioTemporalAttnOptions {
  heads: number;
  crossAttentionDim: number;
  /** Transformer depth per layer (an int, or one per layer). */
  transformerLayers: number | readonly number[];
}

function depthAt(layers: number | readonly number[], i: number, block: string): number {
  if (typeof layers === 'number') return layers;
  const d = layers[i];
  if (d === undefined) throw new Error(`${block}: transformer_layers_per_block ${JSON.stringify(layers)} has no entry for layer ${i}`);
  return d;
}

function transformer(ws: WeightSource, backend: Backend, a: SpatioTemporalAttnOptions, channels: number, i: number, block: string): TransformerSpatioTemporalModel {
  if (channels % a.heads !== 0) throw new Error(`${block}: ${channels} channels do not split into ${a.heads} attention heads`);
  return new TransformerSpatioTemporalModel(ws.sub(`attentions.${i}`), backend, {
    heads: a.heads, dimHead: channels / a.heads, inC: channels, numLayers: depthAt(a.transformerLayers, i, block), crossAttentionDim: a.crossAttentionDim,
  });
}

function resnets(ws: WeightSource, backend: Backend, n: number, eps: number, tembC: number, inAt: (i: number) => number, outC: number): SpatioTemporalResBlock[] {
  return Array.from({ length: n }, (_, i) => new SpatioTemporalResBlock(ws.sub(`resnets.${i}`), backend, { inC: inAt(i), outC, tembC, eps }));
}

/** What both down blocks share: resnets (+ attentions), then an optional stride-2 conv. */
abstract class DownBlockSpatioTemporalBase extends Module {
  abstract resnets: SpatioTemporalResBlock[];
  abstract downsamplers?: Downsample2D[];
  protected abstract attend(i: number, h: Tensor, context: Tensor | undefined, numFrames: number, trace?: Trace): Tensor;

  /** x [B*F, inC, H, W] -> hidden [B*F, outC, H', W'] and numLayers (+1 with a downsampler) skips. */
  forward(x: Tensor, temb: Tensor, context: Tensor | undefined, numFrames: number, trace?: Trace): DownBlockOutput {
    const skips: Tensor[] = [];
    let h = x;
    this.resnets.forEach((r, i) => {
      const next = r.forward(h, temb, numFrames, subTrace(trace, `resnets.${i}`));
      const a = this.attend(i, next, context, numFrames, trace);
      if (a !== next) next.dispose();
      h = a;
      skips.push(h);
    });
    const down = this.downsamplers?.[0];
    if (down) {
      h = down.forward(h, subTrace(trace, 'downsamplers.0'));
      skips.push(h);
    }
    skips.forEach((s, j) => trace?.(`1.${j}`, s));
    const hidden = h.contiguous(); // a second view: the skip stays owned by `skips`
    trace?.('0', hidden);
    return { hidden, skips };
  }
}

export class DownBlockSpatioTemporal extends DownBlockSpatioTemporalBase {
  resnets: SpatioTemporalResBlock[];
  downsamplers?: Downsample2D[];

  constructor(ws: WeightSource, backend: Backend, o: SpatioTemporalBlockOptions & { addDownsample: boolean }) {
    super();
    this.resnets = resnets(ws, backend, o.numLayers, 1e-5, o.tembC, (i) => (i === 0 ? o.inC : o.outC), o.outC);
    if (o.addDownsample) this.downsamplers = [new Downsample2D(ws.sub('downsamplers.0'), backend, { channels: o.outC, padding: 1 })];
  }

  protected attend(_i: number, h: Tensor): Tensor { return h; }
}

export class CrossAttnDownBlockSpatioTemporal extends DownBlockSpatioTemporalBase {
  resnets: SpatioTemporalResBlock[];
  attentions: TransformerSpatioTemporalModel[];
  downsamplers?: Downsample2D[];

  constructor(ws: WeightSource, backend: Backend, o: SpatioTemporalBlockOptions & SpatioTemporalAttnOptions & { addDownsample: boolean }) {
    super();
    this.resnets = resnets(ws, backend, o.numLayers, 1e-6, o.tembC, (i) => (i === 0 ? o.inC : o.outC), o.outC);
    this.attentions = Array.from({ length: o.numLayers }, (_, i) => transformer(ws, backend, o, o.outC, i, 'CrossAttnDownBlockSpatioTemporal'));
    if (o.addDownsample) this.downsamplers = [new Downsample2D(ws.sub('downsamplers.0'), backend, { channels: o.outC, padding: 1 })];
  }

  protected attend(i: number, h: Tensor, context: Tensor | undefined, numFrames: number, trace?: Trace): Tensor {
    if (!context) throw new Error('CrossAttnDownBlockSpatioTemporal: encoder_hidden_states are required');
    return this.attentions[i]!.forward(h, context, numFrames, subTrace(trace, `attentions.${i}`));
  }
}

export class UNetMidBlockSpatioTemporal extends Module {
  attentions: TransformerSpatioTemporalModel[];
  resnets: SpatioTemporalResBlock[];

  constructor(ws: WeightSource, backend: Backend, o: { channels: number; tembC: number; numLayers?: number } & SpatioTemporalAttnOptions) {
    super();
    const n = o.numLayers ?? 1;
    this.attentions = Array.from({ length: n }, (_, i) => transformer(ws, backend, o, o.channels, i, 'UNetMidBlockSpatioTemporal'));
    this.resnets = resnets(ws, backend, n + 1, 1e-5, o.tembC, () => o.channels, o.channels);
  }

  /** x [B*F, C, h, w] -> [B*F, C, h, w]. */
  forward(x: Tensor, temb: Tensor, context: Tensor, numFrames: number, trace?: Trace): Tensor {
    let h = this.resnets[0]!.forward(x, temb, numFrames, subTrace(trace, 'resnets.0'));
    this.attentions.forEach((attn, i) => {
      const a = attn.forward(h, context, numFrames, subTrace(trace, `attentions.${i}`));
      h.dispose();
      h = this.resnets[i + 1]!.forward(a, temb, numFrames, subTrace(trace, `resnets.${i + 1}`));
      a.dispose();
    });
    trace?.('', h);
    return h;
  }
}

/**
 * What both up blocks share: each layer concatenates the last unused skip on channels, then resnet
 * (+ attention); then an optional Upsample2D (nearest 2x: SVD's UNet forwards no explicit sizes).
 */
abstract class UpBlockSpatioTemporalBase extends Module {
  abstract resnets: SpatioTemporalResBlock[];
  abstract upsamplers?: Upsample2D[];
  protected abstract attend(i: number, h: Tensor, context: Tensor | undefined, numFrames: number, trace?: Trace): Tensor;

  /** x [B*F, prevOutC, H, W]; skips in the order the down path produced them (consumed from the last, not disposed). */
  forward(x: Tensor, skips: readonly Tensor[], temb: Tensor, context: Tensor | undefined, numFrames: number, trace?: Trace): Tensor {
    if (skips.length !== this.resnets.length) {
      throw new Error(`${this.constructor.name}: expected ${this.resnets.length} skip tensors, found ${skips.length}`);
    }
    let h = x;
    this.resnets.forEach((r, i) => {
      const cat = ops.concat([h, skips[skips.length - 1 - i]!], 1);
      if (h !== x) h.dispose();
      const next = r.forward(cat, temb, numFrames, subTrace(trace, `resnets.${i}`));
      cat.dispose();
      const a = this.attend(i, next, context, numFrames, trace);
      if (a !== next) next.dispose();
      h = a;
    });
    const up = this.upsamplers?.[0];
    if (up) {
      const next = up.forward(h, undefined, subTrace(trace, 'upsamplers.0'));
      h.dispose();
      h = next;
    }
    trace?.('', h);
    return h;
  }
}

export interface UpBlockSpatioTemporalOptions extends SpatioTemporalBlockOptions {
  /** Channels of the incoming hidden state (diffusers prev_output_channel). */
  prevOutC: number;
  addUpsample: boolean;
}

/** Resnet i takes (i == 0 ? prevOutC : outC) + (i == numLayers-1 ? inC : outC) channels. */
function upResnets(ws: WeightSource, backend: Backend, o: UpBlockSpatioTemporalOptions): SpatioTemporalResBlock[] {
  return resnets(ws, backend, o.numLayers, 1e-6, o.tembC,
    (i) => (i === 0 ? o.prevOutC : o.outC) + (i === o.numLayers - 1 ? o.inC : o.outC), o.outC);
}

export class UpBlockSpatioTemporal extends UpBlockSpatioTemporalBase {
  resnets: SpatioTemporalResBlock[];
  upsamplers?: Upsample2D[];

  constructor(ws: WeightSource, backend: Backend, o: UpBlockSpatioTemporalOptions) {
    super();
    this.resnets = upResnets(ws, backend, o);
    if (o.addUpsample) this.upsamplers = [new Upsample2D(ws.sub('upsamplers.0'), backend, { channels: o.outC })];
  }

  protected attend(_i: number, h: Tensor): Tensor { return h; }
}

export class CrossAttnUpBlockSpatioTemporal extends UpBlockSpatioTemporalBase {
  resnets: SpatioTemporalResBlock[];
  attentions: TransformerSpatioTemporalModel[];
  upsamplers?: Upsample2D[];

  constructor(ws: WeightSource, backend: Backend, o: UpBlockSpatioTemporalOptions & SpatioTemporalAttnOptions) {
    super();
    this.resnets = upResnets(ws, backend, o);
    this.attentions = Array.from({ length: o.numLayers }, (_, i) => transformer(ws, backend, o, o.outC, i, 'CrossAttnUpBlockSpatioTemporal'));
    if (o.addUpsample) this.upsamplers = [new Upsample2D(ws.sub('upsamplers.0'), backend, { channels: o.outC })];
  }

  protected attend(i: number, h: Tensor, context: Tensor | undefined, numFrames: number, trace?: Trace): Tensor {
    if (!context) throw new Error('CrossAttnUpBlockSpatioTemporal: encoder_hidden_states are required');
    return this.attentions[i]!.forward(h, context, numFrames, subTrace(trace, `attentions.${i}`));
  }
}
