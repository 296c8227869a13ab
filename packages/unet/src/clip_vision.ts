// transformers CLIPVisionModelWithProjection (transformers/models/clip/modeling_clip.py, 4.57), the image
// encoder of Stable Video Diffusion (ViT-H/14 in SVD-xt's image_encoder/):
//   patches = patch_embedding(pixel_values)        Conv2d(3 -> D, kernel P, stride P, no bias) [B, D, S/P, S/P]
//   x = [class_embedding; patches as tokens] + position_embedding[0 .. (S/P)^2]          [B, 1 + N, D]
//   x = pre_layrnorm(x)            (sic: transformers' key name)       hidden_states[0]
//   per layer (pre-LN, NON-causal): x += out_proj(attn(layer_norm1(x))); x += fc2(act(fc1(layer_norm2(x))))
//   last_hidden_state = x (no final norm); pooled = post_layernorm(x[:, 0]); image_embeds = visual_projection(pooled)
// Keys: vision_model.embeddings.{class_embedding, patch_embedding.weight, position_embedding.weight},
// vision_model.pre_layrnorm, vision_model.encoder.layers.i.* (the text tower's layer, clip_text.ts),
// vision_model.post_layernorm, visual_projection.weight. SVD's preprocessing is clip_image_processor.ts.

import { ops, type Backend, type Tensor, type Trace, type WeightSource, type WeightStoreOptions } from '@cnx/tensor';
import { loadParameter, Module } from './module.js';
import { loadStrict, readConfigJson } from './load_model.js';
import { CLIP_ACTIVATIONS, CLIPEncoder, Embedding, type CLIPEncoderConfig } from './clip_text.js';
import { ConfigChecker, MAX_CONFIG_CHANNELS, MAX_CONFIG_HEADS, showValue } from './config_values.js';
import { Conv2d } from './layers/conv2d.js';
import { LayerNorm } from './layers/layer_norm.js';
import { Linear } from './layers/linear.js';

export interface CLIPVisionConfig extends CLIPEncoderConfig {
  image_size: number;
  patch_size: number;
  num_channels: number;
  projection_dim: number;
}

/**
 * The keys this model reads from a transformers config.json (CLIPVisionConfig, or a CLIPConfig's
 * vision_config), with transformers' defaults. Generic keys (dropout, initializer_range, dtype, ...) do
 * not affect inference and are ignored; unsupported values of the keys read are errors naming the key.
 */
export function parseClipVisionConfig(raw: Record<string, unknown>, source = 'config'): CLIPVisionConfig {
  const c = (raw.vision_config && typeof raw.vision_config === 'object' && !Array.isArray(raw.vision_config) ? raw.vision_config : raw) as Record<string, unknown>;
  // Every number is bounded (config_values.ts): type, integer, range; errors name the file and key.
  const k = new ConfigChecker(source, 'CLIPVisionConfig');
  const get = (key: string, dflt: unknown): unknown => (Object.hasOwn(c, key) && c[key] !== null ? c[key] : dflt);
  const int = (key: string, dflt: unknown, min: number, max: number): number => k.int(key, get(key, dflt), min, max);
  if (c.model_type !== undefined && c.model_type !== 'clip_vision_model') {
    throw new Error(`${source}: model_type=${showValue(c.model_type)}: expected "clip_vision_model"`);
  }
  const act = get('hidden_act', 'quick_gelu') as string;
  if (typeof act !== 'string' || !Object.hasOwn(CLIP_ACTIVATIONS, act)) {
    throw new Error(`${source}: CLIPVisionConfig hidden_act=${showValue(act)} is not supported (${Object.keys(CLIP_ACTIVATIONS).join(', ')})`);
  }
  const cfg: CLIPVisionConfig = {
    hidden_size: int('hidden_size', 768, 1, MAX_CONFIG_CHANNELS), intermediate_size: int('intermediate_size', 3072, 1, 4 * MAX_CONFIG_CHANNELS),
    num_hidden_layers: int('num_hidden_layers', 12, 1, 128), num_attention_heads: int('num_attention_heads', 12, 1, MAX_CONFIG_HEADS),
    hidden_act: act, layer_norm_eps: k.number('layer_norm_eps', get('layer_norm_eps', 1e-5), 0, 1, true),
    image_size: int('image_size', 224, 1, 4096), patch_size: int('patch_size', 32, 1, 4096), num_channels: int('num_channels', 3, 1, 64),
    projection_dim: int('projection_dim', Object.hasOwn(raw, 'projection_dim') ? raw.projection_dim : 512, 1, MAX_CONFIG_CHANNELS),
  };
  if (cfg.hidden_size % cfg.num_attention_heads !== 0) {
    throw new Error(`${source}: CLIPVisionConfig hidden_size=${cfg.hidden_size} does not split into num_attention_heads=${cfg.num_attention_heads}`);
  }
  if (cfg.image_size % cfg.patch_size !== 0) {
    throw new Error(`${source}: CLIPVisionConfig image_size=${cfg.image_size} is not a multiple of patch_size=${cfg.patch_size}`);
  }
  return cfg;
}

export class CLIPVisionEmbeddings extends Module {
  class_embedding: Tensor;
  patch_embedding: Conv2d;
  position_embedding: Embedding;
  readonly numPatches: number;

  constructor(ws: WeightSource, backend: Backend, readonly c: CLIPVisionConfig) {
    super();
    const D = c.hidden_size;
    this.numPatches = (c.image_size / c.patch_size) ** 2;
    this.class_embedding = loadParameter(ws, 'class_embedding', [D], backend);
    this.patch_embedding = new Conv2d(ws.sub('patch_embedding'), backend, {
      inC: c.num_channels, outC: D, k: c.patch_size, stride: c.patch_size, bias: false,
    });
    this.position_embedding = new Embedding(ws.sub('position_embedding'), backend, { num: this.numPatches + 1, dim: D });
    // Older checkpoints store the position_ids buffer (= arange); fetched so strict loading uses it.
    if (ws.has('position_ids')) ws.get('position_ids', [1, this.numPatches + 1], backend).dispose();
  }

  /** pixel_values [B, C, S, S] -> [B, 1 + N, D]. */
  forward(pixelValues: Tensor): Tensor {
    const { image_size: S, num_channels: C, hidden_size: D } = this.c;
    const [B] = pixelValues.shape as [number];
    if (pixelValues.rank !== 4 || pixelValues.shape[1] !== C || pixelValues.shape[2] !== S || pixelValues.shape[3] !== S) {
      throw new Error(`CLIPVisionEmbeddings: expected pixel_values [B, ${C}, ${S}, ${S}], found ${pixelValues.toString()}`);
    }
    const p = this.patch_embedding.forward(pixelValues); // [B, D, g, g]
    const flat = p.reshape([B, D, this.numPatches]);
    const tokens = flat.transpose(1, 2); // [B, N, D]
    const cls = this.class_embedding.reshape([1, 1, D]);
    const clsB = cls.expand([B, 1, D]);
    const cat = ops.concat([clsB, tokens], 1);
    // range() widens a 16-bit table (f16 weight storage) to f32, as the text encoder's positions are
    const pos = this.position_embedding.range(0, this.numPatches + 1);
    const out = ops.add(cat, pos); // [1 + N, D] broadcast over B
    [p, flat, tokens, cls, clsB, cat, pos].forEach((t) => t.dispose());
    return out;
  }
}

export class CLIPVisionTransformer extends Module {
  embeddings: CLIPVisionEmbeddings;
  pre_layrnorm: LayerNorm;
  encoder: CLIPEncoder;
  post_layernorm: LayerNorm;

  constructor(ws: WeightSource, backend: Backend, c: CLIPVisionConfig) {
    super();
    const ln = { dim: c.hidden_size, eps: c.layer_norm_eps };
    this.embeddings = new CLIPVisionEmbeddings(ws.sub('embeddings'), backend, c);
    this.pre_layrnorm = new LayerNorm(ws.sub('pre_layrnorm'), backend, ln);
    this.encoder = new CLIPEncoder(ws.sub('encoder'), backend, c, false);
    this.post_layernorm = new LayerNorm(ws.sub('post_layernorm'), backend, ln);
  }
}

export interface CLIPVisionOutput {
  /** [B, projection_dim]: visual_projection(post_layernorm(last_hidden_state[:, 0])). */
  imageEmbeds: Tensor;
  /** [B, 1 + N, D], the last layer's output (before post_layernorm). */
  lastHiddenState: Tensor;
  /** [B, D]: post_layernorm of the class token. */
  pooledOutput: Tensor;
}

export class CLIPVisionModelWithProjection extends Module {
  vision_model: CLIPVisionTransformer;
  visual_projection: Linear;
  readonly config: CLIPVisionConfig;

  constructor(config: CLIPVisionConfig | Record<string, unknown>, ws: WeightSource, readonly backend: Backend) {
    super();
    const c = this.config = parseClipVisionConfig(config as Record<string, unknown>);
    this.vision_model = new CLIPVisionTransformer(ws.sub('vision_model'), backend, c);
    this.visual_projection = new Linear(ws.sub('visual_projection'), backend, { inF: c.hidden_size, outF: c.projection_dim, bias: false });
  }

  /** Load a transformers `image_encoder/` folder (config.json + model.safetensors); strict. */
  static fromFolder(dir: string, backend: Backend, opts: WeightStoreOptions = {}): CLIPVisionModelWithProjection {
    const { raw, path } = readConfigJson(dir, 'CLIPVisionModelWithProjection.fromFolder');
    const config = parseClipVisionConfig(raw, path);
    return loadStrict(dir, opts, (store) => new CLIPVisionModelWithProjection(config, store, backend));
  }

  /**
   * pixel_values [B, C, S, S] (already preprocessed: clip_image_processor.ts) -> image embeddings.
   * Reports 'hidden_states.i' (0 = after pre_layrnorm, i = after layer i) and module outputs by path.
   */
  forward(pixelValues: Tensor, opts: { trace?: Trace } = {}): CLIPVisionOutput {
    const { trace } = opts;
    const vm = this.vision_model;
    const e = vm.embeddings.forward(pixelValues);
    trace?.('vision_model.embeddings', e);
    let h = vm.pre_layrnorm.forward(e);
    e.dispose();
    trace?.('hidden_states.0', h);
    vm.encoder.layers.forEach((layer, i) => {
      const next = layer.forward(h);
      h.dispose();
      h = next;
      trace?.(`vision_model.encoder.layers.${i}`, h);
      trace?.(`hidden_states.${i + 1}`, h);
    });
    const B = h.shape[0]!, D = h.shape[2]!;
    const clsView = h.slice(1, 0, 1);
    const cls = clsView.reshape([B, D]);
    clsView.dispose();
    const pooled = vm.post_layernorm.forward(cls);
    cls.dispose();
    trace?.('vision_model.post_layernorm', pooled);
    const imageEmbeds = this.visual_projection.forward(pooled);
    trace?.('visual_projection', imageEmbeds);
    return { imageEmbeds, lastHiddenState: h, pooledOutput: pooled };
  }
}
