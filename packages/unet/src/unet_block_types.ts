// The UNet's block classes by their config.json names, in one table each for down, mid and up blocks:
// what diffusers' get_down_block / get_mid_block / get_up_block do with their if-chains
// (diffusers/models/unets/unet_2d_blocks.py, v0.29.2). parseUNetConfig validates `down_block_types`,
// `mid_block_type` and `up_block_types` against these tables, and UNet2DConditionModel builds from them,
// so supporting a new block type is one entry here (plus its class). A model family with other blocks
// (the spatio-temporal UNet) keeps its own tables of the same shape.

import type { Backend, Tensor, Trace, WeightSource } from '@cnx/tensor';
import type { Module } from './module.js';
import type { ResnetBlock2D } from './resnet.js';
import type { Downsample2D } from './downsampling.js';
import type { Upsample2D } from './upsampling.js';
import type { Transformer2DModel } from './transformer_2d.js';
import {
  CrossAttnDownBlock2D, CrossAttnUpBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D, type DownBlockOutput,
} from './unet_blocks.js';

/** What the UNet needs of a down block: skips per layer (+1 with a downsampler), the forward. */
export interface UNetDownBlock extends Module {
  attentions?: Transformer2DModel[];
  resnets: ResnetBlock2D[];
  downsamplers?: Downsample2D[];
  forward(x: Tensor, temb: Tensor | undefined, context?: Tensor, trace?: Trace): DownBlockOutput;
}

export interface UNetMidBlock extends Module {
  attentions?: Transformer2DModel[];
  forward(x: Tensor, temb: Tensor | undefined, context: Tensor, trace?: Trace): Tensor;
}

export interface UNetUpBlock extends Module {
  attentions?: Transformer2DModel[];
  resnets: ResnetBlock2D[];
  upsamplers?: Upsample2D[];
  forward(x: Tensor, skips: readonly Tensor[], temb: Tensor | undefined, context?: Tensor, upsampleSize?: readonly [number, number], trace?: Trace): Tensor;
}

/** The arguments get_down_block receives, resolved per block. */
export interface DownBlockArgs {
  ws: WeightSource;
  backend: Backend;
  inC: number;
  outC: number;
  tembC: number;
  numLayers: number;
  groups: number;
  eps: number;
  addDownsample: boolean;
  downsamplePadding: number;
  heads: number;
  crossAttentionDim: number;
  transformerLayers: number | readonly number[];
  useLinearProjection: boolean;
}

export interface MidBlockArgs {
  ws: WeightSource;
  backend: Backend;
  channels: number;
  tembC: number;
  groups: number;
  eps: number;
  outputScaleFactor: number;
  heads: number;
  crossAttentionDim: number;
  transformerLayers: number | readonly number[];
  useLinearProjection: boolean;
}

export interface UpBlockArgs {
  ws: WeightSource;
  backend: Backend;
  inC: number;
  outC: number;
  prevOutC: number;
  tembC: number;
  numLayers: number;
  groups: number;
  eps: number;
  addUpsample: boolean;
  heads: number;
  crossAttentionDim: number;
  transformerLayers: number | readonly number[];
  useLinearProjection: boolean;
}

export const downBlockTypes = {
  DownBlock2D: (a: DownBlockArgs): UNetDownBlock => new DownBlock2D(a.ws, a.backend, a),
  CrossAttnDownBlock2D: (a: DownBlockArgs): UNetDownBlock => new CrossAttnDownBlock2D(a.ws, a.backend, a),
} as const satisfies Readonly<Record<string, (a: DownBlockArgs) => UNetDownBlock>>;

export const midBlockTypes = {
  UNetMidBlock2DCrossAttn: (a: MidBlockArgs): UNetMidBlock => new UNetMidBlock2DCrossAttn(a.ws, a.backend, a),
} as const satisfies Readonly<Record<string, (a: MidBlockArgs) => UNetMidBlock>>;

export const upBlockTypes = {
  UpBlock2D: (a: UpBlockArgs): UNetUpBlock => new UpBlock2D(a.ws, a.backend, a),
  CrossAttnUpBlock2D: (a: UpBlockArgs): UNetUpBlock => new CrossAttnUpBlock2D(a.ws, a.backend, a),
} as const satisfies Readonly<Record<string, (a: UpBlockArgs) => UNetUpBlock>>;

export type DownBlockType = keyof typeof downBlockTypes;
export type MidBlockType = keyof typeof midBlockTypes;
export type UpBlockType = keyof typeof upBlockTypes;

/** The builder of `type` in `table`, or an error naming the kind and the known types. */
export function blockBuilder<A, B>(table: Readonly<Record<string, (a: A) => B>>, type: string, kind: string): (a: A) => B {
  const build = Object.hasOwn(table, type) ? table[type] : undefined;
  if (!build) throw new Error(`${kind} '${type}' is not supported (supported: ${Object.keys(table).join(', ')})`);
  return build;
}
