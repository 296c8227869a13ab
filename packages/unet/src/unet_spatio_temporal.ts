// diffusers UNetSpatioTemporalConditionModel (diffusers/models/unets/unet_spatio_temporal_condition.py,
// v0.29.2), Stable Video Diffusion's denoiser, built from a diffusers config.json.
//
// forward(sample [B, F, Cin, h, w], t, encoder_hidden_states [B, L, D], added_time_ids [B, 3]):
//   emb = time_embedding(time_proj(t)) + add_embedding(add_time_proj(added_time_ids.flatten()).reshape(B, -1))
//     (added_time_ids = [fps, motion_bucket_id, noise_aug_strength]); emb and the context are repeated
//     over frames (repeat_interleave), the sample flattened to [B*F, Cin, h, w]
//   x = conv_in(sample); skips = [x]; down blocks; mid block; up blocks (skips popped from the end)
//   out = conv_out(silu(conv_norm_out(x))) -> [B, F, Cout, h, w]
// image_only_indicator is all zeros (every SVD pipeline passes zeros), so every AlphaBlender mixes with
// sigmoid(mix_factor). `num_attention_heads` is the number of heads (head size = channels / heads).
//
// Hooks (hooks.ts, the seam shared with UNet2DConditionModel): the sites `conv_in`, `down_blocks.<i>`,
// `mid_block:before`, `mid_block`, `up_blocks.<i>` (the hidden stream after that module; `:before` = its
// input) are applied here; skips keep the values the down path recorded (a hook at conv_in or after a down
// block changes only the hidden state that goes on), as in the ControlNeXt-SVD UNets. Every other key is a
// module path (`down_blocks.0.resnets.0.temporal_res_block`, `...:before`) applied by withModuleHooks.

import { ops, subTrace, type Backend, type Tensor, type Trace, type WeightSource, type WeightStoreOptions } from '@cnx/tensor';
import { applySiteHook, splitSiteHooks, withModuleHooks, type Hooks } from './hooks.js';
import { Module } from './module.js';
import { loadStrict, readConfigJson } from './load_model.js';
import { Conv2d } from './layers/conv2d.js';
import { GroupNorm } from './layers/group_norm.js';
import { ConfigChecker, MAX_CONFIG_BLOCKS, MAX_CONFIG_CHANNELS, MAX_CONFIG_HEADS, MAX_CONFIG_LAYERS, showValue } from './config_values.js';
import { TimestepEmbedding, Timesteps } from './embeddings.js';
import {
  CrossAttnDownBlockSpatioTemporal, CrossAttnUpBlockSpatioTemporal, DownBlockSpatioTemporal, UNetMidBlockSpatioTemporal,
  UpBlockSpatioTemporal,
} from './unet_spatio_temporal_blocks.js';

export interface UNetSpatioTemporalConfig {
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  block_out_channels: number[];
  addition_time_embed_dim: number;
  projection_class_embeddings_input_dim: number;
  layers_per_block: number | number[];
  cross_attention_dim: number | number[];
  transformer_layers_per_block: number | (number | number[])[];
  num_attention_heads: number | number[];
  /** Frames the model was trained with (25 for SVD-xt); informational, any count runs. */
  num_frames: number;
}

const DEFAULTS: UNetSpatioTemporalConfig = {
  in_channels: 8, out_channels: 4,
  down_block_types: ['CrossAttnDownBlockSpatioTemporal', 'CrossAttnDownBlockSpatioTemporal', 'CrossAttnDownBlockSpatioTemporal', 'DownBlockSpatioTemporal'],
  up_block_types: ['UpBlockSpatioTemporal', 'CrossAttnUpBlockSpatioTemporal', 'CrossAttnUpBlockSpatioTemporal', 'CrossAttnUpBlockSpatioTemporal'],
  block_out_channels: [320, 640, 1280, 1280], addition_time_embed_dim: 256, projection_class_embeddings_input_dim: 768,
  layers_per_block: 2, cross_attention_dim: 1024, transformer_layers_per_block: 1, num_attention_heads: [5, 10, 20, 20], num_frames: 25,
};
// upcast_attention: the ControlNeXt-SVD UNet classes take it (f16 advice: softmax in f32); compute here is f32.
const IGNORED = new Set(['_class_name', '_diffusers_version', '_name_or_path', 'sample_size', 'upcast_attention']);
const DOWN_TYPES = ['CrossAttnDownBlockSpatioTemporal', 'DownBlockSpatioTemporal'];
const UP_TYPES = ['CrossAttnUpBlockSpatioTemporal', 'UpBlockSpatioTemporal'];

/** Validate a config.json object and fill diffusers' defaults; unknown keys or values name the key. */
export function parseSpatioTemporalUNetConfig(raw: Record<string, unknown>, source = 'config'): UNetSpatioTemporalConfig {
  const cfg: Record<string, unknown> = { ...DEFAULTS };
  for (const [key, value] of Object.entries(raw)) {
    if (IGNORED.has(key)) continue;
    if (!Object.hasOwn(DEFAULTS, key)) throw new Error(`${source}: unknown UNetSpatioTemporalConditionModel config key '${key.slice(0, 80)}' (value ${showValue(value)})`);
    if (value === null) throw new Error(`${source}: UNetSpatioTemporalConditionModel ${key}=null is not supported`);
    cfg[key] = value;
  }
  // Every value typed and bounded (config_values.ts), as parseUNetConfig does.
  const k = new ConfigChecker(source, 'UNetSpatioTemporalConditionModel');
  const C = MAX_CONFIG_CHANNELS;
  const downTypes = k.list('down_block_types', cfg.down_block_types, 1, MAX_CONFIG_BLOCKS, (key, t) => k.string(key, t));
  const n = downTypes.length;
  const upTypes = k.list('up_block_types', cfg.up_block_types, n, n, (key, t) => k.string(key, t));
  for (const t of downTypes) if (!DOWN_TYPES.includes(t)) k.fail('down_block_types', downTypes, `block types among ${DOWN_TYPES.join(', ')} ('${t}' is not supported)`);
  for (const t of upTypes) if (!UP_TYPES.includes(t)) k.fail('up_block_types', upTypes, `block types among ${UP_TYPES.join(', ')} ('${t}' is not supported)`);
  const boc = k.intList('block_out_channels', cfg.block_out_channels, n, 1, C);
  const tl = cfg.transformer_layers_per_block;
  const layersOrList = (key: string, x: unknown) => (Array.isArray(x)
    ? k.list(key, x, 1, MAX_CONFIG_LAYERS, (kk, y) => k.int(kk, y, 1, MAX_CONFIG_LAYERS))
    : k.int(key, x, 1, MAX_CONFIG_LAYERS));
  const c: UNetSpatioTemporalConfig = {
    in_channels: k.int('in_channels', cfg.in_channels, 1, 1024),
    out_channels: k.int('out_channels', cfg.out_channels, 1, 1024),
    down_block_types: downTypes,
    up_block_types: upTypes,
    block_out_channels: boc,
    addition_time_embed_dim: k.int('addition_time_embed_dim', cfg.addition_time_embed_dim, 1, C),
    projection_class_embeddings_input_dim: k.int('projection_class_embeddings_input_dim', cfg.projection_class_embeddings_input_dim, 1, 4 * C),
    layers_per_block: k.intOrList('layers_per_block', cfg.layers_per_block, n, 1, MAX_CONFIG_LAYERS),
    cross_attention_dim: k.intOrList('cross_attention_dim', cfg.cross_attention_dim, n, 1, C),
    transformer_layers_per_block: Array.isArray(tl) ? k.list('transformer_layers_per_block', tl, n, n, layersOrList) : k.int('transformer_layers_per_block', tl, 1, MAX_CONFIG_LAYERS),
    num_attention_heads: k.intOrList('num_attention_heads', cfg.num_attention_heads, n, 1, MAX_CONFIG_HEADS),
    num_frames: k.int('num_frames', cfg.num_frames, 1, 10_000),
  };
  if (c.projection_class_embeddings_input_dim !== 3 * c.addition_time_embed_dim) {
    k.fail('projection_class_embeddings_input_dim', c.projection_class_embeddings_input_dim,
      `3 x addition_time_embed_dim = ${3 * c.addition_time_embed_dim} (fps, motion bucket, noise augmentation)`);
  }
  // GroupNorm 32 in every block; heads divide the widths of the attention blocks.
  const heads = perBlock(c.num_attention_heads, n);
  for (const [i, ch] of boc.entries()) {
    if (ch % 32 !== 0) k.fail('block_out_channels', boc, `multiples of 32 (GroupNorm 32; block ${i} has ${ch})`);
    if ((downTypes[i]!.startsWith('CrossAttn') || i === n - 1) && ch % heads[i]! !== 0) {
      k.fail('num_attention_heads', c.num_attention_heads, `heads that divide the block's channels (block ${i}: ${ch} channels, ${heads[i]} heads)`);
    }
  }
  return c;
}

const perBlock = <T>(v: T | T[], n: number): T[] => (Array.isArray(v) ? v : Array.from({ length: n }, () => v));

export interface UNetSpatioTemporalForwardOptions {
  /** Hooks by site (conv_in, down_blocks.<i>, mid_block:before, mid_block, up_blocks.<i>) or module path (hooks.ts). */
  hooks?: Hooks;
  /** Named intermediates by state-dict path (packages/tensor/src/trace.ts). */
  trace?: Trace;
}

export class UNetSpatioTemporalConditionModel extends Module {
  conv_in: Conv2d;
  time_proj: Timesteps;
  time_embedding: TimestepEmbedding;
  add_time_proj: Timesteps;
  add_embedding: TimestepEmbedding;
  down_blocks: (CrossAttnDownBlockSpatioTemporal | DownBlockSpatioTemporal)[];
  mid_block: UNetMidBlockSpatioTemporal;
  up_blocks: (CrossAttnUpBlockSpatioTemporal | UpBlockSpatioTemporal)[];
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;
  readonly config: UNetSpatioTemporalConfig;

  constructor(config: UNetSpatioTemporalConfig | Record<string, unknown>, ws: WeightSource, readonly backend: Backend) {
    super();
    const c = this.config = parseSpatioTemporalUNetConfig(config as Record<string, unknown>);
    const n = c.down_block_types.length, boc = c.block_out_channels;
    const heads = perBlock(c.num_attention_heads, n), layers = perBlock(c.layers_per_block, n);
    const ctx = perBlock(c.cross_attention_dim, n), tl = perBlock(c.transformer_layers_per_block, n);
    const T = boc[0]! * 4;

    this.conv_in = new Conv2d(ws.sub('conv_in'), backend, { inC: c.in_channels, outC: boc[0]!, k: 3, padding: 1 });
    this.time_proj = new Timesteps({ numChannels: boc[0]!, flipSinToCos: true, downscaleFreqShift: 0 });
    this.time_embedding = new TimestepEmbedding(ws.sub('time_embedding'), backend, { inC: boc[0]!, timeEmbedDim: T });
    this.add_time_proj = new Timesteps({ numChannels: c.addition_time_embed_dim, flipSinToCos: true, downscaleFreqShift: 0 });
    this.add_embedding = new TimestepEmbedding(ws.sub('add_embedding'), backend, { inC: c.projection_class_embeddings_input_dim, timeEmbedDim: T });

    this.down_blocks = c.down_block_types.map((type, i) => {
      const o = { inC: i === 0 ? boc[0]! : boc[i - 1]!, outC: boc[i]!, tembC: T, numLayers: layers[i]!, addDownsample: i < n - 1 };
      const bws = ws.sub(`down_blocks.${i}`);
      return type === 'CrossAttnDownBlockSpatioTemporal'
        ? new CrossAttnDownBlockSpatioTemporal(bws, backend, { ...o, heads: heads[i]!, crossAttentionDim: ctx[i]!, transformerLayers: tl[i]! })
        : new DownBlockSpatioTemporal(bws, backend, o);
    });
    this.mid_block = new UNetMidBlockSpatioTemporal(ws.sub('mid_block'), backend, {
      channels: boc[n - 1]!, tembC: T, heads: heads[n - 1]!, crossAttentionDim: ctx[n - 1]!, transformerLayers: tl[n - 1]!,
    });
    const rboc = [...boc].reverse(), rheads = [...heads].reverse(), rlayers = [...layers].reverse(), rctx = [...ctx].reverse(), rtl = [...tl].reverse();
    this.up_blocks = c.up_block_types.map((type, i) => {
      const o = {
        inC: rboc[Math.min(i + 1, n - 1)]!, outC: rboc[i]!, prevOutC: i === 0 ? rboc[0]! : rboc[i - 1]!, tembC: T,
        numLayers: rlayers[i]! + 1, addUpsample: i < n - 1,
      };
      const bws = ws.sub(`up_blocks.${i}`);
      return type === 'CrossAttnUpBlockSpatioTemporal'
        ? new CrossAttnUpBlockSpatioTemporal(bws, backend, { ...o, heads: rheads[i]!, crossAttentionDim: rctx[i]!, transformerLayers: rtl[i]! })
        : new UpBlockSpatioTemporal(bws, backend, o);
    });
    this.conv_norm_out = new GroupNorm(ws.sub('conv_norm_out'), backend, { groups: 32, channels: boc[0]!, eps: 1e-5 });
    this.conv_out = new Conv2d(ws.sub('conv_out'), backend, { inC: boc[0]!, outC: c.out_channels, k: 3, padding: 1 });
  }

  /**
   * Load a diffusers `unet/` folder (config.json + weights, fp32 or fp16 files or a sharded index); strict.
   * `weights`: another weights file or folder (a ControlNeXt-SVD full UNet). 16-bit weight storage: a backend created with weightDtype 'f16'.
   */
  static fromFolder(dir: string, backend: Backend, opts: WeightStoreOptions & { weights?: string } = {}): UNetSpatioTemporalConditionModel {
    const { raw, path } = readConfigJson(dir, 'UNetSpatioTemporalConditionModel.fromFolder');
    const config = parseSpatioTemporalUNetConfig(raw, path);
    return loadStrict(opts.weights ?? dir, opts, (store) => new UNetSpatioTemporalConditionModel(config, store, backend));
  }

  /** The site names this UNet offers to hooks. */
  get siteNames(): string[] {
    return ['conv_in', ...this.down_blocks.map((_, i) => `down_blocks.${i}`), 'mid_block:before', 'mid_block', ...this.up_blocks.map((_, i) => `up_blocks.${i}`)];
  }

  /** Latent height and width must be multiples of this (no explicit upsample sizes in SVD's UNet). */
  get sizeMultiple(): number { return 2 ** (this.down_blocks.length - 1); }

  /** Width at each site, for a control module's output check. */
  channelsAt(site: string): number {
    const boc = this.config.block_out_channels, n = boc.length;
    if (site === 'conv_in') return boc[0]!;
    if (site === 'mid_block' || site === 'mid_block:before') return boc[n - 1]!;
    const m = /^(down|up)_blocks\.(\d+)$/.exec(site);
    if (m && Number(m[2]) < n) return m[1] === 'down' ? boc[Number(m[2])]! : [...boc].reverse()[Number(m[2])]!;
    throw new Error(`UNetSpatioTemporalConditionModel: no site '${site}' (sites: ${this.siteNames.join(', ')})`);
  }

  /**
   * emb [B, T] = time_embedding(time_proj(t)) + add_embedding(add_time_proj(addedTimeIds)).
   * timestep [B] or [1] (broadcast; SVD passes c_noise = 0.25 ln sigma), addedTimeIds [B, 3] or [1, 3].
   */
  timeEmbedding(timestep: Tensor, addedTimeIds: Tensor, batch: number, trace?: Trace): Tensor {
    if (timestep.rank !== 1 || (timestep.shape[0] !== batch && timestep.shape[0] !== 1)) {
      throw new Error(`UNetSpatioTemporalConditionModel: expected timestep [${batch}] (or [1]), found ${timestep.toString()}`);
    }
    const ids = this.config.projection_class_embeddings_input_dim / this.config.addition_time_embed_dim;
    if (addedTimeIds.rank !== 2 || addedTimeIds.shape[1] !== ids || (addedTimeIds.shape[0] !== batch && addedTimeIds.shape[0] !== 1)) {
      throw new Error(`UNetSpatioTemporalConditionModel: expected added_time_ids [${batch}, ${ids}] (fps, motion bucket, noise augmentation), found ${addedTimeIds.toString()}`);
    }
    const t = timestep.shape[0] === batch ? timestep : timestep.expand([batch]);
    const tp = this.time_proj.forward(t);
    if (t !== timestep) t.dispose();
    trace?.('time_proj', tp);
    const emb = this.time_embedding.forward(tp);
    tp.dispose();
    trace?.('time_embedding', emb);
    const idsB = addedTimeIds.shape[0] === batch ? addedTimeIds : addedTimeIds.expand([batch, ids]);
    const flat = idsB.reshape([-1]);
    if (idsB !== addedTimeIds) idsB.dispose();
    const ap = this.add_time_proj.forward(flat);
    flat.dispose();
    trace?.('add_time_proj', ap);
    const te = ap.reshape([batch, -1]);
    ap.dispose();
    const aug = this.add_embedding.forward(te);
    te.dispose();
    trace?.('add_embedding', aug);
    const out = ops.add(emb, aug);
    [emb, aug].forEach((v) => v.dispose());
    return out;
  }

  /**
   * sample [B, F, in_channels, h, w], timestep [B] or [1], encoderHiddenStates [B, L, D],
   * addedTimeIds [B, 3] or [1, 3] -> [B, F, out_channels, h, w]. Intermediates are reported through
   * opts.trace under their state-dict paths ('down_blocks.0.1.0' = the first skip of down block 0).
   */
  forward(sample: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, addedTimeIds: Tensor, opts: UNetSpatioTemporalForwardOptions = {}): Tensor {
    const sites = this.siteNames;
    const split = splitSiteHooks(opts.hooks, new Set(sites));
    return withModuleHooks(this, split.modules, () => this.run(sample, timestep, encoderHiddenStates, addedTimeIds, opts.trace, split.sites), sites);
  }

  private run(sample: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, addedTimeIds: Tensor, trace: Trace | undefined, hooks: Hooks | undefined): Tensor {
    if (sample.rank !== 5 || sample.shape[2] !== this.config.in_channels) {
      throw new Error(`UNetSpatioTemporalConditionModel: expected sample [B, F, ${this.config.in_channels}, h, w], found ${sample.toString()}`);
    }
    const [B, F, Cin, h, w] = sample.shape as [number, number, number, number, number];
    const m = this.sizeMultiple;
    if (h % m !== 0 || w % m !== 0) {
      throw new Error(`UNetSpatioTemporalConditionModel: latent size ${h}x${w} must be a multiple of ${m} (${m * 8} pixels with an 8x VAE): ` +
        `the up path doubles sizes without explicit targets`);
    }
    if (encoderHiddenStates.rank !== 3 || encoderHiddenStates.shape[0] !== B) {
      throw new Error(`UNetSpatioTemporalConditionModel: expected encoder_hidden_states [${B}, L, D], found ${encoderHiddenStates.toString()}`);
    }
    const site = (name: string, x: Tensor): Tensor => applySiteHook(hooks, name, x);

    const emb0 = this.timeEmbedding(timestep, addedTimeIds, B, trace);
    // repeat_interleave over frames: [B, T] -> [B*F, T]; the context likewise.
    const repeatFrames = (t: Tensor): Tensor => {
      const v = t.reshape([B, 1, ...t.shape.slice(1)]);
      const e = v.expand([B, F, ...t.shape.slice(1)]);
      const c = e.contiguous();
      const r = c.reshape([B * F, ...t.shape.slice(1)]);
      [v, e, c].forEach((u) => u.dispose());
      return r;
    };
    const emb = repeatFrames(emb0);
    emb0.dispose();
    const ctx = repeatFrames(encoderHiddenStates);

    const flat = sample.reshape([B * F, Cin, h, w]);
    const x0 = this.conv_in.forward(flat);
    flat.dispose();
    trace?.('conv_in', x0);
    const skips: Tensor[] = [x0];
    let x = site('conv_in', x0); // the skip keeps the raw conv_in output

    this.down_blocks.forEach((block, i) => {
      const out = block.forward(x, emb, ctx, F, subTrace(trace, `down_blocks.${i}`));
      if (x !== skips[0]) x.dispose();
      skips.push(...out.skips);
      x = out.hidden;
      const y = site(`down_blocks.${i}`, x);
      if (y !== x) x.dispose();
      x = y;
    });

    // x is the last down block's hidden state: a view of its own, never a skip.
    const before = site('mid_block:before', x);
    if (before !== x) x.dispose();
    let hcur = this.mid_block.forward(before, emb, ctx, F, subTrace(trace, 'mid_block'));
    before.dispose();
    const afterMid = site('mid_block', hcur);
    if (afterMid !== hcur) hcur.dispose();
    hcur = afterMid;

    this.up_blocks.forEach((block, i) => {
      const own = skips.splice(skips.length - block.resnets.length, block.resnets.length);
      const next = block.forward(hcur, own, emb, ctx, F, subTrace(trace, `up_blocks.${i}`));
      hcur.dispose();
      own.forEach((s) => s.dispose());
      const y = site(`up_blocks.${i}`, next);
      if (y !== next) next.dispose();
      hcur = y;
    });
    [emb, ctx].forEach((t) => t.dispose());

    let act: Tensor;
    if (trace) {
      const n = this.conv_norm_out.forward(hcur);
      trace('conv_norm_out', n);
      act = ops.silu(n);
      n.dispose();
      trace('conv_act', act);
    } else {
      act = this.conv_norm_out.forward(hcur, true);
    }
    hcur.dispose();
    const o = this.conv_out.forward(act);
    act.dispose();
    trace?.('conv_out', o);
    const out = o.reshape([B, F, ...o.shape.slice(1)]);
    o.dispose();
    return out;
  }
}
