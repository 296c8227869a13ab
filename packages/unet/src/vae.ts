// diffusers AutoencoderKL (diffusers/models/autoencoders/autoencoder_kl.py and vae.py, v0.29.2):
//   encode: x -> Encoder -> quant_conv -> moments [B, 2L, h, w] = (mean, logvar); logvar clamped to
//           [-30, 20]; std = exp(0.5 logvar) (DiagonalGaussianDistribution)
//   decode: z -> post_quant_conv -> Decoder
// Encoder: conv_in, DownEncoderBlock2D x n (resnet eps 1e-6, Downsample2D padding 0 + pad (0,1,0,1)),
// UNetMidBlock2D (one spatial attention head over all channels), conv_norm_out (eps 1e-6) + SiLU, conv_out.
// Decoder: conv_in, UNetMidBlock2D, UpDecoderBlock2D x n (layers_per_block + 1 resnets), conv_norm_out +
// SiLU, conv_out. Latents are passed as-is: scaling by config.scaling_factor is the pipeline's job.

import { ops, subTrace, type Backend, type Tensor, type Trace, type WeightSource, type WeightStoreOptions } from '@cnx/tensor';
import { Module } from './module.js';
import { loadStrict, readConfigJson } from './load_model.js';
import { configFromFiles, loadStrictFromFiles, type ModelFiles } from './model_files.js';
import { Conv2d } from './layers/conv2d.js';
import { GroupNorm } from './layers/group_norm.js';
import { DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D } from './unet_blocks.js';
import { ConfigChecker, MAX_CONFIG_BLOCKS, MAX_CONFIG_CHANNELS, MAX_CONFIG_LAYERS, showValue } from './config_values.js';

export interface AutoencoderKLConfig {
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number;
  latent_channels: number;
  norm_num_groups: number;
  scaling_factor: number;
  shift_factor: number | null;
  latents_mean: number[] | null;
  latents_std: number[] | null;
  use_quant_conv: boolean;
  use_post_quant_conv: boolean;
  mid_block_add_attention: boolean;
  /**
   * The VAE overflows in float16: pipelines run it in float32 when the rest is half precision (diffusers
   * default true; SDXL's VAE sets it, the fp16-fix VAE clears it). Read by the pipelines.
   */
  force_upcast: boolean;
}

const DEFAULTS: AutoencoderKLConfig = {
  in_channels: 3, out_channels: 3, down_block_types: ['DownEncoderBlock2D'], up_block_types: ['UpDecoderBlock2D'],
  block_out_channels: [64], layers_per_block: 1, latent_channels: 4, norm_num_groups: 32, scaling_factor: 0.18215,
  shift_factor: null, latents_mean: null, latents_std: null, use_quant_conv: true, use_post_quant_conv: true,
  mid_block_add_attention: true, force_upcast: true,
};
const NULLABLE = new Set(['shift_factor', 'latents_mean', 'latents_std']);
// sample_size: tiling hint; it does not change inference.
const IGNORED = new Set(['_class_name', '_diffusers_version', '_name_or_path', 'sample_size']);

/**
 * Validate an AutoencoderKL config.json object and fill diffusers' defaults; unsupported keys or values
 * name the key. Every value is checked for its type and range (config_values.ts).
 */
export function parseVaeConfig(raw: Record<string, unknown>, source = 'config'): AutoencoderKLConfig {
  const cfg: Record<string, unknown> = { ...DEFAULTS };
  for (const [key, value] of Object.entries(raw)) {
    if (IGNORED.has(key)) continue;
    if (key === 'act_fn') {
      if (value !== 'silu') throw new Error(`${source}: AutoencoderKL act_fn=${showValue(value)} is not supported (only "silu")`);
      continue;
    }
    // Own keys only ('constructor' is not a config key).
    if (!Object.hasOwn(DEFAULTS, key)) throw new Error(`${source}: unknown AutoencoderKL config key '${key.length > 80 ? `${key.slice(0, 77)}...` : key}' (value ${showValue(value)})`);
    if (value === null && !NULLABLE.has(key)) throw new Error(`${source}: AutoencoderKL ${key}=null is not supported`);
    cfg[key] = value;
  }
  const k = new ConfigChecker(source, 'AutoencoderKL');
  const boc = k.list('block_out_channels', cfg.block_out_channels, 1, MAX_CONFIG_BLOCKS, (key, x) => k.int(key, x, 1, MAX_CONFIG_CHANNELS));
  const n = boc.length;
  const types = (key: string, want: string) => k.list(key, cfg[key], n, n, (kk, t) => {
    if (t !== want) k.fail(key, cfg[key], `${n} x "${want}" (one per block_out_channels entry)`);
    return t as string;
  });
  const latent = k.int('latent_channels', cfg.latent_channels, 1, 1024);
  const floats = (key: string, positive: boolean) => (cfg[key] === null ? null
    : k.list(key, cfg[key], latent, latent, (kk, x) => k.number(kk, x, positive ? 0 : -1e6, 1e6, positive)));
  const c: AutoencoderKLConfig = {
    in_channels: k.int('in_channels', cfg.in_channels, 1, 1024),
    out_channels: k.int('out_channels', cfg.out_channels, 1, 1024),
    down_block_types: types('down_block_types', 'DownEncoderBlock2D'),
    up_block_types: types('up_block_types', 'UpDecoderBlock2D'),
    block_out_channels: boc,
    layers_per_block: k.int('layers_per_block', cfg.layers_per_block, 1, MAX_CONFIG_LAYERS),
    latent_channels: latent,
    norm_num_groups: k.int('norm_num_groups', cfg.norm_num_groups, 1, MAX_CONFIG_CHANNELS),
    scaling_factor: k.number('scaling_factor', cfg.scaling_factor, 0, 1e6, true),
    shift_factor: cfg.shift_factor === null ? null : k.number('shift_factor', cfg.shift_factor, -1e6, 1e6),
    latents_mean: floats('latents_mean', false),
    latents_std: floats('latents_std', true),
    use_quant_conv: k.bool('use_quant_conv', cfg.use_quant_conv),
    use_post_quant_conv: k.bool('use_post_quant_conv', cfg.use_post_quant_conv),
    mid_block_add_attention: k.bool('mid_block_add_attention', cfg.mid_block_add_attention),
    force_upcast: k.bool('force_upcast', cfg.force_upcast),
  };
  for (const [i, ch] of boc.entries()) {
    if (ch % c.norm_num_groups !== 0) k.fail('norm_num_groups', c.norm_num_groups, `a divisor of every block_out_channels entry (block ${i} has ${ch} channels)`);
  }
  return c;
}

const VAE_EPS = 1e-6; // diffusers Encoder/Decoder hard-code resnet and norm eps 1e-6

export class Encoder extends Module {
  conv_in: Conv2d;
  down_blocks: DownEncoderBlock2D[];
  mid_block: UNetMidBlock2D;
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;

  constructor(ws: WeightSource, backend: Backend, c: AutoencoderKLConfig) {
    super();
    const boc = c.block_out_channels, groups = c.norm_num_groups, top = boc[boc.length - 1]!;
    this.conv_in = new Conv2d(ws.sub('conv_in'), backend, { inC: c.in_channels, outC: boc[0]!, k: 3, padding: 1 });
    this.down_blocks = boc.map((outC, i) => new DownEncoderBlock2D(ws.sub(`down_blocks.${i}`), backend, {
      inC: i === 0 ? boc[0]! : boc[i - 1]!, outC, numLayers: c.layers_per_block, groups, eps: VAE_EPS,
      addDownsample: i < boc.length - 1, downsamplePadding: 0,
    }));
    this.mid_block = midBlock(ws.sub('mid_block'), backend, c, top);
    this.conv_norm_out = new GroupNorm(ws.sub('conv_norm_out'), backend, { groups, channels: top, eps: VAE_EPS });
    // double_z: mean and logvar.
    this.conv_out = new Conv2d(ws.sub('conv_out'), backend, { inC: top, outC: 2 * c.latent_channels, k: 3, padding: 1 });
  }

  /** x [B, in_channels, H, W] -> moments [B, 2*latent_channels, H/2^(n-1), W/2^(n-1)]. */
  forward(x: Tensor, trace?: Trace): Tensor {
    let h = this.conv_in.forward(x);
    trace?.('conv_in', h);
    this.down_blocks.forEach((b, i) => { h = replace(h, b.forward(h, subTrace(trace, `down_blocks.${i}`))); });
    h = replace(h, this.mid_block.forward(h, undefined, subTrace(trace, 'mid_block')));
    h = replace(h, this.conv_norm_out.forwardSilu(h, trace && ((n) => trace('conv_norm_out', n))));
    h = replace(h, this.conv_out.forward(h));
    trace?.('conv_out', h);
    return h;
  }
}

export class Decoder extends Module {
  conv_in: Conv2d;
  mid_block: UNetMidBlock2D;
  up_blocks: UpDecoderBlock2D[];
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;

  constructor(ws: WeightSource, backend: Backend, c: AutoencoderKLConfig) {
    super();
    const rboc = [...c.block_out_channels].reverse(), groups = c.norm_num_groups;
    this.conv_in = new Conv2d(ws.sub('conv_in'), backend, { inC: c.latent_channels, outC: rboc[0]!, k: 3, padding: 1 });
    this.mid_block = midBlock(ws.sub('mid_block'), backend, c, rboc[0]!);
    this.up_blocks = rboc.map((outC, i) => new UpDecoderBlock2D(ws.sub(`up_blocks.${i}`), backend, {
      inC: i === 0 ? rboc[0]! : rboc[i - 1]!, outC, numLayers: c.layers_per_block + 1, groups, eps: VAE_EPS,
      addUpsample: i < rboc.length - 1,
    }));
    const bottom = rboc[rboc.length - 1]!;
    this.conv_norm_out = new GroupNorm(ws.sub('conv_norm_out'), backend, { groups, channels: bottom, eps: VAE_EPS });
    this.conv_out = new Conv2d(ws.sub('conv_out'), backend, { inC: bottom, outC: c.out_channels, k: 3, padding: 1 });
  }

  /** z [B, latent_channels, h, w] -> [B, out_channels, h*2^(n-1), w*2^(n-1)]. */
  forward(z: Tensor, trace?: Trace): Tensor {
    let h = this.conv_in.forward(z);
    trace?.('conv_in', h);
    h = replace(h, this.mid_block.forward(h, undefined, subTrace(trace, 'mid_block')));
    this.up_blocks.forEach((b, i) => { h = replace(h, b.forward(h, subTrace(trace, `up_blocks.${i}`))); });
    h = replace(h, this.conv_norm_out.forwardSilu(h, trace && ((n) => trace('conv_norm_out', n))));
    h = replace(h, this.conv_out.forward(h));
    trace?.('conv_out', h);
    return h;
  }
}

/** UNetMidBlock2D as the VAE builds it: attention_head_dim = channels (one head), no time embedding. */
function midBlock(ws: WeightSource, backend: Backend, c: AutoencoderKLConfig, channels: number): UNetMidBlock2D {
  if (!c.mid_block_add_attention) throw new Error('AutoencoderKL mid_block_add_attention=false is not supported');
  return new UNetMidBlock2D(ws, backend, { channels, groups: c.norm_num_groups, eps: VAE_EPS, attentionHeadDim: channels });
}

/** Dispose `old` and return `next`. */
function replace(old: Tensor, next: Tensor): Tensor {
  if (next !== old) old.dispose();
  return next;
}

/**
 * Older VAE checkpoints name the mid-block attention's projections query/key/value/proj_attn; diffusers
 * renames them to to_q/to_k/to_v/to_out.0 on load (modeling_utils _convert_deprecated_attention_blocks).
 * This view does the same: a new-style path that is absent while its old-style twin exists reads the twin.
 */
export class DeprecatedAttentionNames implements WeightSource {
  private static readonly OLD: Readonly<Record<string, string>> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };

  constructor(private readonly ws: WeightSource, private readonly prefix = '') {}

  private resolve(path: string): string {
    const full = this.prefix ? `${this.prefix}.${path}` : path;
    const m = /^(.*\bmid_block\.attentions\.\d+\.)(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(full);
    if (m && !this.ws.has(full)) {
      const alt = `${m[1]}${DeprecatedAttentionNames.OLD[m[2]!]}.${m[3]}`;
      if (this.ws.has(alt)) return alt;
    }
    return full;
  }

  get(path: string, shape: readonly number[], backend: Backend): Tensor { return this.ws.get(this.resolve(path), shape, backend); }
  has(path: string): boolean { return this.ws.has(this.resolve(path)); }
  skip(path: string, shape: readonly number[]): void { this.ws.skip?.(this.resolve(path), shape); }
  sub(prefix: string): WeightSource { return new DeprecatedAttentionNames(this.ws, this.prefix ? `${this.prefix}.${prefix}` : prefix); }
}

/** The encoder's posterior N(mean, std^2), all [B, latent_channels, h, w]. */
export interface DiagonalGaussian {
  mean: Tensor;
  /** Clamped to [-30, 20]. */
  logvar: Tensor;
  std: Tensor;
}

/**
 * diffusers DiagonalGaussianDistribution(moments): moments [B, 2L, h, w] = (mean, logvar) on channels;
 * logvar clamped to [-30, 20]; std = exp(0.5 logvar). `moments` stays the caller's.
 */
export function diagonalGaussian(moments: Tensor, latentChannels: number): DiagonalGaussian {
  const L = latentChannels;
  if (moments.rank !== 4 || moments.shape[1] !== 2 * L) {
    throw new Error(`diagonalGaussian: expected moments [B, ${2 * L}, h, w], found ${moments.toString()}`);
  }
  const meanView = moments.slice(1, 0, L), logvarView = moments.slice(1, L, 2 * L);
  const mean = meanView.contiguous();
  const lo = moments.backend.fromRaw(Float32Array.of(-30), [1]);
  const hi = moments.backend.fromRaw(Float32Array.of(20), [1]);
  const a = ops.binary('max', logvarView, lo);
  const logvar = ops.binary('min', a, hi);
  const half = ops.scale(logvar, 0.5);
  const std = ops.exp(half);
  [meanView, logvarView, lo, hi, a, half].forEach((t) => t.dispose());
  return { mean, logvar, std };
}

export class AutoencoderKL extends Module {
  encoder: Encoder;
  decoder: Decoder;
  quant_conv?: Conv2d;
  post_quant_conv?: Conv2d;
  readonly config: AutoencoderKLConfig;

  constructor(config: AutoencoderKLConfig | Record<string, unknown>, ws: WeightSource, readonly backend: Backend) {
    super();
    const c = this.config = parseVaeConfig(config as Record<string, unknown>);
    const L = c.latent_channels;
    ws = new DeprecatedAttentionNames(ws);
    this.encoder = new Encoder(ws.sub('encoder'), backend, c);
    this.decoder = new Decoder(ws.sub('decoder'), backend, c);
    if (c.use_quant_conv) this.quant_conv = new Conv2d(ws.sub('quant_conv'), backend, { inC: 2 * L, outC: 2 * L, k: 1 });
    if (c.use_post_quant_conv) this.post_quant_conv = new Conv2d(ws.sub('post_quant_conv'), backend, { inC: L, outC: L, k: 1 });
  }

  /** Load a diffusers `vae/` folder; strict (missing, mis-shaped or unused keys fail with the loader report). */
  static fromFolder(dir: string, backend: Backend, opts: WeightStoreOptions = {}): AutoencoderKL {
    const { raw, path } = readConfigJson(dir, 'AutoencoderKL.fromFolder');
    const config = parseVaeConfig(raw, path);
    return loadStrict(dir, opts, (store) => new AutoencoderKL(config, store, backend));
  }

  /** The same from a folder's files in memory ('config.json' + weights; model_files.ts). */
  static fromFiles(files: ModelFiles, backend: Backend, opts: WeightStoreOptions = {}): AutoencoderKL {
    const { raw, path } = configFromFiles(files, 'AutoencoderKL.fromFiles');
    const config = parseVaeConfig(raw, path);
    return loadStrictFromFiles(files, opts, 'AutoencoderKL.fromFiles', (store) => new AutoencoderKL(config, store, backend));
  }

  /** The latent scale the pipelines apply (latents = sample * scaling_factor; decode(latents / scaling_factor)). */
  get scalingFactor(): number { return this.config.scaling_factor; }

  /** image [B, in_channels, H, W] (in [-1, 1]) -> the posterior (vae.encode(x).latent_dist). */
  encode(image: Tensor, trace?: Trace): DiagonalGaussian {
    let moments = this.encoder.forward(image, subTrace(trace, 'encoder'));
    if (this.quant_conv) {
      moments = replace(moments, this.quant_conv.forward(moments));
      trace?.('quant_conv', moments);
    }
    const p = diagonalGaussian(moments, this.config.latent_channels);
    moments.dispose();
    return p;
  }

  /** latents [B, latent_channels, h, w] (already divided by scaling_factor) -> image [B, out_channels, H, W]. */
  decode(latents: Tensor, trace?: Trace): Tensor {
    let z = latents;
    if (this.post_quant_conv) {
      z = this.post_quant_conv.forward(latents);
      trace?.('post_quant_conv', z);
    }
    const out = this.decoder.forward(z, subTrace(trace, 'decoder'));
    if (z !== latents) z.dispose();
    return out;
  }

  /** A posterior sample mean + std * noise (noise ~ N(0, 1) of the mean's shape, drawn by the caller). */
  static sample(p: DiagonalGaussian, noise: Tensor): Tensor {
    const s = ops.mul(p.std, noise);
    const out = ops.add(p.mean, s);
    s.dispose();
    return out;
  }
}
