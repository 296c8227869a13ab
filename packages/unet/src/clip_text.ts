// transformers CLIPTextModel (transformers/models/clip/modeling_clip.py, 4.57), SD's text encoder:
//   x = token_embedding[ids] + position_embedding[0..L-1]
//   per layer (pre-LN): x += out_proj(attn(layer_norm1(x))) with causal self-attention, q.k scaled by
//   head_dim^-0.5; x += fc2(act(fc1(layer_norm2(x)))) with act = config.hidden_act
//   last_hidden_state = final_layer_norm(x); pooled = last_hidden_state at the EOS position:
//   eos_token_id == 2 (the legacy configs, SD1.5's included) -> argmax(input_ids) (the first
//   <|endoftext|>, the highest id); otherwise the first position whose id == eos_token_id.
// CLIPTextModelWithProjection (SDXL's text_encoder_2) adds text_projection (no bias) on the pooled output.
// Keys: text_model.embeddings.{token,position}_embedding.weight, text_model.encoder.layers.i.{self_attn.
// {q,k,v,out}_proj, layer_norm1, mlp.fc1, mlp.fc2, layer_norm2}, text_model.final_layer_norm.

import { ops, subTrace, type Activation, type Backend, type Tensor, type Trace, type WeightSource, type WeightStoreOptions } from '@cnx/tensor';
import { loadParameter, Module } from './module.js';
import { ConfigChecker, MAX_CONFIG_CHANNELS, MAX_CONFIG_HEADS, showValue } from './config_values.js';
import { loadStrict, readConfigJson } from './load_model.js';
import { configFromFiles, loadStrictFromFiles, type ModelFiles } from './model_files.js';
import { LayerNorm } from './layers/layer_norm.js';
import { Linear } from './layers/linear.js';

export interface CLIPTextConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act: string;
  layer_norm_eps: number;
  eos_token_id: number;
  /** Width of text_projection (CLIPTextModelWithProjection only). */
  projection_dim?: number;
}

/** transformers ACT2FN names -> the kernel epilogue activation. */
export const CLIP_ACTIVATIONS: Readonly<Record<string, Activation>> = {
  quick_gelu: 'quick_gelu',
  gelu: 'gelu', // exact erf GELU (transformers GELUActivation)
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
};

/** What the shared encoder layers read (text and vision towers alike, clip_vision.ts). */
export type CLIPEncoderConfig = Pick<CLIPTextConfig, 'hidden_size' | 'intermediate_size' | 'num_hidden_layers' | 'num_attention_heads' | 'hidden_act' | 'layer_norm_eps'>;

/**
 * Read the keys this model uses from a transformers config.json (CLIPTextConfig, or a CLIPConfig's
 * text_config). transformers configs carry many generic keys (dropout, initializer_range, torch_dtype,
 * ...) that do not affect inference, so unknown keys are not errors; unsupported values of the keys read are.
 */
export function parseClipTextConfig(raw: Record<string, unknown>, source = 'config'): CLIPTextConfig {
  const c = (raw.text_config && typeof raw.text_config === 'object' && !Array.isArray(raw.text_config) ? raw.text_config : raw) as Record<string, unknown>;
  // Every number is bounded (config_values.ts): type, integer, range; errors name the file and key.
  const k = new ConfigChecker(source, 'CLIPTextConfig');
  const get = (key: string, dflt: unknown): unknown => (Object.hasOwn(c, key) && c[key] !== null ? c[key] : dflt);
  const int = (key: string, dflt: number, min: number, max: number): number => k.int(key, get(key, dflt), min, max);
  const act = get('hidden_act', 'quick_gelu') as string;
  if (typeof act !== 'string' || !Object.hasOwn(CLIP_ACTIVATIONS, act)) {
    throw new Error(`${source}: CLIPTextConfig hidden_act=${showValue(act)} is not supported (${Object.keys(CLIP_ACTIVATIONS).join(', ')})`);
  }
  if (c.model_type !== undefined && c.model_type !== 'clip_text_model') {
    throw new Error(`${source}: model_type=${showValue(c.model_type)}: expected "clip_text_model"`);
  }
  // transformers CLIPTextConfig defaults.
  const vocab = int('vocab_size', 49408, 1, 1_000_000);
  const cfg: CLIPTextConfig = {
    vocab_size: vocab, hidden_size: int('hidden_size', 512, 1, MAX_CONFIG_CHANNELS), intermediate_size: int('intermediate_size', 2048, 1, 4 * MAX_CONFIG_CHANNELS),
    num_hidden_layers: int('num_hidden_layers', 12, 1, 128), num_attention_heads: int('num_attention_heads', 8, 1, MAX_CONFIG_HEADS),
    max_position_embeddings: int('max_position_embeddings', 77, 1, 8192), hidden_act: act,
    layer_norm_eps: k.number('layer_norm_eps', get('layer_norm_eps', 1e-5), 0, 1, true),
    eos_token_id: int('eos_token_id', 2, 0, vocab - 1),
  };
  if (c.projection_dim !== undefined) cfg.projection_dim = int('projection_dim', 512, 1, MAX_CONFIG_CHANNELS);
  if (cfg.hidden_size % cfg.num_attention_heads !== 0) {
    throw new Error(`${source}: CLIPTextConfig hidden_size=${cfg.hidden_size} does not split into num_attention_heads=${cfg.num_attention_heads}`);
  }
  return cfg;
}

/** t as f32 (a 16-bit embedding table's rows are widened after the gather); consumes t. */
function widen(t: Tensor): Tensor {
  if (t.dtype === 'f32') return t;
  const f = ops.cast(t, 'f32');
  t.dispose();
  return f;
}

/** torch nn.Embedding: weight [num, dim]; rows are gathered with host-known indices. */
export class Embedding extends Module {
  weight: Tensor;

  constructor(ws: WeightSource, backend: Backend, opts: { num: number; dim: number }) {
    super();
    // A gather (concat of row views) copies any dtype, so the table may stay 16-bit (f16 weight storage).
    this.weight = loadParameter(ws, 'weight', [opts.num, opts.dim], backend, { half: true });
  }

  /** ids (host integers, each < num) -> f32 [ids.length, dim], by row views and one concat. */
  rows(ids: readonly number[]): Tensor {
    const n = this.weight.shape[0]!;
    const bad = ids.find((id) => !Number.isInteger(id) || id < 0 || id >= n);
    if (bad !== undefined) throw new Error(`Embedding: index ${bad} out of range [0, ${n})`);
    const views = ids.map((id) => this.weight.slice(0, id, id + 1));
    const out = ops.concat(views, 0);
    views.forEach((v) => v.dispose());
    return widen(out);
  }

  /** Rows start .. end - 1 as f32 [end - start, dim]. */
  range(start: number, end: number): Tensor {
    return widen(this.weight.slice(0, start, end));
  }
}

export class CLIPTextEmbeddings extends Module {
  token_embedding: Embedding;
  position_embedding: Embedding;

  constructor(ws: WeightSource, backend: Backend, c: CLIPTextConfig) {
    super();
    this.token_embedding = new Embedding(ws.sub('token_embedding'), backend, { num: c.vocab_size, dim: c.hidden_size });
    this.position_embedding = new Embedding(ws.sub('position_embedding'), backend, { num: c.max_position_embeddings, dim: c.hidden_size });
    // Older checkpoints store the int64 buffer position_ids (= arange(max_positions)); it carries nothing
    // the model does not know, but it is acknowledged (shape checked, not read: integers are never
    // weights) so strict loading does not report it as unused.
    if (ws.has('position_ids')) ws.skip?.('position_ids', [1, c.max_position_embeddings]);
  }

  /** ids [B][L] -> [B, L, D]. */
  forward(ids: readonly (readonly number[])[]): Tensor {
    const B = ids.length, L = ids[0]?.length ?? 0;
    const P = this.position_embedding.weight.shape[0]!;
    if (L === 0 || L > P || ids.some((r) => r.length !== L)) {
      throw new Error(`CLIPTextEmbeddings: expected ${B} rows of equal length 1..${P}, found lengths ${ids.map((r) => r.length).join(', ')}`);
    }
    const tok = this.token_embedding.rows(ids.flat());
    const tok3 = tok.reshape([B, L, -1]);
    const pos = this.position_embedding.range(0, L); // [L, D]: positions 0..L-1, broadcast over B
    const out = ops.add(tok3, pos);
    [tok, tok3, pos].forEach((t) => t.dispose());
    return out;
  }
}

export class CLIPAttention extends Module {
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  out_proj: Linear;

  /** `causal`: the text tower masks keys after the query; the vision tower (clip_vision.ts) does not. */
  constructor(ws: WeightSource, backend: Backend, readonly c: CLIPEncoderConfig, readonly causal = true) {
    super();
    const d = { inF: c.hidden_size, outF: c.hidden_size };
    // transformers registers k_proj, v_proj, q_proj, out_proj (order only matters for namedParameters).
    this.k_proj = new Linear(ws.sub('k_proj'), backend, d);
    this.v_proj = new Linear(ws.sub('v_proj'), backend, d);
    this.q_proj = new Linear(ws.sub('q_proj'), backend, d);
    this.out_proj = new Linear(ws.sub('out_proj'), backend, d);
  }

  /** x [B, L, D] -> [B, L, D]; causal: key j > query i masked. */
  forward(x: Tensor): Tensor {
    const q = this.q_proj.forward(x), k = this.k_proj.forward(x), v = this.v_proj.forward(x);
    const o = ops.attention(q, k, v, this.c.num_attention_heads, { causal: this.causal });
    [q, k, v].forEach((t) => t.dispose());
    const y = this.out_proj.forward(o);
    o.dispose();
    return y;
  }
}

export class CLIPMLP extends Module {
  fc1: Linear;
  fc2: Linear;
  private readonly act: Activation;

  constructor(ws: WeightSource, backend: Backend, c: CLIPEncoderConfig) {
    super();
    this.act = CLIP_ACTIVATIONS[c.hidden_act]!;
    this.fc1 = new Linear(ws.sub('fc1'), backend, { inF: c.hidden_size, outF: c.intermediate_size });
    this.fc2 = new Linear(ws.sub('fc2'), backend, { inF: c.intermediate_size, outF: c.hidden_size });
  }

  forward(x: Tensor): Tensor {
    const h = this.fc1.forward(x, this.act);
    const y = this.fc2.forward(h);
    h.dispose();
    return y;
  }
}

export class CLIPEncoderLayer extends Module {
  self_attn: CLIPAttention;
  layer_norm1: LayerNorm;
  mlp: CLIPMLP;
  layer_norm2: LayerNorm;

  constructor(ws: WeightSource, backend: Backend, c: CLIPEncoderConfig, causal = true) {
    super();
    const ln = { dim: c.hidden_size, eps: c.layer_norm_eps };
    this.self_attn = new CLIPAttention(ws.sub('self_attn'), backend, c, causal);
    this.layer_norm1 = new LayerNorm(ws.sub('layer_norm1'), backend, ln);
    this.mlp = new CLIPMLP(ws.sub('mlp'), backend, c);
    this.layer_norm2 = new LayerNorm(ws.sub('layer_norm2'), backend, ln);
  }

  forward(x: Tensor): Tensor {
    const n1 = this.layer_norm1.forward(x);
    const a = this.self_attn.forward(n1);
    const h = ops.add(x, a);
    [n1, a].forEach((t) => t.dispose());
    const n2 = this.layer_norm2.forward(h);
    const m = this.mlp.forward(n2);
    const out = ops.add(h, m);
    [n2, m, h].forEach((t) => t.dispose());
    return out;
  }
}

export class CLIPEncoder extends Module {
  layers: CLIPEncoderLayer[];

  constructor(ws: WeightSource, backend: Backend, c: CLIPEncoderConfig, causal = true) {
    super();
    this.layers = Array.from({ length: c.num_hidden_layers }, (_, i) => new CLIPEncoderLayer(ws.sub(`layers.${i}`), backend, c, causal));
  }
}

export class CLIPTextTransformer extends Module {
  embeddings: CLIPTextEmbeddings;
  encoder: CLIPEncoder;
  final_layer_norm: LayerNorm;

  constructor(ws: WeightSource, backend: Backend, c: CLIPTextConfig) {
    super();
    this.embeddings = new CLIPTextEmbeddings(ws.sub('embeddings'), backend, c);
    this.encoder = new CLIPEncoder(ws.sub('encoder'), backend, c);
    this.final_layer_norm = new LayerNorm(ws.sub('final_layer_norm'), backend, { dim: c.hidden_size, eps: c.layer_norm_eps });
  }
}

export interface CLIPTextForwardOptions {
  /** Keep every hidden state (transformers output_hidden_states): [embeddings, after layer 1, ...]. */
  outputHiddenStates?: boolean;
  /** Reports 'hidden_states.i' and the module outputs under their state-dict paths. */
  trace?: Trace;
}

export interface CLIPTextOutput {
  /** [B, L, D], after final_layer_norm. */
  lastHiddenState: Tensor;
  /** [B, D]: last_hidden_state at the EOS position of each row. */
  pooledOutput: Tensor;
  /** [B, projection_dim]: text_projection(pooled), CLIPTextModelWithProjection only. */
  textEmbeds?: Tensor;
  /** With outputHiddenStates: num_hidden_layers + 1 tensors [B, L, D]; the last is BEFORE final_layer_norm. */
  hiddenStates?: Tensor[];
}

export class CLIPTextModel extends Module {
  text_model: CLIPTextTransformer;
  text_projection?: Linear;
  readonly config: CLIPTextConfig;

  /**
   * `withProjection`: build CLIPTextModelWithProjection's text_projection (SDXL text_encoder_2); by
   * default it is built when the config's architectures say so.
   */
  constructor(config: CLIPTextConfig | Record<string, unknown>, ws: WeightSource, readonly backend: Backend, withProjection?: boolean) {
    super();
    const raw = config as Record<string, unknown>;
    const c = this.config = parseClipTextConfig(raw);
    this.text_model = new CLIPTextTransformer(ws.sub('text_model'), backend, c);
    const arch = Array.isArray(raw.architectures) ? raw.architectures : [];
    if (withProjection ?? arch.includes('CLIPTextModelWithProjection')) {
      if (c.projection_dim === undefined) throw new Error('CLIPTextModelWithProjection: config has no projection_dim');
      this.text_projection = new Linear(ws.sub('text_projection'), backend, { inF: c.hidden_size, outF: c.projection_dim, bias: false });
    }
  }

  /** Load a transformers `text_encoder/` folder (config.json + model.safetensors); strict. */
  static fromFolder(dir: string, backend: Backend, opts: WeightStoreOptions = {}): CLIPTextModel {
    const { raw, path } = readConfigJson(dir, 'CLIPTextModel.fromFolder');
    parseClipTextConfig(raw, path); // config errors name the file
    return loadStrict(dir, opts, (store) => new CLIPTextModel(raw, store, backend));
  }

  /** The same from a folder's files in memory ('config.json' + model.safetensors; model_files.ts). */
  static fromFiles(files: ModelFiles, backend: Backend, opts: WeightStoreOptions = {}): CLIPTextModel {
    const { raw, path } = configFromFiles(files, 'CLIPTextModel.fromFiles');
    parseClipTextConfig(raw, path);
    return loadStrictFromFiles(files, opts, 'CLIPTextModel.fromFiles', (store) => new CLIPTextModel(raw, store, backend));
  }

  /** The pooled position of one row of ids (transformers CLIPTextTransformer.forward, 4.57). */
  eosPosition(ids: readonly number[]): number {
    let best = 0;
    if (this.config.eos_token_id === 2) {
      // legacy: argmax(input_ids), the first maximum (the first <|endoftext|>, the highest id)
      ids.forEach((id, i) => { if (id > ids[best]!) best = i; });
      return best;
    }
    const i = ids.indexOf(this.config.eos_token_id);
    return i < 0 ? 0 : i; // argmax of an all-zero mask is 0
  }

  /** ids [B][L] (host token ids, L <= max_position_embeddings). */
  forward(ids: readonly (readonly number[])[], opts: CLIPTextForwardOptions = {}): CLIPTextOutput {
    const trace = opts.trace;
    const tm = this.text_model;
    let h = tm.embeddings.forward(ids);
    trace?.('text_model.embeddings', h);
    trace?.('hidden_states.0', h);
    const hidden: Tensor[] = [];
    tm.encoder.layers.forEach((layer, i) => {
      if (opts.outputHiddenStates) hidden.push(h.contiguous());
      const next = layer.forward(h);
      h.dispose();
      h = next;
      subTrace(trace, `text_model.encoder.layers.${i}`)?.('', h);
      trace?.(`hidden_states.${i + 1}`, h);
    });
    if (opts.outputHiddenStates) hidden.push(h.contiguous());
    const last = tm.final_layer_norm.forward(h);
    h.dispose();
    trace?.('text_model.final_layer_norm', last);
    // Gather last[b, eos_b, :] by views: [1, 1, D] each -> [B, 1, D] -> [B, D].
    const rows = ids.map((row, b) => {
      const s = last.slice(0, b, b + 1);
      const r = s.slice(1, this.eosPosition(row), this.eosPosition(row) + 1);
      s.dispose();
      return r;
    });
    const cat = ops.concat(rows, 0);
    rows.forEach((r) => r.dispose());
    const pooled = cat.reshape([ids.length, -1]);
    cat.dispose();
    const out: CLIPTextOutput = { lastHiddenState: last, pooledOutput: pooled };
    if (this.text_projection) out.textEmbeds = this.text_projection.forward(pooled);
    if (opts.outputHiddenStates) out.hiddenStates = hidden;
    return out;
  }
}
