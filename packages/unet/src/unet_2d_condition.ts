// diffusers UNet2DConditionModel (diffusers/models/unets/unet_2d_condition.py, v0.29.2) built from a
// diffusers config.json: the SD1.5, SD2.x and SDXL configurations (conv or linear transformer
// projections, attention_head_dim as a number or a list, transformer_layers_per_block, SDXL's
// "text_time" added conditioning). Configuration this port does not implement is an error naming the key.
// Block classes come from the config's type strings through the tables of unet_block_types.ts.
//
// Forward (per diffusers), with the hook sites (hooks.ts) marked [site]:
//   emb = time_embedding(time_proj(t)) [+ add_embedding(concat(text_embeds, add_time_proj(time_ids)))]
//   x = conv_in(sample); skips = [x]; [conv_in]  (the skip keeps the raw conv_in output)
//   for each down block i: x, s = block(x, emb, ctx); skips += s; [down_blocks.<i>]  (skips unchanged)
//   (+ ControlNet residuals on the skips); [mid_block:before] x = mid_block(x, emb, ctx)
//   (+ ControlNet mid residual); [mid_block]
//   for each up block i: x = block(x, its skips (popped from the end), emb, ctx); [up_blocks.<i>]
//   out = conv_out(silu(conv_norm_out(x)))
// Every other hook key is a module path, applied by withModuleHooks. ControlNeXt injects through the
// site its variant names (spec sections 3.2, 4.2, 5.2; SVD v1 at mid_block:before).

import { ops, subTrace, type Backend, type Tensor, type Trace, type WeightSource, type WeightStoreOptions } from '@cnx/tensor';
import { Module } from './module.js';
import { loadStrict, readConfigJson } from './load_model.js';
import { configFromFiles, loadStrictFromFiles, type ModelFiles } from './model_files.js';
import { Conv2d } from './layers/conv2d.js';
import { GroupNorm } from './layers/group_norm.js';
import { TimestepEmbedding, Timesteps } from './embeddings.js';
import type { DownBlockOutput } from './unet_blocks.js';
import {
  blockBuilder, downBlockTypes, midBlockTypes, upBlockTypes, type UNetDownBlock, type UNetMidBlock, type UNetUpBlock,
} from './unet_block_types.js';
import { applySiteHook, splitSiteHooks, withModuleHooks, type Hooks } from './hooks.js';
import { ConfigChecker, MAX_CONFIG_BLOCKS, MAX_CONFIG_CHANNELS, MAX_CONFIG_LAYERS, MAX_CONFIG_HEADS, MAX_CONFIG_SAMPLE_SIZE, showValue } from './config_values.js';

export interface UNetForwardOptions {
  /** SDXL text_time: pooled text embeddings [B, Dt] and micro-conditioning time ids [B, 6]. */
  addedCond?: { textEmbeds: Tensor; timeIds: Tensor };
  /** ControlNet: added to the skip tensors (diffusers order: conv_in output first). */
  downBlockAdditionalResiduals?: Tensor[];
  /** ControlNet: added after the mid block. */
  midBlockAdditionalResidual?: Tensor;
  /**
   * Hooks by site (`conv_in`, `down_blocks.<i>`, `mid_block:before`, `mid_block`, `up_blocks.<i>`: the
   * hidden stream there) or by module path (`down_blocks.1.resnets.0`, `...:before`); see hooks.ts.
   * Each returns a NEW tensor (or its argument unchanged); the UNet frees what it replaces.
   */
  hooks?: Hooks;
  /** Named intermediates by state-dict path (packages/tensor/src/trace.ts). */
  trace?: Trace;
}

/** The config.json keys this port reads (diffusers UNet2DConditionModel.__init__ arguments). */
export interface UNet2DConditionConfig {
  in_channels: number;
  out_channels: number;
  center_input_sample: boolean;
  flip_sin_to_cos: boolean;
  freq_shift: number;
  down_block_types: string[];
  mid_block_type: string;
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number | number[];
  downsample_padding: number;
  mid_block_scale_factor: number;
  norm_num_groups: number;
  norm_eps: number;
  cross_attention_dim: number | number[];
  transformer_layers_per_block: number | (number | number[])[];
  reverse_transformer_layers_per_block: (number | number[])[] | null;
  attention_head_dim: number | number[];
  num_attention_heads: number | number[] | null;
  use_linear_projection: boolean;
  /** f16 advice only (null in SDXL's config = false); compute here is f32. */
  upcast_attention: boolean | null;
  addition_embed_type: 'text_time' | null;
  addition_time_embed_dim: number | null;
  projection_class_embeddings_input_dim: number | null;
  time_embedding_dim: number | null;
  conv_in_kernel: number;
  conv_out_kernel: number;
  /**
   * Latent size the model was trained at (pipelines default to sample_size * vae_scale_factor pixels):
   * a number, [height, width], or null when the config does not say (diffusers' default None).
   */
  sample_size: number | [number, number] | null;
}

const DEFAULTS: UNet2DConditionConfig = {
  in_channels: 4, out_channels: 4, center_input_sample: false, flip_sin_to_cos: true, freq_shift: 0,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  mid_block_type: 'UNetMidBlock2DCrossAttn',
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  block_out_channels: [320, 640, 1280, 1280], layers_per_block: 2, downsample_padding: 1, mid_block_scale_factor: 1,
  norm_num_groups: 32, norm_eps: 1e-5, cross_attention_dim: 1280, transformer_layers_per_block: 1,
  reverse_transformer_layers_per_block: null, attention_head_dim: 8, num_attention_heads: null,
  use_linear_projection: false, upcast_attention: false, addition_embed_type: null, addition_time_embed_dim: null,
  projection_class_embeddings_input_dim: null, time_embedding_dim: null, conv_in_kernel: 3, conv_out_kernel: 3,
  sample_size: null,
};

/**
 * Keys accepted only at the value every SD checkpoint uses (diffusers' defaults): anything else selects
 * a code path this port does not implement. `dropout` does not affect inference.
 */
const FIXED: Record<string, readonly unknown[]> = {
  act_fn: ['silu'],
  attention_type: ['default'],
  class_embed_type: [null],
  class_embeddings_concat: [false],
  cross_attention_norm: [null],
  dual_cross_attention: [false],
  encoder_hid_dim: [null],
  encoder_hid_dim_type: [null],
  mid_block_only_cross_attention: [null, false],
  num_class_embeds: [null],
  resnet_out_scale_factor: [1],
  resnet_skip_time_act: [false],
  resnet_time_scale_shift: ['default'],
  time_cond_proj_dim: [null],
  time_embedding_act_fn: [null],
  time_embedding_type: ['positional'],
  timestep_post_act: [null],
};
const IGNORED = new Set(['_class_name', '_diffusers_version', '_name_or_path', 'dropout',
  // only read by addition_embed_type "text" / "text_image" (not supported: rejected below)
  'addition_embed_type_num_heads']);

/** Keys whose null is meaningful (diffusers None = "not used" / "derive it"). */
const NULLABLE = new Set(['sample_size', 'upcast_attention', 'reverse_transformer_layers_per_block', 'num_attention_heads', 'addition_embed_type',
  'addition_time_embed_dim', 'projection_class_embeddings_input_dim', 'time_embedding_dim']);

/**
 * Validate a config.json object and fill diffusers' defaults; unsupported keys or values name the key.
 * Every value is checked for its type and range (config_values.ts) before anything is built.
 */
export function parseUNetConfig(raw: Record<string, unknown>, source = 'config'): UNet2DConditionConfig {
  const cfg: Record<string, unknown> = { ...DEFAULTS };
  // Own keys only: a key named 'constructor' or 'toString' must not find Object.prototype's members.
  const has = (o: object, k: string) => Object.hasOwn(o, k);
  for (const [key, value] of Object.entries(raw)) {
    if (IGNORED.has(key)) continue;
    if (has(FIXED, key)) {
      const ok = FIXED[key]!;
      if (!ok.some((v) => v === value)) {
        throw new Error(`${source}: UNet2DConditionModel ${key}=${showValue(value)} is not supported (supported: ${ok.map((v) => JSON.stringify(v)).join(', ')})`);
      }
      continue;
    }
    if (key === 'only_cross_attention') {
      if (value !== false && !(Array.isArray(value) && value.every((v) => v === false))) {
        throw new Error(`${source}: UNet2DConditionModel only_cross_attention=${showValue(value)} is not supported (only false)`);
      }
      continue;
    }
    if (!has(DEFAULTS, key)) throw new Error(`${source}: unknown UNet2DConditionModel config key '${key.length > 80 ? `${key.slice(0, 77)}...` : key}' (value ${showValue(value)})`);
    if (value === null && !NULLABLE.has(key)) throw new Error(`${source}: UNet2DConditionModel ${key}=null is not supported`);
    cfg[key] = value;
  }
  const k = new ConfigChecker(source, 'UNet2DConditionModel');
  const C = MAX_CONFIG_CHANNELS;
  // Block lists first: their length n sizes the per-block lists.
  const downTypes = k.list('down_block_types', cfg.down_block_types, 1, MAX_CONFIG_BLOCKS, (key, t) => k.string(key, t));
  const n = downTypes.length;
  const upTypes = k.list('up_block_types', cfg.up_block_types, n, n, (key, t) => k.string(key, t));
  const midType = k.string('mid_block_type', cfg.mid_block_type);
  const known = (table: object, t: string) => Object.hasOwn(table, t);
  for (const t of downTypes) if (!known(downBlockTypes, t)) k.fail('down_block_types', downTypes, `block types among ${Object.keys(downBlockTypes).join(', ')} ('${t}' is not supported)`);
  for (const t of upTypes) if (!known(upBlockTypes, t)) k.fail('up_block_types', upTypes, `block types among ${Object.keys(upBlockTypes).join(', ')} ('${t}' is not supported)`);
  if (!known(midBlockTypes, midType)) k.fail('mid_block_type', midType, `one of ${Object.keys(midBlockTypes).join(', ')}`);
  const boc = k.intList('block_out_channels', cfg.block_out_channels, n, 1, C);
  const layersPerBlockOrTransformer = (key: string, x: unknown) => (Array.isArray(x)
    ? k.list(key, x, 1, MAX_CONFIG_LAYERS, (kk, y) => k.int(kk, y, 1, MAX_CONFIG_LAYERS))
    : k.int(key, x, 1, MAX_CONFIG_LAYERS));
  const tl = cfg.transformer_layers_per_block;
  const c: UNet2DConditionConfig = {
    in_channels: k.int('in_channels', cfg.in_channels, 1, 1024),
    out_channels: k.int('out_channels', cfg.out_channels, 1, 1024),
    center_input_sample: k.bool('center_input_sample', cfg.center_input_sample),
    flip_sin_to_cos: k.bool('flip_sin_to_cos', cfg.flip_sin_to_cos),
    freq_shift: k.number('freq_shift', cfg.freq_shift, -1000, 1000),
    down_block_types: downTypes,
    mid_block_type: midType,
    up_block_types: upTypes,
    block_out_channels: boc,
    layers_per_block: k.intOrList('layers_per_block', cfg.layers_per_block, n, 1, MAX_CONFIG_LAYERS),
    downsample_padding: k.int('downsample_padding', cfg.downsample_padding, 0, 8),
    mid_block_scale_factor: k.number('mid_block_scale_factor', cfg.mid_block_scale_factor, -1000, 1000),
    norm_num_groups: k.int('norm_num_groups', cfg.norm_num_groups, 1, C),
    norm_eps: k.number('norm_eps', cfg.norm_eps, 0, 1, true),
    cross_attention_dim: k.intOrList('cross_attention_dim', cfg.cross_attention_dim, n, 1, C),
    transformer_layers_per_block: Array.isArray(tl)
      ? k.list('transformer_layers_per_block', tl, n, n, layersPerBlockOrTransformer)
      : k.int('transformer_layers_per_block', tl, 1, MAX_CONFIG_LAYERS),
    reverse_transformer_layers_per_block: cfg.reverse_transformer_layers_per_block === null ? null
      : k.list('reverse_transformer_layers_per_block', cfg.reverse_transformer_layers_per_block, n, n, layersPerBlockOrTransformer),
    attention_head_dim: k.intOrList('attention_head_dim', cfg.attention_head_dim, n, 1, C),
    num_attention_heads: cfg.num_attention_heads === null ? null : k.intOrList('num_attention_heads', cfg.num_attention_heads, n, 1, MAX_CONFIG_HEADS),
    use_linear_projection: k.bool('use_linear_projection', cfg.use_linear_projection),
    upcast_attention: cfg.upcast_attention === null ? null : k.bool('upcast_attention', cfg.upcast_attention),
    addition_embed_type: cfg.addition_embed_type as 'text_time' | null,
    addition_time_embed_dim: cfg.addition_time_embed_dim === null ? null : k.int('addition_time_embed_dim', cfg.addition_time_embed_dim, 1, C),
    projection_class_embeddings_input_dim: cfg.projection_class_embeddings_input_dim === null ? null
      : k.int('projection_class_embeddings_input_dim', cfg.projection_class_embeddings_input_dim, 1, 4 * C),
    time_embedding_dim: cfg.time_embedding_dim === null ? null : k.int('time_embedding_dim', cfg.time_embedding_dim, 1, 4 * C),
    conv_in_kernel: k.int('conv_in_kernel', cfg.conv_in_kernel, 1, 15),
    conv_out_kernel: k.int('conv_out_kernel', cfg.conv_out_kernel, 1, 15),
    sample_size: cfg.sample_size === null ? null : Array.isArray(cfg.sample_size)
      ? k.intList('sample_size', cfg.sample_size, 2, 1, MAX_CONFIG_SAMPLE_SIZE) as [number, number]
      : k.int('sample_size', cfg.sample_size, 1, MAX_CONFIG_SAMPLE_SIZE),
  };
  if (c.addition_embed_type !== null && c.addition_embed_type !== 'text_time') k.fail('addition_embed_type', c.addition_embed_type, 'null or "text_time" (the only ones supported)');
  if (c.addition_embed_type === 'text_time') {
    if (c.addition_time_embed_dim === null) k.fail('addition_time_embed_dim', null, 'an integer (text_time needs it)');
    if (c.projection_class_embeddings_input_dim === null) k.fail('projection_class_embeddings_input_dim', null, 'an integer (text_time needs it)');
  }
  for (const key of ['conv_in_kernel', 'conv_out_kernel'] as const) if (c[key] % 2 !== 1) k.fail(key, c[key], 'an odd kernel size (padding (k-1)/2)');
  // Shapes the blocks derive from these numbers: GroupNorm groups divide every width, heads divide the
  // widths of the blocks with attention (diffusers: head dim = channels / heads).
  for (const [i, ch] of boc.entries()) {
    if (ch % c.norm_num_groups !== 0) k.fail('norm_num_groups', c.norm_num_groups, `a divisor of every block_out_channels entry (block ${i} has ${ch} channels)`);
  }
  const headsKey = c.num_attention_heads !== null ? 'num_attention_heads' : 'attention_head_dim';
  const heads = perBlock(c.num_attention_heads ?? c.attention_head_dim, n);
  const attentive = [...downTypes.map((t, i) => [t, i] as const), [midType, n - 1] as const].filter(([t]) => t.includes('CrossAttn'));
  for (const [, i] of attentive) {
    if (boc[i]! % heads[i]! !== 0) k.fail(headsKey, c[headsKey], `heads that divide the block's channels (block ${i}: ${boc[i]} channels, ${heads[i]} heads)`);
  }
  return c;
}

const perBlock = <T>(v: T | T[], n: number): T[] => (Array.isArray(v) ? v : Array.from({ length: n }, () => v));

export interface UNetFromFolderOptions extends WeightStoreOptions {
  /** Weights folder to read instead of `dir` (config.json always from `dir`). */
  weights?: string;
}

export class UNet2DConditionModel extends Module {
  conv_in: Conv2d;
  time_proj: Timesteps;
  time_embedding: TimestepEmbedding;
  add_time_proj?: Timesteps;
  add_embedding?: TimestepEmbedding;
  down_blocks: UNetDownBlock[];
  up_blocks: UNetUpBlock[];
  mid_block: UNetMidBlock;
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;
  readonly config: UNet2DConditionConfig;
  /** The hook sites of this UNet's forward, in forward order (see the header). */
  readonly sites: readonly string[];
  private readonly siteSet: ReadonlySet<string>;

  /** Build from a parsed (or raw) config and a weight source; `raw` configs are validated. */
  constructor(config: UNet2DConditionConfig | Record<string, unknown>, ws: WeightSource, readonly backend: Backend) {
    super();
    const c = this.config = parseUNetConfig(config as Record<string, unknown>);
    const n = c.down_block_types.length;
    const boc = c.block_out_channels;
    // diffusers legacy naming: attention_head_dim is the number of heads unless num_attention_heads is given.
    const heads = perBlock(c.num_attention_heads ?? c.attention_head_dim, n);
    const layers = perBlock(c.layers_per_block, n);
    const ctxDim = perBlock(c.cross_attention_dim, n);
    const tlayers = perBlock(c.transformer_layers_per_block, n);
    const groups = c.norm_num_groups, eps = c.norm_eps;
    const timeEmbedDim = c.time_embedding_dim ?? boc[0]! * 4;

    this.conv_in = new Conv2d(ws.sub('conv_in'), backend, { inC: c.in_channels, outC: boc[0]!, k: c.conv_in_kernel, padding: (c.conv_in_kernel - 1) / 2 });
    this.time_proj = new Timesteps({ numChannels: boc[0]!, flipSinToCos: c.flip_sin_to_cos, downscaleFreqShift: c.freq_shift });
    this.time_embedding = new TimestepEmbedding(ws.sub('time_embedding'), backend, { inC: boc[0]!, timeEmbedDim });
    if (c.addition_embed_type === 'text_time') {
      this.add_time_proj = new Timesteps({ numChannels: c.addition_time_embed_dim!, flipSinToCos: c.flip_sin_to_cos, downscaleFreqShift: c.freq_shift });
      this.add_embedding = new TimestepEmbedding(ws.sub('add_embedding'), backend, { inC: c.projection_class_embeddings_input_dim!, timeEmbedDim });
    }

    this.down_blocks = c.down_block_types.map((type, i) => blockBuilder(downBlockTypes, type, 'down_block_types')({
      ws: ws.sub(`down_blocks.${i}`), backend,
      inC: i === 0 ? boc[0]! : boc[i - 1]!, outC: boc[i]!, tembC: timeEmbedDim, numLayers: layers[i]!, groups, eps,
      addDownsample: i < n - 1, downsamplePadding: c.downsample_padding,
      heads: heads[i]!, crossAttentionDim: ctxDim[i]!, transformerLayers: tlayers[i]!, useLinearProjection: c.use_linear_projection,
    }));

    this.mid_block = blockBuilder(midBlockTypes, c.mid_block_type, 'mid_block_type')({
      ws: ws.sub('mid_block'), backend,
      channels: boc[n - 1]!, tembC: timeEmbedDim, groups, eps, outputScaleFactor: c.mid_block_scale_factor,
      heads: heads[n - 1]!, crossAttentionDim: ctxDim[n - 1]!, transformerLayers: tlayers[n - 1]!, useLinearProjection: c.use_linear_projection,
    });

    const rboc = [...boc].reverse(), rheads = [...heads].reverse(), rlayers = [...layers].reverse(), rctx = [...ctxDim].reverse();
    const rtl = c.reverse_transformer_layers_per_block ?? [...tlayers].reverse();
    this.up_blocks = c.up_block_types.map((type, i) => blockBuilder(upBlockTypes, type, 'up_block_types')({
      ws: ws.sub(`up_blocks.${i}`), backend,
      inC: rboc[Math.min(i + 1, n - 1)]!, outC: rboc[i]!, prevOutC: i === 0 ? rboc[0]! : rboc[i - 1]!, tembC: timeEmbedDim,
      numLayers: rlayers[i]! + 1, groups, eps, addUpsample: i < n - 1,
      heads: rheads[i]!, crossAttentionDim: rctx[i]!, transformerLayers: rtl[i]!, useLinearProjection: c.use_linear_projection,
    }));

    this.conv_norm_out = new GroupNorm(ws.sub('conv_norm_out'), backend, { groups, channels: boc[0]!, eps });
    this.conv_out = new Conv2d(ws.sub('conv_out'), backend, { inC: boc[0]!, outC: c.out_channels, k: c.conv_out_kernel, padding: (c.conv_out_kernel - 1) / 2 });
    this.sites = [
      'conv_in', ...this.down_blocks.map((_, i) => `down_blocks.${i}`), 'mid_block:before', 'mid_block',
      ...this.up_blocks.map((_, i) => `up_blocks.${i}`),
    ];
    this.siteSet = new Set(this.sites);
  }

  /** The default latent size [h, w] from config.sample_size, or undefined when the config has none. */
  get defaultSampleSize(): [number, number] | undefined {
    const s = this.config.sample_size;
    if (s === null) return undefined;
    return typeof s === 'number' ? [s, s] : [s[0], s[1]];
  }

  /**
   * Load a diffusers `unet/` folder (config.json + diffusion_pytorch_model[.fp16].safetensors or a
   * sharded index). Strict: any missing, mis-shaped or unused key fails with the loader report.
   */
  static fromFolder(dir: string, backend: Backend, opts: UNetFromFolderOptions = {}): UNet2DConditionModel {
    const { raw, path } = readConfigJson(dir, 'UNet2DConditionModel.fromFolder');
    return loadStrict(opts.weights ?? dir, opts, (store) => new UNet2DConditionModel(parseUNetConfig(raw, path), store, backend));
  }

  /** The same from a folder's files in memory ('config.json' + weights; model_files.ts): the browser path. */
  static fromFiles(files: ModelFiles, backend: Backend, opts: WeightStoreOptions = {}): UNet2DConditionModel {
    const { raw, path } = configFromFiles(files, 'UNet2DConditionModel.fromFiles');
    const config = parseUNetConfig(raw, path);
    return loadStrictFromFiles(files, opts, 'UNet2DConditionModel.fromFiles', (store) => new UNet2DConditionModel(config, store, backend));
  }

  /** Number of skip tensors the down path produces (conv_in's output, then every resnet and downsampler). */
  get numSkips(): number {
    return 1 + this.down_blocks.reduce((n, b) => n + b.resnets.length + (b.downsamplers ? 1 : 0), 0);
  }

  /** Number of upsamplers: latents whose size is not a multiple of 2^this get explicit upsample sizes. */
  get numUpsamplers(): number {
    return this.up_blocks.filter((b) => b.upsamplers !== undefined).length;
  }

  /** The time embedding emb [B, timeEmbedDim] (+ SDXL's added conditioning). */
  timeEmbedding(timestep: Tensor, batch: number, addedCond?: UNetForwardOptions['addedCond'], trace?: Trace): Tensor {
    if (timestep.rank !== 1 || (timestep.shape[0] !== batch && timestep.shape[0] !== 1)) {
      throw new Error(`UNet2DConditionModel: expected timestep [${batch}] (or [1]), found [${timestep.shape.join(', ')}]`);
    }
    // diffusers broadcasts a single timestep to the batch (timesteps.expand(sample.shape[0])).
    const t = timestep.shape[0] === batch ? timestep : timestep.expand([batch]);
    const tp = this.time_proj.forward(t);
    if (t !== timestep) t.dispose();
    trace?.('time_proj', tp);
    let emb = this.time_embedding.forward(tp);
    tp.dispose();
    trace?.('time_embedding', emb);
    if (this.add_embedding && this.add_time_proj) {
      if (!addedCond) throw new Error('UNet2DConditionModel: addition_embed_type "text_time" requires addedCond { textEmbeds, timeIds }');
      const { textEmbeds, timeIds } = addedCond;
      // add_time_proj(time_ids.flatten()).reshape(B, -1), concatenated after text_embeds.
      const flat = timeIds.reshape([-1]);
      const tproj = this.add_time_proj.forward(flat);
      flat.dispose();
      const te = tproj.reshape([textEmbeds.shape[0]!, -1]);
      tproj.dispose();
      const addEmbeds = ops.concat([textEmbeds, te], -1);
      te.dispose();
      const aug = this.add_embedding.forward(addEmbeds);
      addEmbeds.dispose();
      trace?.('add_embedding', aug);
      const sum = ops.add(emb, aug);
      [emb, aug].forEach((v) => v.dispose());
      emb = sum;
    }
    return emb;
  }

  /**
   * sample [B, in_channels, h, w], timestep [B] (f32; or [1], broadcast), encoderHiddenStates [B, L, D]
   * -> [B, out_channels, h, w]. Intermediates are reported through opts.trace under their state-dict
   * paths ('down_blocks.0.1.0' = the first skip of down block 0, as in the golden cases).
   */
  forward(sample: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, opts: UNetForwardOptions = {}): Tensor {
    const { sites, modules } = splitSiteHooks(opts.hooks, this.siteSet);
    return withModuleHooks(this, modules, () => this.run(sample, timestep, encoderHiddenStates, opts, sites), this.sites);
  }

  private run(sample: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, opts: UNetForwardOptions, hooks: Hooks | undefined): Tensor {
    const trace = opts.trace;
    const B = sample.shape[0]!;
    // Checked before any work, so a bad call allocates nothing.
    const nSkips = this.numSkips;
    if (opts.downBlockAdditionalResiduals && opts.downBlockAdditionalResiduals.length !== nSkips) {
      throw new Error(`UNet2DConditionModel: expected ${nSkips} down block residuals, found ${opts.downBlockAdditionalResiduals.length}`);
    }
    const emb = this.timeEmbedding(timestep, B, opts.addedCond, trace);

    const input = this.config.center_input_sample ? ops.affine(sample, 2, -1) : sample;
    let x = this.conv_in.forward(input);
    if (input !== sample) input.dispose();
    trace?.('conv_in', x);
    const skips: Tensor[] = [x];
    x = applySiteHook(hooks, 'conv_in', x); // the skip keeps the raw conv_in output
    /** Replace the stream x by `next`, freeing x unless it is the conv_in skip. */
    const advance = (next: Tensor) => {
      if (next !== x && x !== skips[0]) x.dispose();
      x = next;
    };

    this.down_blocks.forEach((block, i) => {
      const out: DownBlockOutput = block.forward(x, emb, encoderHiddenStates, subTrace(trace, `down_blocks.${i}`));
      skips.push(...out.skips);
      advance(out.hidden); // the block input is not a skip (except conv_in's output)
      advance(applySiteHook(hooks, `down_blocks.${i}`, x)); // the skips keep their values
    });

    if (opts.downBlockAdditionalResiduals) {
      const res = opts.downBlockAdditionalResiduals;
      skips.forEach((s, j) => {
        skips[j] = ops.add(s, res[j]!);
        if (s !== x) s.dispose(); // the stream may still be conv_in's output (a UNet without down blocks)
      });
    }

    advance(applySiteHook(hooks, 'mid_block:before', x));
    let h = this.mid_block.forward(x, emb, encoderHiddenStates, subTrace(trace, 'mid_block'));
    advance(h);
    if (opts.midBlockAdditionalResidual) {
      const r = ops.add(h, opts.midBlockAdditionalResidual);
      h.dispose();
      h = r;
    }
    const hooked = applySiteHook(hooks, 'mid_block', h);
    if (hooked !== h) h.dispose();
    h = hooked;

    // diffusers forwards explicit upsample sizes when the latent is not a multiple of 2^num_upsamplers.
    const factor = 2 ** this.numUpsamplers;
    const forwardSize = sample.shape.slice(2).some((d) => d % factor !== 0);
    this.up_blocks.forEach((block, i) => {
      const own = skips.splice(skips.length - block.resnets.length, block.resnets.length);
      const last = skips[skips.length - 1];
      const size = forwardSize && i < this.up_blocks.length - 1 && last ? [last.shape[2]!, last.shape[3]!] as const : undefined;
      const next = block.forward(h, own, emb, encoderHiddenStates, size, subTrace(trace, `up_blocks.${i}`));
      h.dispose();
      own.forEach((s) => s.dispose());
      h = applySiteHook(hooks, `up_blocks.${i}`, next);
      if (h !== next) next.dispose();
    });
    emb.dispose();

    const act = this.conv_norm_out.forwardSilu(h, trace && ((n) => trace('conv_norm_out', n)));
    h.dispose();
    const out = this.conv_out.forward(act);
    act.dispose();
    trace?.('conv_out', out);
    return out;
  }
}
