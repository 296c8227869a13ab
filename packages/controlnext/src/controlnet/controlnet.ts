// The diffusers ControlNetModel (diffusers/models/controlnet.py, v0.29.2): the benchmark's baseline and a
// feature of its own (diffusers ControlNet folders load as they are). Spec 13.4:
//
//   emb  = time_embedding(time_proj(t))                                  (as the UNet)
//   x    = conv_in(sample) + controlnet_cond_embedding(cond)             cond: RGB [0, 1] at 8x the latent
//   skips = [x]; x, s = down_blocks.i(x, emb, ctx); skips += s           (a copy of the UNet encoder)
//   x    = mid_block(x, emb, ctx)
//   down_i = controlnet_down_blocks.i(skips[i]) * scale_i;  mid = controlnet_mid_block(x) * scale_mid
//
// with scale_i = conditioning_scale (guess_mode: logspace(-1, 0, n + 1) * conditioning_scale). The result
// feeds UNet2DConditionModel.forward's downBlockAdditionalResiduals / midBlockAdditionalResidual.
// controlnet_cond_embedding: conv_in 3->c0, then per width step a 3x3 conv and a 3x3 stride-2 conv,
// SiLU after each, conv_out (zero-initialised in training) to block_out_channels[0].
// The blocks are @cnx/unet's, built from the folder's config.json with the UNet's config validation.

import { ops, subTrace, type Backend, type Tensor, type Trace, type WeightSource } from '@cnx/tensor';
import {
  Conv2d, Module, TimestepEmbedding, Timesteps, blockBuilder, downBlockTypes, loadStrict, midBlockTypes, parseUNetConfig,
  type UNetDownBlock, type UNetMidBlock,
  readConfigJson, configFromFiles, loadStrictFromFiles, type ModelFiles, ConfigChecker, MAX_CONFIG_BLOCKS, MAX_CONFIG_CHANNELS, showValue,
  type UNet2DConditionConfig,
} from '@cnx/unet';

/** ControlNet-only config.json keys; the rest is a UNet encoder config. */
export interface ControlNetExtraConfig {
  conditioning_channels: number;
  conditioning_embedding_out_channels: number[];
  controlnet_conditioning_channel_order: 'rgb' | 'bgr';
  global_pool_conditions: boolean;
}

export interface ControlNetConfig {
  encoder: UNet2DConditionConfig;
  extra: ControlNetExtraConfig;
}

const EXTRA_DEFAULTS: ControlNetExtraConfig = {
  conditioning_channels: 3,
  conditioning_embedding_out_channels: [16, 32, 96, 256],
  controlnet_conditioning_channel_order: 'rgb',
  global_pool_conditions: false,
};

/** Split and validate a ControlNetModel config.json (unknown or unsupported keys name the key). */
export function parseControlNetConfig(raw: Record<string, unknown>, source = 'config'): ControlNetConfig {
  const extra: Record<string, unknown> = { ...EXTRA_DEFAULTS };
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (Object.hasOwn(EXTRA_DEFAULTS, k)) extra[k] = v;
    else rest[k] = v;
  }
  const e = extra as unknown as ControlNetExtraConfig;
  if (e.controlnet_conditioning_channel_order !== 'rgb' && e.controlnet_conditioning_channel_order !== 'bgr') {
    throw new Error(`${source}: controlnet_conditioning_channel_order must be "rgb" or "bgr", found ${showValue(e.controlnet_conditioning_channel_order)}`);
  }
  const check = new ConfigChecker(source, 'ControlNetModel');
  check.int('conditioning_channels', e.conditioning_channels, 1, 64);
  check.list('conditioning_embedding_out_channels', e.conditioning_embedding_out_channels, 1, MAX_CONFIG_BLOCKS,
    (k, x) => check.int(k, x, 1, MAX_CONFIG_CHANNELS));
  check.bool('global_pool_conditions', e.global_pool_conditions);
  const downs = Array.isArray(rest.down_block_types) ? (rest.down_block_types as string[]) : undefined;
  if (rest.addition_embed_type !== undefined && rest.addition_embed_type !== null) {
    throw new Error(`${source}: ControlNetModel addition_embed_type=${showValue(rest.addition_embed_type)} (SDXL ControlNet) is not supported yet`);
  }
  // The encoder copy has no up path; the UNet validation wants one, so mirror the down blocks.
  if (downs) rest.up_block_types = [...downs].reverse().map((t) => (t === 'CrossAttnDownBlock2D' ? 'CrossAttnUpBlock2D' : 'UpBlock2D'));
  return { encoder: parseUNetConfig(rest, source), extra: e };
}

/** controlnet_cond_embedding (diffusers ControlNetConditioningEmbedding). */
export class ControlNetConditioningEmbedding extends Module {
  conv_in: Conv2d;
  blocks: Conv2d[];
  conv_out: Conv2d;

  constructor(ws: WeightSource, backend: Backend, opts: { conditioningChannels: number; channels: readonly number[]; outChannels: number }) {
    super();
    const ch = opts.channels;
    this.conv_in = new Conv2d(ws.sub('conv_in'), backend, { inC: opts.conditioningChannels, outC: ch[0]!, k: 3, padding: 1 });
    this.blocks = [];
    for (let i = 0; i < ch.length - 1; i++) {
      this.blocks.push(new Conv2d(ws.sub(`blocks.${2 * i}`), backend, { inC: ch[i]!, outC: ch[i]!, k: 3, padding: 1 }));
      this.blocks.push(new Conv2d(ws.sub(`blocks.${2 * i + 1}`), backend, { inC: ch[i]!, outC: ch[i + 1]!, k: 3, padding: 1, stride: 2 }));
    }
    this.conv_out = new Conv2d(ws.sub('conv_out'), backend, { inC: ch[ch.length - 1]!, outC: opts.outChannels, k: 3, padding: 1 });
  }

  /** cond [B, 3, H, W] -> [B, outChannels, H / 2^(n-1), W / 2^(n-1)]. */
  forward(cond: Tensor): Tensor {
    let h = this.conv_in.forward(cond, { activation: 'silu' });
    for (const b of this.blocks) {
      const n = b.forward(h, { activation: 'silu' });
      h.dispose();
      h = n;
    }
    const out = this.conv_out.forward(h);
    h.dispose();
    return out;
  }
}

export interface ControlNetForwardOptions {
  /** Multiplier of every residual (diffusers conditioning_scale, 1 by default). */
  conditioningScale?: number;
  /** diffusers guess_mode: residual i scaled by logspace(-1, 0, n + 1)[i] * conditioningScale. */
  guessMode?: boolean;
  trace?: Trace;
}

export interface ControlNetOutput {
  /** One per UNet skip, conv_in's first: [B, C_i, h_i, w_i]. */
  down: Tensor[];
  mid: Tensor;
}

export class ControlNetModel extends Module {
  conv_in: Conv2d;
  time_proj: Timesteps;
  time_embedding: TimestepEmbedding;
  controlnet_cond_embedding: ControlNetConditioningEmbedding;
  down_blocks: UNetDownBlock[];
  controlnet_down_blocks: Conv2d[];
  mid_block: UNetMidBlock;
  controlnet_mid_block: Conv2d;

  constructor(readonly config: ControlNetConfig, ws: WeightSource, readonly backend: Backend) {
    super();
    const c = config.encoder;
    const n = c.down_block_types.length;
    const boc = c.block_out_channels;
    const per = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : Array.from({ length: n }, () => v));
    const heads = per(c.num_attention_heads ?? c.attention_head_dim); // diffusers legacy naming: heads
    const layers = per(c.layers_per_block), ctxDim = per(c.cross_attention_dim), tl = per(c.transformer_layers_per_block);
    const groups = c.norm_num_groups, eps = c.norm_eps;
    const tembC = c.time_embedding_dim ?? boc[0]! * 4;

    this.conv_in = new Conv2d(ws.sub('conv_in'), backend, { inC: c.in_channels, outC: boc[0]!, k: c.conv_in_kernel, padding: (c.conv_in_kernel - 1) / 2 });
    this.time_proj = new Timesteps({ numChannels: boc[0]!, flipSinToCos: c.flip_sin_to_cos, downscaleFreqShift: c.freq_shift });
    this.time_embedding = new TimestepEmbedding(ws.sub('time_embedding'), backend, { inC: boc[0]!, timeEmbedDim: tembC });
    this.controlnet_cond_embedding = new ControlNetConditioningEmbedding(ws.sub('controlnet_cond_embedding'), backend, {
      conditioningChannels: config.extra.conditioning_channels, channels: config.extra.conditioning_embedding_out_channels, outChannels: boc[0]!,
    });
    const zero: Conv2d[] = [new Conv2d(ws.sub('controlnet_down_blocks.0'), backend, { inC: boc[0]!, outC: boc[0]!, k: 1 })];
    this.down_blocks = c.down_block_types.map((type, i) => {
      const last = i === n - 1;
      // The UNet's block table (diffusers get_down_block), so the ControlNet copies exactly its encoder.
      const block = blockBuilder(downBlockTypes, type, 'down_block_types')({
        ws: ws.sub(`down_blocks.${i}`), backend,
        inC: i === 0 ? boc[0]! : boc[i - 1]!, outC: boc[i]!, tembC, numLayers: layers[i]!, groups, eps,
        addDownsample: !last, downsamplePadding: c.downsample_padding,
        heads: heads[i]!, crossAttentionDim: ctxDim[i]!, transformerLayers: tl[i]!, useLinearProjection: c.use_linear_projection,
      });
      for (let j = 0; j < layers[i]! + (last ? 0 : 1); j++) {
        zero.push(new Conv2d(ws.sub(`controlnet_down_blocks.${zero.length}`), backend, { inC: boc[i]!, outC: boc[i]!, k: 1 }));
      }
      return block;
    });
    this.controlnet_down_blocks = zero;
    this.mid_block = blockBuilder(midBlockTypes, c.mid_block_type, 'mid_block_type')({
      ws: ws.sub('mid_block'), backend,
      channels: boc[n - 1]!, tembC, groups, eps, outputScaleFactor: c.mid_block_scale_factor,
      heads: heads[n - 1]!, crossAttentionDim: ctxDim[n - 1]!, transformerLayers: tl[n - 1]!, useLinearProjection: c.use_linear_projection,
    });
    this.controlnet_mid_block = new Conv2d(ws.sub('controlnet_mid_block'), backend, { inC: boc[n - 1]!, outC: boc[n - 1]!, k: 1 });
  }

  /** Load a diffusers ControlNet folder (config.json + diffusion_pytorch_model.safetensors), strictly. */
  static fromFolder(dir: string, backend: Backend): ControlNetModel {
    const { raw, path } = readConfigJson(dir, 'ControlNetModel.fromFolder');
    const config = parseControlNetConfig(raw, path);
    return loadStrict(dir, {}, (store) => new ControlNetModel(config, store, backend));
  }

  /** The same from the folder's files in memory (config.json + weights). */
  static fromFiles(files: ModelFiles, backend: Backend): ControlNetModel {
    const { raw, path } = configFromFiles(files, 'ControlNetModel.fromFiles');
    const config = parseControlNetConfig(raw, path);
    return loadStrictFromFiles(files, {}, 'ControlNetModel.fromFiles', (store) => new ControlNetModel(config, store, backend));
  }

  /**
   * sample [B, 4, h, w], timestep [B] or [1], encoderHiddenStates [B, L, D], cond [B, 3, 8h, 8w] in
   * [0, 1] -> the UNet residuals, already multiplied by the conditioning scale.
   */
  forward(sample: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, cond: Tensor, opts: ControlNetForwardOptions = {}): ControlNetOutput {
    const trace = opts.trace;
    const B = sample.shape[0]!;
    if (timestep.rank !== 1 || (timestep.shape[0] !== B && timestep.shape[0] !== 1)) {
      throw new Error(`ControlNetModel: expected timestep [${B}] (or [1]), found ${timestep.toString()}`);
    }
    const t = timestep.shape[0] === B ? timestep : timestep.expand([B]);
    const tp = this.time_proj.forward(t);
    if (t !== timestep) t.dispose();
    const emb = this.time_embedding.forward(tp);
    tp.dispose();
    trace?.('time_embedding', emb);

    let c = cond;
    if (this.config.extra.controlnet_conditioning_channel_order === 'bgr') {
      const chans = [2, 1, 0].map((i) => cond.slice(1, i, i + 1));
      c = ops.concat(chans, 1); // torch.flip(cond, dims=[1])
      chans.forEach((x) => x.dispose());
    }
    const x0 = this.conv_in.forward(sample);
    trace?.('conv_in', x0);
    const ce = this.controlnet_cond_embedding.forward(c);
    if (c !== cond) c.dispose();
    trace?.('controlnet_cond_embedding', ce);
    let x = ops.add(x0, ce);
    [x0, ce].forEach((v) => v.dispose());

    const skips: Tensor[] = [x];
    this.down_blocks.forEach((block, i) => {
      const out = block.forward(x, emb, encoderHiddenStates, subTrace(trace, `down_blocks.${i}`));
      if (x !== skips[0]) x.dispose();
      skips.push(...out.skips);
      x = out.hidden;
    });
    const h = this.mid_block.forward(x, emb, encoderHiddenStates, subTrace(trace, 'mid_block'));
    if (x !== skips[0]) x.dispose();
    emb.dispose();

    if (skips.length !== this.controlnet_down_blocks.length) {
      throw new Error(`ControlNetModel: ${skips.length} skips but ${this.controlnet_down_blocks.length} controlnet_down_blocks`);
    }
    const scale = opts.conditioningScale ?? 1;
    const n = skips.length;
    // guess_mode: torch.logspace(-1, 0, n + 1) * conditioning_scale, the last for the mid block.
    const scales = Array.from({ length: n + 1 }, (_, i) => (opts.guessMode ? 10 ** (-1 + i / n) : 1) * scale);
    const down = skips.map((s, i) => {
      const z = this.controlnet_down_blocks[i]!.forward(s);
      s.dispose();
      trace?.(`controlnet_down_blocks.${i}`, z);
      if (scales[i] === 1) return z;
      const y = ops.scale(z, scales[i]!);
      z.dispose();
      return y;
    });
    const zm = this.controlnet_mid_block.forward(h);
    h.dispose();
    trace?.('controlnet_mid_block', zm);
    let mid = zm;
    if (scales[n] !== 1) {
      mid = ops.scale(zm, scales[n]!);
      zm.dispose();
    }
    if (this.config.extra.global_pool_conditions) {
      const pool = (v: Tensor) => { const m = ops.mean(v, [2, 3], true); v.dispose(); return m; };
      return { down: down.map(pool), mid: pool(mid) };
    }
    return { down, mid };
  }
}
