// Analytic, hardware-independent cost model: FLOPs and parameter counts per module, derived from the
// model configurations by walking the forward pass with shapes only (no tensors are allocated).
//
// Conventions (so that every number in bench/README.md can be re-derived by hand):
//  - conv2d:     2 * N * O * Ho * Wo * (C/groups) * kh * kw        (+ N*O*Ho*Wo for the bias)
//  - linear:     2 * M * K * N                                      (+ M*N for the bias)
//  - attention:  2 * B * H * Lq * Lk * (D + Dv)   (Q K^T and P V), kind 'attention'
//                softmax: 5 * B * H * Lq * Lk (max, sub, exp, sum, div), kind 'softmax'
//  - group/layer norm: 8 FLOP per element (mean, variance, normalise, affine), kind 'norm'
//  - elementwise (SiLU = 4, GELU/GEGLU = 8, add = 1 per element, pooling = 1 per input element),
//    kind 'elementwise'.
// 'Matmul-class' FLOPs (conv + linear + attention) are what the spec's MAC estimates count (MACs =
// FLOPs / 2); norms, softmax and elementwise are reported separately ("other") because they are
// memory-bound and their exact count depends on how kernels are fused.
//
// Every entry carries a stage: 'step' (runs every denoising step) or 'prefix' (does not depend on the
// timestep, so the optimised ControlNeXt path computes it once per generation, not per step).
//
// Sources: diffusers v0.29.2 models/unets/unet_2d_condition.py, unet_2d_blocks.py, resnet.py,
// transformers/transformer_2d.py, attention.py, controlnet.py; ControlNeXt (commit ab4b3ac)
// ControlNeXt-SD1.5/models/controlnet.py and ControlNeXt-SD1.5-Training/models/controlnext.py; the layer
// tables in ../shared/reference/controlnext-spec.md sections 3.1, 4.1, 5.1, 13.1, 13.4.

export type CostKind = 'conv' | 'linear' | 'attention' | 'softmax' | 'norm' | 'elementwise';
export type Stage = 'step' | 'prefix';

export interface CostEntry {
  /** State-dict path of the module that does the work (e.g. `down_blocks.0.resnets.1.conv1`). */
  path: string;
  kind: CostKind;
  flops: number;
  /** The part of `flops` that adds the bias (conv, linear; 0 without a bias): the training cost model splits it off. */
  biasFlops?: number;
  params: number;
  stage: Stage;
}

/** [C, H, W] of one sample; the batch is held by the ledger. */
export type FeatureShape = readonly [number, number, number];

export const MATMUL_KINDS: readonly CostKind[] = ['conv', 'linear', 'attention'];

/** Accumulates cost entries while a model description is walked with shapes. */
export class CostLedger {
  readonly entries: CostEntry[] = [];
  /** Largest single tensor (activation or weight) seen, in f32 bytes: the binding-size check. */
  largestTensorBytes = 0;
  largestTensorName = '';
  private stage: Stage = 'step';

  constructor(readonly batch: number) {}

  /** Run `fn` with entries recorded under `stage`. */
  inStage<T>(stage: Stage, fn: () => T): T {
    const prev = this.stage;
    this.stage = stage;
    try { return fn(); } finally { this.stage = prev; }
  }

  private add(path: string, kind: CostKind, flops: number, params: number, biasFlops?: number): void {
    this.entries.push({ path, kind, flops, params, stage: this.stage, ...(biasFlops !== undefined ? { biasFlops } : {}) });
  }

  private tensor(name: string, elements: number): void {
    const bytes = elements * 4;
    if (bytes > this.largestTensorBytes) { this.largestTensorBytes = bytes; this.largestTensorName = name; }
  }

  /** Conv2d on [batch, C, H, W]; returns the output [O, Ho, Wo]. padding = [top, bottom, left, right]. */
  conv2d(path: string, x: FeatureShape, outChannels: number, kernel: number,
    opts: { stride?: number; padding?: number | readonly [number, number, number, number]; groups?: number; bias?: boolean } = {}): FeatureShape {
    const [C, H, W] = x;
    const s = opts.stride ?? 1, g = opts.groups ?? 1, bias = opts.bias ?? true;
    const p = opts.padding ?? 0;
    const [pt, pb, pl, pr] = typeof p === 'number' ? [p, p, p, p] : p;
    if (C % g !== 0 || outChannels % g !== 0) throw new Error(`${path}: ${C} -> ${outChannels} channels do not split into ${g} groups`);
    const Ho = Math.floor((H + pt + pb - kernel) / s) + 1, Wo = Math.floor((W + pl + pr - kernel) / s) + 1;
    if (Ho <= 0 || Wo <= 0) throw new Error(`${path}: kernel ${kernel} does not fit input ${H}x${W}`);
    const outEl = this.batch * outChannels * Ho * Wo;
    const weights = outChannels * (C / g) * kernel * kernel;
    this.add(path, 'conv', 2 * outEl * (C / g) * kernel * kernel + (bias ? outEl : 0), weights + (bias ? outChannels : 0), bias ? outEl : 0);
    this.tensor(`${path} output`, outEl);
    this.tensor(`${path}.weight`, weights);
    return [outChannels, Ho, Wo];
  }

  /** Linear over `rows` rows (all samples together): [rows, inF] -> [rows, outF]. */
  linear(path: string, rows: number, inF: number, outF: number, bias = true): void {
    this.add(path, 'linear', 2 * rows * inF * outF + (bias ? rows * outF : 0), inF * outF + (bias ? outF : 0), bias ? rows * outF : 0);
    this.tensor(`${path} output`, rows * outF);
    this.tensor(`${path}.weight`, inF * outF);
  }

  /** Multi-head attention over the batch; the score matrix is counted, never a stored tensor (tiled). */
  attention(path: string, heads: number, Lq: number, Lk: number, D: number, Dv: number): void {
    const scores = this.batch * heads * Lq * Lk;
    this.add(path, 'attention', 2 * scores * (D + Dv), 0);
    this.add(`${path}.softmax`, 'softmax', 5 * scores, 0);
  }

  /** GroupNorm or LayerNorm over `elements` values (whole batch), with `channels` affine pairs. */
  norm(path: string, elements: number, channels: number, affine = true): void {
    this.add(path, 'norm', 8 * elements, affine ? 2 * channels : 0);
  }

  elementwise(path: string, elements: number, flopsPerElement: number): void {
    this.add(path, 'elementwise', elements * flopsPerElement, 0);
  }

  /** Parameters that do no counted work (e.g. ControlNeXt's learned scalar `scale`). */
  params(path: string, count: number): void {
    this.add(path, 'elementwise', 0, count);
  }
}

const numelOf = (s: FeatureShape) => s[0] * s[1] * s[2];

// ---------------------------------------------------------------- shared diffusers blocks

/** diffusers ResnetBlock2D (resnet.py), time_embedding_norm 'default': §2.3 of the spec. */
export function resnetBlock(L: CostLedger, path: string, x: FeatureShape, out: number, tembDim: number, groups: number): FeatureShape {
  const n = L.batch;
  L.norm(`${path}.norm1`, n * numelOf(x), x[0]);
  L.elementwise(`${path}.nonlinearity`, n * numelOf(x), 4);
  const h = L.conv2d(`${path}.conv1`, x, out, 3, { padding: 1 });
  L.elementwise(`${path}.time_emb_silu`, n * tembDim, 4);
  L.linear(`${path}.time_emb_proj`, n, tembDim, out);
  L.elementwise(`${path}.temb_add`, n * numelOf(h), 1);
  L.norm(`${path}.norm2`, n * numelOf(h), out);
  L.elementwise(`${path}.nonlinearity`, n * numelOf(h), 4);
  const h2 = L.conv2d(`${path}.conv2`, h, out, 3, { padding: 1 });
  if (x[0] !== out) L.conv2d(`${path}.conv_shortcut`, x, out, 1);
  L.elementwise(`${path}.residual_add`, n * numelOf(h2), 1);
  void groups; // group count does not change the cost; kept in the signature to mirror the module
  return h2;
}

/** diffusers Transformer2DModel with BasicTransformerBlocks (self-attn, cross-attn, GEGLU FF). */
function transformer2d(L: CostLedger, path: string, x: FeatureShape, heads: number, layers: number, ctxDim: number, seqLen: number): void {
  const n = L.batch, [C, H, W] = x, T = H * W, rows = n * T;
  L.norm(`${path}.norm`, n * numelOf(x), C);
  // proj_in / proj_out: Conv1x1 (use_linear_projection false, SD1.5) or Linear: the same cost.
  L.conv2d(`${path}.proj_in`, x, C, 1);
  const D = C / heads;
  for (let b = 0; b < layers; b++) {
    const p = `${path}.transformer_blocks.${b}`;
    L.norm(`${p}.norm1`, rows * C, C);
    for (const m of ['to_q', 'to_k', 'to_v']) L.linear(`${p}.attn1.${m}`, rows, C, C, false);
    L.attention(`${p}.attn1`, heads, T, T, D, D);
    L.linear(`${p}.attn1.to_out.0`, rows, C, C);
    L.elementwise(`${p}.attn1_residual`, rows * C, 1);
    L.norm(`${p}.norm2`, rows * C, C);
    L.linear(`${p}.attn2.to_q`, rows, C, C, false);
    L.linear(`${p}.attn2.to_k`, n * seqLen, ctxDim, C, false);
    L.linear(`${p}.attn2.to_v`, n * seqLen, ctxDim, C, false);
    L.attention(`${p}.attn2`, heads, T, seqLen, D, D);
    L.linear(`${p}.attn2.to_out.0`, rows, C, C);
    L.elementwise(`${p}.attn2_residual`, rows * C, 1);
    L.norm(`${p}.norm3`, rows * C, C);
    L.linear(`${p}.ff.net.0.proj`, rows, C, 8 * C);
    L.elementwise(`${p}.ff.geglu`, rows * 4 * C, 8);
    L.linear(`${p}.ff.net.2`, rows, 4 * C, C);
    L.elementwise(`${p}.ff_residual`, rows * C, 1);
  }
  L.conv2d(`${path}.proj_out`, x, C, 1);
  L.elementwise(`${path}.residual`, n * numelOf(x), 1);
}

// ---------------------------------------------------------------- UNet2DConditionModel

/** The fields of a diffusers UNet2DConditionModel / ControlNetModel config.json that the cost depends on. */
export interface UNetLikeConfig {
  in_channels: number;
  out_channels?: number;
  block_out_channels: readonly number[];
  down_block_types: readonly string[];
  up_block_types?: readonly string[];
  layers_per_block: number;
  /** Legacy diffusers naming: this is the NUMBER of heads when num_attention_heads is absent. */
  attention_head_dim: number | readonly number[];
  num_attention_heads?: number | readonly number[] | null;
  cross_attention_dim: number;
  transformer_layers_per_block?: number | readonly number[];
  norm_num_groups?: number;
  downsample_padding?: number;
  /** SDXL: "text_time" adds add_embedding(concat(pooled text, add_time_proj(time ids))) to the time embedding. */
  addition_embed_type?: string | null;
  addition_time_embed_dim?: number | null;
  projection_class_embeddings_input_dim?: number | null;
  /** ControlNetModel only. */
  conditioning_embedding_out_channels?: readonly number[];
  conditioning_channels?: number;
}

function perBlock(v: number | readonly number[], i: number): number {
  return typeof v === 'number' ? v : v[i]!;
}

function headsOf(cfg: UNetLikeConfig, i: number): number {
  return perBlock(cfg.num_attention_heads ?? cfg.attention_head_dim, i);
}

function timeEmbedding(L: CostLedger, path: string, inDim: number, dim: number): void {
  L.elementwise(`time_proj`, L.batch * inDim, 4);
  L.linear(`${path}.linear_1`, L.batch, inDim, dim);
  L.elementwise(`${path}.act`, L.batch * dim, 4);
  L.linear(`${path}.linear_2`, L.batch, dim, dim);
}

/** conv_in + time embedding + down blocks + mid block: the part a ControlNet copies. Returns the skips and mid output. */
function unetEncoder(L: CostLedger, cfg: UNetLikeConfig, latent: readonly [number, number], seqLen: number,
  afterConvIn?: (x: FeatureShape) => void): { skips: FeatureShape[]; mid: FeatureShape } {
  const ch = cfg.block_out_channels, c0 = ch[0]!, tembDim = 4 * c0;
  const groups = cfg.norm_num_groups ?? 32;
  const tlayers = cfg.transformer_layers_per_block ?? 1;
  timeEmbedding(L, 'time_embedding', c0, tembDim);
  if (cfg.addition_embed_type === 'text_time') {
    // SDXL (unet_2d_condition.py get_aug_embed): add_time_proj on every time id (6 x 256 for SDXL), then
    // add_embedding (linear_1 [2816 -> 1280], SiLU, linear_2), added to the time embedding.
    const inDim = cfg.projection_class_embeddings_input_dim!;
    L.elementwise('add_time_proj', L.batch * 6 * (cfg.addition_time_embed_dim ?? 256), 4); // 6 micro-conditioning ids
    L.linear('add_embedding.linear_1', L.batch, inDim, tembDim);
    L.elementwise('add_embedding.act', L.batch * tembDim, 4);
    L.linear('add_embedding.linear_2', L.batch, tembDim, tembDim);
    L.elementwise('add_embedding.add', L.batch * tembDim, 1);
  }
  let x = L.conv2d('conv_in', [cfg.in_channels, latent[0], latent[1]], c0, 3, { padding: 1 });
  afterConvIn?.(x);
  const skips: FeatureShape[] = [x];
  cfg.down_block_types.forEach((type, i) => {
    const out = ch[i]!, last = i === ch.length - 1;
    for (let j = 0; j < cfg.layers_per_block; j++) {
      x = resnetBlock(L, `down_blocks.${i}.resnets.${j}`, x, out, tembDim, groups);
      if (type.startsWith('CrossAttn')) transformer2d(L, `down_blocks.${i}.attentions.${j}`, x, headsOf(cfg, i), perBlock(tlayers, i), cfg.cross_attention_dim, seqLen);
      skips.push(x);
    }
    if (!last) {
      x = L.conv2d(`down_blocks.${i}.downsamplers.0.conv`, x, out, 3, { stride: 2, padding: cfg.downsample_padding ?? 1 });
      skips.push(x);
    }
  });
  const cLast = ch[ch.length - 1]!, iLast = ch.length - 1;
  x = resnetBlock(L, 'mid_block.resnets.0', x, cLast, tembDim, groups);
  transformer2d(L, 'mid_block.attentions.0', x, headsOf(cfg, iLast), perBlock(tlayers, iLast), cfg.cross_attention_dim, seqLen);
  x = resnetBlock(L, 'mid_block.resnets.1', x, cLast, tembDim, groups);
  return { skips, mid: x };
}

export interface UNetCostOptions {
  batch: number;
  /** Latent height and width (pixels / 8). */
  latent: readonly [number, number];
  /** Text-encoder sequence length (77 for CLIP). */
  seqLen: number;
}

/** diffusers UNet2DConditionModel forward (unet_2d_condition.py), shape-only. */
export function unetCost(cfg: UNetLikeConfig, opts: UNetCostOptions): CostLedger {
  const L = new CostLedger(opts.batch);
  const { skips, mid } = unetEncoder(L, cfg, opts.latent, opts.seqLen);
  const ch = cfg.block_out_channels, tembDim = 4 * ch[0]!;
  const groups = cfg.norm_num_groups ?? 32;
  const tl = cfg.transformer_layers_per_block ?? 1;
  const rev = [...ch].reverse();
  const upTypes = cfg.up_block_types ?? [];
  let x = mid;
  upTypes.forEach((type, i) => {
    const out = rev[i]!, iBlock = ch.length - 1 - i;
    for (let j = 0; j < cfg.layers_per_block + 1; j++) {
      const skip = skips.pop();
      if (!skip) throw new Error(`unetCost: up_blocks.${i} ran out of skip connections (config mismatch)`);
      const cat: FeatureShape = [x[0] + skip[0], x[1], x[2]];
      L.elementwise(`up_blocks.${i}.concat.${j}`, L.batch * numelOf(cat), 0);
      x = resnetBlock(L, `up_blocks.${i}.resnets.${j}`, cat, out, tembDim, groups);
      if (type.startsWith('CrossAttn')) transformer2d(L, `up_blocks.${i}.attentions.${j}`, x, headsOf(cfg, iBlock), perBlock(tl, iBlock), cfg.cross_attention_dim, opts.seqLen);
    }
    if (i < upTypes.length - 1) {
      const next = skips[skips.length - 1];
      const up: FeatureShape = [x[0], next ? next[1] : 2 * x[1], next ? next[2] : 2 * x[2]];
      L.elementwise(`up_blocks.${i}.upsamplers.0.interpolate`, L.batch * numelOf(up), 0);
      x = L.conv2d(`up_blocks.${i}.upsamplers.0.conv`, up, out, 3, { padding: 1 });
    }
  });
  L.norm('conv_norm_out', L.batch * numelOf(x), x[0]);
  L.elementwise('conv_act', L.batch * numelOf(x), 4);
  L.conv2d('conv_out', x, cfg.out_channels ?? cfg.in_channels, 3, { padding: 1 });
  return L;
}

// ---------------------------------------------------------------- diffusers ControlNetModel

export interface ControlCostOptions {
  batch: number;
  /** Control image height and width in pixels. */
  image: readonly [number, number];
  /** Latent height and width of the UNet it drives. */
  latent: readonly [number, number];
  seqLen: number;
}

/**
 * diffusers ControlNetModel (controlnet.py): controlnet_cond_embedding at pixel resolution (added to the
 * conv_in output), a copy of the UNet encoder, zero 1x1 convs on the skips and the mid output, and the
 * residual adds in the UNet. The conditioning embedding does not depend on the timestep ('prefix').
 */
export function controlNetCost(cfg: UNetLikeConfig, opts: ControlCostOptions): CostLedger {
  const L = new CostLedger(opts.batch);
  const emb = cfg.conditioning_embedding_out_channels ?? [16, 32, 96, 256];
  const { skips, mid } = unetEncoder(L, cfg, opts.latent, opts.seqLen, (x) => {
    L.inStage('prefix', () => {
      const p = 'controlnet_cond_embedding';
      let c = L.conv2d(`${p}.conv_in`, [cfg.conditioning_channels ?? 3, opts.image[0], opts.image[1]], emb[0]!, 3, { padding: 1 });
      L.elementwise(`${p}.act`, L.batch * numelOf(c), 4);
      for (let i = 0; i < emb.length - 1; i++) {
        c = L.conv2d(`${p}.blocks.${2 * i}`, c, emb[i]!, 3, { padding: 1 });
        L.elementwise(`${p}.act`, L.batch * numelOf(c), 4);
        c = L.conv2d(`${p}.blocks.${2 * i + 1}`, c, emb[i + 1]!, 3, { padding: 1, stride: 2 });
        L.elementwise(`${p}.act`, L.batch * numelOf(c), 4);
      }
      c = L.conv2d(`${p}.conv_out`, c, x[0], 3, { padding: 1 });
      if (c[1] !== x[1] || c[2] !== x[2]) {
        throw new Error(`controlNetCost: conditioning embedding gives ${c[1]}x${c[2]} but the latent is ${x[1]}x${x[2]}: image must be 8x the latent`);
      }
    });
    L.elementwise('controlnet_cond_add', L.batch * numelOf(x), 1);
  });
  skips.forEach((s, i) => {
    L.conv2d(`controlnet_down_blocks.${i}`, s, s[0], 1);
    L.elementwise(`unet.down_residual_add.${i}`, L.batch * numelOf(s), 2); // * conditioning_scale, + skip
  });
  L.conv2d('controlnet_mid_block', mid, mid[0], 1);
  L.elementwise('unet.mid_residual_add', L.batch * numelOf(mid), 2);
  return L;
}

// ---------------------------------------------------------------- ControlNeXt modules

/** Cross normalisation + injection (Backend.crossNorm): pool, two stat passes, re-scale and add. */
function crossNormCost(L: CostLedger, path: string, control: FeatureShape, feature: FeatureShape, controlBatch: number): void {
  const fb = L.batch * numelOf(feature), cb = controlBatch * numelOf(control);
  L.elementwise(`${path}.pool`, cb, 1);
  L.elementwise(`${path}.stats`, fb * 3 + controlBatch * numelOf(feature) * 3, 1);
  L.elementwise(`${path}.normalise_add`, fb, 4);
}

/** Shape of the release module's layers (case.json `structure` of sd15_controlnext; spec §3.1). */
export interface ControlNeXtReleaseStructure {
  in_channels: readonly number[];
  out_channels: readonly number[];
  groups: readonly number[];
  time_proj_dim: number;
  time_embed_dim: number;
  mid_out_channels: number;
}

/** The released SD1.5 weights: 3 -> 128 -> 256 -> 256, mid 1280 (spec §3.1). */
export const SD15_RELEASE_STRUCTURE: ControlNeXtReleaseStructure = {
  in_channels: [3, 128, 256], out_channels: [128, 256, 256], groups: [1, 8, 8], time_proj_dim: 128, time_embed_dim: 256, mid_out_channels: 1280,
};

export interface ControlNeXtCostOptions {
  /** Batch the control module runs on (2 as the reference code runs it under CFG, 1 on our path). */
  batch: number;
  /** Batch of the denoiser feature it is injected into (2 under CFG). */
  featureBatch: number;
  image: readonly [number, number];
  /** [C, h, w] of the UNet feature at the injection point. */
  feature: FeatureShape;
  /** Ledger path of the injection (default: the light module's SD1.5-Training site, after down_blocks[0]). */
  injectionPath?: string;
}

/** Diffusers Downsample2D(use_conv, padding 1): a 3x3 stride-2 conv (key `<path>.conv`). */
function downsample(L: CostLedger, path: string, x: FeatureShape): FeatureShape {
  return L.conv2d(`${path}.conv`, x, x[0], 3, { stride: 2, padding: 1 });
}

/**
 * ResnetBlock2D whose input does not depend on the timestep: norm1 -> SiLU -> conv1 and the shortcut
 * only read x, so they are a timestep-independent prefix; everything from the temb add on is per step.
 */
function resnetWithPrefix(L: CostLedger, path: string, x: FeatureShape, out: number, tembDim: number, prefixable: boolean): FeatureShape {
  const n = L.batch;
  const pre = (): FeatureShape => {
    L.norm(`${path}.norm1`, n * numelOf(x), x[0]);
    L.elementwise(`${path}.nonlinearity`, n * numelOf(x), 4);
    const h = L.conv2d(`${path}.conv1`, x, out, 3, { padding: 1 });
    if (x[0] !== out) L.conv2d(`${path}.conv_shortcut`, x, out, 1);
    return h;
  };
  const h = prefixable ? L.inStage('prefix', pre) : pre();
  L.elementwise(`${path}.time_emb_silu`, n * tembDim, 4);
  L.linear(`${path}.time_emb_proj`, n, tembDim, out);
  L.elementwise(`${path}.temb_add`, n * numelOf(h), 1);
  L.norm(`${path}.norm2`, n * numelOf(h), out);
  L.elementwise(`${path}.nonlinearity`, n * numelOf(h), 4);
  const h2 = L.conv2d(`${path}.conv2`, h, out, 3, { padding: 1 });
  L.elementwise(`${path}.residual_add`, n * numelOf(h2), 1);
  return h2;
}

/** ControlNeXt-SD1.5 release `ControlNetModel` (ControlNeXt-SD1.5/models/controlnet.py), injected after the mid block. */
export function controlnextReleaseCost(s: ControlNeXtReleaseStructure, opts: ControlNeXtCostOptions): CostLedger {
  const L = new CostLedger(opts.batch);
  timeEmbedding(L, 'time_embedding', s.time_proj_dim, s.time_embed_dim);
  let x: FeatureShape = [s.in_channels[0]!, opts.image[0], opts.image[1]];
  s.out_channels.forEach((out, i) => {
    x = resnetWithPrefix(L, `down_res.${i}`, x, out, s.time_embed_dim, i === 0);
    x = downsample(L, `down_sample.${i}`, x);
  });
  const c = x[0];
  x = L.conv2d('mid_convs.0.0', x, c, 3, { padding: 1 });
  L.elementwise('mid_convs.0.1', L.batch * numelOf(x), 1);
  x = L.conv2d('mid_convs.0.2', x, c, 3, { padding: 1 });
  x = L.conv2d('mid_convs.1', x, s.mid_out_channels, 1);
  L.params('scale', 1);
  if (x[0] !== opts.feature[0]) throw new Error(`controlnextReleaseCost: module gives ${x[0]} channels, the injection point has ${opts.feature[0]}`);
  const F = new CostLedger(opts.featureBatch);
  crossNormCost(F, 'unet.mid_block_injection', x, opts.feature, opts.batch);
  L.entries.push(...F.entries);
  return L;
}

/** Constructor arguments of ControlNeXt-SD1.5-Training `ControlNeXtModel` (its config.json) + output width. */
export interface ControlNeXtTrainingStructure {
  time_embed_dim: number;
  in_channels: readonly number[];
  out_channels: readonly number[];
  groups: readonly number[];
  /** Output channels of mid_convs.1 (the UNet width after down_blocks[0]: 320 for SD1.5). */
  mid_out_channels: number;
}

/** The SD1.5-Training defaults (spec §4.1), output 320 channels. */
export const SD15_TRAINING_STRUCTURE: ControlNeXtTrainingStructure = {
  time_embed_dim: 256, in_channels: [128, 128], out_channels: [128, 256], groups: [4, 8], mid_out_channels: 320,
};

/**
 * ControlNeXt-SD1.5-Training `ControlNeXtModel` (models/controlnext.py; same layout as ControlNeXt-SDXL's
 * ControlNetModel, spec §5.1): a timestep-independent embedding stem at half resolution, ResNet/downsample
 * pairs, a residual mid conv pair, a 1x1 projection; injected after down_blocks[0] (SD1.5-Training) or
 * after conv_in (SDXL: opts.injectionPath; normalise-then-pool costs what pool-then-normalise does).
 */
export function controlnextTrainingCost(s: ControlNeXtTrainingStructure, opts: ControlNeXtCostOptions): CostLedger {
  const L = new CostLedger(opts.batch);
  timeEmbedding(L, 'time_embedding', 128, s.time_embed_dim);
  let x: FeatureShape = L.inStage('prefix', () => {
    let e = L.conv2d('embedding.0', [3, opts.image[0], opts.image[1]], 64, 3, { stride: 2, padding: 1 });
    L.norm('embedding.1', L.batch * numelOf(e), 64);
    L.elementwise('embedding.2', L.batch * numelOf(e), 1);
    e = L.conv2d('embedding.3', e, 64, 3, { padding: 1 });
    L.norm('embedding.4', L.batch * numelOf(e), 64);
    L.elementwise('embedding.5', L.batch * numelOf(e), 1);
    e = L.conv2d('embedding.6', e, s.in_channels[0]!, 3, { padding: 1 });
    L.norm('embedding.7', L.batch * numelOf(e), s.in_channels[0]!);
    L.elementwise('embedding.8', L.batch * numelOf(e), 1);
    return e;
  });
  s.out_channels.forEach((out, i) => {
    if (x[0] !== s.in_channels[i]) throw new Error(`controlnextTrainingCost: down_res.${i} expects ${s.in_channels[i]} channels, gets ${x[0]}`);
    x = resnetWithPrefix(L, `down_res.${i}`, x, out, s.time_embed_dim, i === 0);
    x = downsample(L, `down_sample.${i}`, x);
  });
  const c = x[0];
  const r = L.conv2d('mid_convs.0.0', x, c, 3, { padding: 1 });
  L.elementwise('mid_convs.0.1', L.batch * numelOf(r), 1);
  L.norm('mid_convs.0.2', L.batch * numelOf(r), c);
  L.conv2d('mid_convs.0.3', r, c, 3, { padding: 1 });
  L.norm('mid_convs.0.4', L.batch * numelOf(r), c);
  L.elementwise('mid_convs.0.residual', L.batch * numelOf(r), 1);
  x = L.conv2d('mid_convs.1', x, s.mid_out_channels, 1);
  if (x[0] !== opts.feature[0]) throw new Error(`controlnextTrainingCost: module gives ${x[0]} channels, the injection point has ${opts.feature[0]}`);
  const F = new CostLedger(opts.featureBatch);
  crossNormCost(F, opts.injectionPath ?? 'unet.down_blocks.0_injection', x, opts.feature, opts.batch);
  L.entries.push(...F.entries);
  return L;
}

// ---------------------------------------------------------------- summaries

export interface CostSummary {
  /** conv + linear + attention FLOPs. */
  matmulFlops: number;
  /** softmax + norm + elementwise FLOPs. */
  otherFlops: number;
  params: number;
}

/** Sum entries, optionally only those of one stage (parameters are counted once, whatever the stage). */
export function summarize(L: CostLedger, stage?: Stage): CostSummary {
  let matmulFlops = 0, otherFlops = 0, params = 0;
  for (const e of L.entries) {
    params += e.params;
    if (stage && e.stage !== stage) continue;
    if (MATMUL_KINDS.includes(e.kind)) matmulFlops += e.flops; else otherFlops += e.flops;
  }
  return { matmulFlops, otherFlops, params };
}

/** FLOPs grouped by the first `depth` segments of the path (e.g. `down_blocks.0`), in entry order. */
export function flopsByModule(L: CostLedger, depth: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of L.entries) {
    const key = e.path.split('.').slice(0, depth).join('.');
    out.set(key, (out.get(key) ?? 0) + e.flops);
  }
  return out;
}
