// diffusers AutoencoderKLTemporalDecoder (diffusers/models/autoencoders/autoencoder_kl_temporal_decoder.py,
// v0.29.2), Stable Video Diffusion's VAE, and its blocks MidBlockTemporalDecoder / UpBlockTemporalDecoder
// (models/unets/unet_3d_blocks.py):
//   encode: the 2-D Encoder of AutoencoderKL (vae.ts) -> quant_conv -> posterior (mean, logvar, std)
//   decode(z [N, L, h, w], num_frames F): N = B*F frames of B videos; NO post_quant_conv;
//     TemporalDecoder: conv_in -> mid_block -> up_blocks -> GroupNorm(32, eps 1e-6) -> SiLU -> conv_out
//     -> time_conv_out (Conv3d (3,1,1), zero padding in time) over the frames of each video.
//   mid_block: resnets.0, then (attentions.i, resnets.i+1) pairs: num_layers = layers_per_block resnets
//     but ONE single-head spatial Attention (group_norm, biases, residual), so with layers_per_block 1 the
//     attention exists in the checkpoint and is never run (diffusers zips resnets[1:] with attentions).
//   up_blocks.i: layers_per_block + 1 SpatioTemporalResBlocks, then Upsample2D (all but the last).
//   Every decoder resnet: SpatioTemporalResBlock(temb None, eps 1e-6, temporal eps 1e-5, merge_factor 0,
//     'learned', switch_spatial_to_temporal_mix=True).
// decodeVideo is StableVideoDiffusionPipeline.decode_latents: 1/scaling_factor, then consecutive chunks of
// the FLATTENED B*F frames, each decoded as one video of chunk-length frames (time_conv_out and the
// temporal blocks mix only inside a chunk, and a chunk may span two videos when B > 1).

import { ops, subTrace, type Backend, type Tensor, type Trace, type WeightSource, type WeightStoreOptions } from '@cnx/tensor';
import { Module } from './module.js';
import { loadStrict, readConfigJson } from './load_model.js';
import { Attention } from './attention.js';
import { Conv2d } from './layers/conv2d.js';
import { GroupNorm } from './layers/group_norm.js';
import { SpatioTemporalResBlock, TemporalConv3d } from './resnet_temporal.js';
import { Upsample2D } from './upsampling.js';
import { diagonalGaussian, Encoder, parseVaeConfig, type AutoencoderKLConfig, type DiagonalGaussian } from './vae.js';
import { ConfigChecker, MAX_CONFIG_BLOCKS, MAX_CONFIG_CHANNELS, MAX_CONFIG_LAYERS, showValue } from './config_values.js';

export interface AutoencoderKLTemporalDecoderConfig {
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number;
  latent_channels: number;
  scaling_factor: number;
}

const DEFAULTS: AutoencoderKLTemporalDecoderConfig = {
  in_channels: 3, out_channels: 3, down_block_types: ['DownEncoderBlock2D'], block_out_channels: [64],
  layers_per_block: 1, latent_channels: 4, scaling_factor: 0.18215,
};
// force_upcast: fp16 advice for pipelines; sample_size: tiling hint. Neither changes f32 inference.
const IGNORED = new Set(['_class_name', '_diffusers_version', '_name_or_path', 'force_upcast', 'sample_size']);

/** Validate a config.json object (diffusers' constructor arguments) and fill the defaults. */
export function parseTemporalVaeConfig(raw: Record<string, unknown>, source = 'config'): AutoencoderKLTemporalDecoderConfig {
  const cfg: Record<string, unknown> = { ...DEFAULTS };
  for (const [key, value] of Object.entries(raw)) {
    if (IGNORED.has(key)) continue;
    if (!Object.hasOwn(DEFAULTS, key)) throw new Error(`${source}: unknown AutoencoderKLTemporalDecoder config key '${key.slice(0, 80)}' (value ${showValue(value)})`);
    cfg[key] = value;
  }
  // Every value typed and bounded (config_values.ts); the decoder's GroupNorm has 32 groups.
  const k = new ConfigChecker(source, 'AutoencoderKLTemporalDecoder');
  const boc = k.list('block_out_channels', cfg.block_out_channels, 1, MAX_CONFIG_BLOCKS, (key, x) => k.int(key, x, 1, MAX_CONFIG_CHANNELS));
  const n = boc.length;
  const c: AutoencoderKLTemporalDecoderConfig = {
    in_channels: k.int('in_channels', cfg.in_channels, 1, 1024),
    out_channels: k.int('out_channels', cfg.out_channels, 1, 1024),
    down_block_types: k.list('down_block_types', cfg.down_block_types, n, n, (key, t) => {
      if (t !== 'DownEncoderBlock2D') k.fail('down_block_types', cfg.down_block_types, `${n} x "DownEncoderBlock2D" (one per block_out_channels entry)`);
      return t as string;
    }),
    block_out_channels: boc,
    layers_per_block: k.int('layers_per_block', cfg.layers_per_block, 1, MAX_CONFIG_LAYERS),
    latent_channels: k.int('latent_channels', cfg.latent_channels, 1, 1024),
    scaling_factor: k.number('scaling_factor', cfg.scaling_factor, 0, 1e6, true),
  };
  for (const [i, ch] of boc.entries()) if (ch % 32 !== 0) k.fail('block_out_channels', boc, `multiples of 32 (GroupNorm 32; block ${i} has ${ch})`);
  return c;
}

/** The 2-D Encoder's configuration (diffusers builds it with Encoder's defaults: GroupNorm 32, mid attention). */
function encoderConfig(c: AutoencoderKLTemporalDecoderConfig): AutoencoderKLConfig {
  const n = c.block_out_channels.length;
  return parseVaeConfig({
    in_channels: c.in_channels, out_channels: c.out_channels, down_block_types: c.down_block_types,
    up_block_types: Array.from({ length: n }, () => 'UpDecoderBlock2D'), block_out_channels: c.block_out_channels,
    layers_per_block: c.layers_per_block, latent_channels: c.latent_channels, norm_num_groups: 32, scaling_factor: c.scaling_factor,
  });
}

const DECODER_RESNET = { eps: 1e-6, temporalEps: 1e-5, switchSpatialToTemporalMix: true } as const;

export class MidBlockTemporalDecoder extends Module {
  attentions: Attention[];
  resnets: SpatioTemporalResBlock[];

  constructor(ws: WeightSource, backend: Backend, o: { channels: number; numLayers: number }) {
    super();
    const C = o.channels;
    this.resnets = Array.from({ length: o.numLayers }, (_, i) => new SpatioTemporalResBlock(ws.sub(`resnets.${i}`), backend, {
      inC: C, outC: C, ...DECODER_RESNET,
    }));
    // attention_head_dim = channels: one head.
    this.attentions = [new Attention(ws.sub('attentions.0'), backend, {
      queryDim: C, heads: 1, dimHead: C, bias: true, outBias: true, groupNorm: { groups: 32, eps: 1e-6 }, residualConnection: true,
    })];
  }

  forward(x: Tensor, numFrames: number, trace?: Trace): Tensor {
    let h = this.resnets[0]!.forward(x, undefined, numFrames, subTrace(trace, 'resnets.0'));
    for (let i = 1; i < this.resnets.length && i - 1 < this.attentions.length; i++) {
      const a = this.attentions[i - 1]!.forward(h, undefined, subTrace(trace, `attentions.${i - 1}`));
      h.dispose();
      h = this.resnets[i]!.forward(a, undefined, numFrames, subTrace(trace, `resnets.${i}`));
      a.dispose();
    }
    trace?.('', h);
    return h;
  }
}

export class UpBlockTemporalDecoder extends Module {
  resnets: SpatioTemporalResBlock[];
  upsamplers?: Upsample2D[];

  constructor(ws: WeightSource, backend: Backend, o: { inC: number; outC: number; numLayers: number; addUpsample: boolean }) {
    super();
    this.resnets = Array.from({ length: o.numLayers }, (_, i) => new SpatioTemporalResBlock(ws.sub(`resnets.${i}`), backend, {
      inC: i === 0 ? o.inC : o.outC, outC: o.outC, ...DECODER_RESNET,
    }));
    if (o.addUpsample) this.upsamplers = [new Upsample2D(ws.sub('upsamplers.0'), backend, { channels: o.outC })];
  }

  forward(x: Tensor, numFrames: number, trace?: Trace): Tensor {
    let h = x;
    this.resnets.forEach((r, i) => {
      const next = r.forward(h, undefined, numFrames, subTrace(trace, `resnets.${i}`));
      if (h !== x) h.dispose();
      h = next;
    });
    const up = this.upsamplers?.[0];
    if (up) {
      const next = up.forward(h, undefined, subTrace(trace, 'upsamplers.0'));
      if (h !== x) h.dispose();
      h = next;
    }
    trace?.('', h);
    return h;
  }
}

export class TemporalDecoder extends Module {
  conv_in: Conv2d;
  mid_block: MidBlockTemporalDecoder;
  up_blocks: UpBlockTemporalDecoder[];
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;
  time_conv_out: TemporalConv3d;

  constructor(ws: WeightSource, backend: Backend, c: AutoencoderKLTemporalDecoderConfig) {
    super();
    const rboc = [...c.block_out_channels].reverse(), top = rboc[0]!, bottom = rboc[rboc.length - 1]!;
    this.conv_in = new Conv2d(ws.sub('conv_in'), backend, { inC: c.latent_channels, outC: top, k: 3, padding: 1 });
    this.mid_block = new MidBlockTemporalDecoder(ws.sub('mid_block'), backend, { channels: top, numLayers: c.layers_per_block });
    this.up_blocks = rboc.map((outC, i) => new UpBlockTemporalDecoder(ws.sub(`up_blocks.${i}`), backend, {
      inC: i === 0 ? top : rboc[i - 1]!, outC, numLayers: c.layers_per_block + 1, addUpsample: i < rboc.length - 1,
    }));
    this.conv_norm_out = new GroupNorm(ws.sub('conv_norm_out'), backend, { groups: 32, channels: bottom, eps: 1e-6 });
    this.conv_out = new Conv2d(ws.sub('conv_out'), backend, { inC: bottom, outC: c.out_channels, k: 3, padding: 1 });
    this.time_conv_out = new TemporalConv3d(ws.sub('time_conv_out'), backend, { inC: c.out_channels, outC: c.out_channels, kt: 3 });
  }

  /** z [B*F, L, h, w] -> [B*F, out_channels, H, W]; 'time_conv_out' is traced in [B, C, F, H, W] layout. */
  forward(z: Tensor, numFrames: number, trace?: Trace): Tensor {
    const N = z.shape[0]!;
    if (N % numFrames !== 0) throw new Error(`TemporalDecoder: ${N} latent frames are not a multiple of num_frames=${numFrames}`);
    let h = this.conv_in.forward(z);
    trace?.('conv_in', h);
    const swap = (next: Tensor) => { h.dispose(); h = next; };
    swap(this.mid_block.forward(h, numFrames, subTrace(trace, 'mid_block')));
    this.up_blocks.forEach((b, i) => swap(b.forward(h, numFrames, subTrace(trace, `up_blocks.${i}`))));
    swap(this.conv_norm_out.forwardSilu(h, trace && ((n) => trace('conv_norm_out', n))));
    swap(this.conv_out.forward(h));
    trace?.('conv_out', h);
    const [, C, H, W] = h.shape as [number, number, number, number];
    const B = N / numFrames;
    // [B*F, C, H, W] -> [B, C, F, H*W] -> Conv3d (3,1,1) -> back.
    const v = h.reshape([B, numFrames, C, H * W]);
    const p = v.permute([0, 2, 1, 3]);
    const x5 = p.contiguous();
    [v, p].forEach((t) => t.dispose());
    h.dispose();
    const y5 = this.time_conv_out.forward(x5);
    x5.dispose();
    if (trace) {
      const t = y5.reshape([B, C, numFrames, H, W]);
      trace('time_conv_out', t);
      t.dispose();
    }
    const yp = y5.permute([0, 2, 1, 3]);
    const yc = yp.contiguous();
    const out = yc.reshape([N, C, H, W]);
    [yp, yc, y5].forEach((t) => t.dispose());
    return out;
  }
}

export class AutoencoderKLTemporalDecoder extends Module {
  encoder: Encoder;
  decoder: TemporalDecoder;
  quant_conv: Conv2d;
  readonly config: AutoencoderKLTemporalDecoderConfig;

  constructor(config: AutoencoderKLTemporalDecoderConfig | Record<string, unknown>, ws: WeightSource, readonly backend: Backend) {
    super();
    const c = this.config = parseTemporalVaeConfig(config as Record<string, unknown>);
    this.encoder = new Encoder(ws.sub('encoder'), backend, encoderConfig(c));
    this.decoder = new TemporalDecoder(ws.sub('decoder'), backend, c);
    const L2 = 2 * c.latent_channels;
    this.quant_conv = new Conv2d(ws.sub('quant_conv'), backend, { inC: L2, outC: L2, k: 1 });
  }

  /** Load a diffusers `vae/` folder of SVD; strict (missing, mis-shaped or unused keys fail with the loader report). */
  static fromFolder(dir: string, backend: Backend, opts: WeightStoreOptions = {}): AutoencoderKLTemporalDecoder {
    const { raw, path } = readConfigJson(dir, 'AutoencoderKLTemporalDecoder.fromFolder');
    const config = parseTemporalVaeConfig(raw, path);
    return loadStrict(dir, opts, (store) => new AutoencoderKLTemporalDecoder(config, store, backend));
  }

  get scalingFactor(): number { return this.config.scaling_factor; }

  /** Spatial downscale from pixels to latents (2^(levels-1), 8 for SVD). */
  get downscale(): number { return 2 ** (this.config.block_out_channels.length - 1); }

  /** image [B, C, H, W] in [-1, 1] -> the posterior (vae.encode(x).latent_dist). */
  encode(image: Tensor, trace?: Trace): DiagonalGaussian {
    const h = this.encoder.forward(image, subTrace(trace, 'encoder'));
    const moments = this.quant_conv.forward(h);
    h.dispose();
    trace?.('quant_conv', moments);
    const p = diagonalGaussian(moments, this.config.latent_channels);
    moments.dispose();
    return p;
  }

  /** z [B*F, L, h, w] (not scaled) -> frames [B*F, C, H, W] in about [-1, 1] (vae.decode(z, num_frames=F).sample). */
  decode(z: Tensor, numFrames: number, trace?: Trace): Tensor {
    return this.decoder.forward(z, numFrames, subTrace(trace, 'decoder'));
  }

  /**
   * StableVideoDiffusionPipeline.decode_latents: latents [B, F, L, h, w] (scaled, as the sampler holds
   * them) -> frames [B, F, C, H, W] (frames before channels; diffusers permutes to [B, C, F, H, W]), decoded
   * in chunks of `chunkSize` flattened frames (see the header). `onChunk` sees each chunk's frame range.
   */
  decodeVideo(latents: Tensor, chunkSize: number, onChunk?: (done: number, total: number) => void): Tensor {
    if (latents.rank !== 5) throw new Error(`AutoencoderKLTemporalDecoder.decodeVideo: expected latents [B, F, L, h, w], found ${latents.toString()}`);
    if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new Error(`AutoencoderKLTemporalDecoder.decodeVideo: decode chunk size must be a positive integer, found ${chunkSize}`);
    const [B, F, L, h, w] = latents.shape as [number, number, number, number, number];
    const flat = latents.reshape([B * F, L, h, w]);
    const scaled = ops.scale(flat, 1 / this.scalingFactor);
    flat.dispose();
    const parts: Tensor[] = [];
    for (let i = 0; i < B * F; i += chunkSize) {
      const n = Math.min(chunkSize, B * F - i);
      const z = scaled.slice(0, i, i + n);
      parts.push(this.decode(z, n));
      z.dispose();
      onChunk?.(i + n, B * F);
    }
    scaled.dispose();
    const cat = parts.length === 1 ? parts[0]! : ops.concat(parts, 0);
    if (cat !== parts[0]) parts.forEach((p) => p.dispose());
    const out = cat.reshape([B, F, ...cat.shape.slice(1)]);
    cat.dispose();
    return out;
  }
}
