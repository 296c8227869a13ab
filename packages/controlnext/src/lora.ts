// LoRA files for the UNet and the text encoder: reading, mapping their keys to the model's parameters,
// merging W' = W + scale * (alpha / rank) * up @ down into the weights, and unmerging.
//
// Formats (as diffusers v0.29.2 loads them, loaders/lora.py + lora_conversion_utils.py):
//  - kohya / sd-scripts: `lora_unet_<module path with '.' -> '_'>.lora_down.weight` [r, in(, kh, kw)],
//    `.lora_up.weight` [out, r(, 1, 1)], `.alpha` (0-dim; missing = r); `lora_te_` for the text encoder.
//    The underscored name is ambiguous ('down_blocks_0' vs a field named 'down_blocks_0'), so it is
//    resolved against the model's actual parameter names.
//  - diffusers / PEFT: `unet.<module path>.lora_A.weight` [r, in], `.lora_B.weight` [out, r] (and
//    `text_encoder.`); optional `.alpha`. Without alphas diffusers sets lora_alpha to the rank of each
//    model's first module by key name (get_peft_kwargs), so mixed-rank files scale other-rank modules by
//    first_rank / rank.
// Merge (diffusers fuse_lora(lora_scale)): W' = W + lora_scale * (alpha / r) * (up.flatten(1) @
// down.flatten(1)).reshape(W.shape); covers Linear, 1x1 and kxk conv LoRA. Biases are unchanged.
// Unmerge subtracts the same delta (as diffusers unfuse_lora), so W comes back up to float rounding.

import { ops, SafetensorsFile, type Backend, type Tensor } from '@cnx/tensor';

export type LoraFormat = 'kohya' | 'peft';
export type LoraTarget = 'unet' | 'text_encoder';

/** One low-rank update as stored in the file. */
export interface LoraLayer {
  target: LoraTarget;
  /** The module name as the file spells it (kohya: underscored; peft: dotted). */
  fileName: string;
  down: { shape: number[]; data: Float32Array };
  up: { shape: number[]; data: Float32Array };
  rank: number;
  /** alpha of the scaling alpha / rank. */
  alpha: number;
}

export interface LoraFile {
  source: string;
  format: LoraFormat;
  layers: LoraLayer[];
}

/** The parameters a LoRA can land in: each model's state-dict names and tensors. */
export interface LoraModel {
  namedParameters(): [string, Tensor][];
  getParameter(path: string): Tensor;
  setParameter(path: string, t: Tensor): void;
}

const KOHYA_PREFIX: Readonly<Record<string, LoraTarget>> = { lora_unet_: 'unet', lora_te_: 'text_encoder', lora_te1_: 'text_encoder' };
const PEFT_PREFIX: Readonly<Record<string, LoraTarget>> = { 'unet.': 'unet', 'text_encoder.': 'text_encoder' };

/**
 * Read and validate a LoRA .safetensors file (kohya or diffusers/PEFT); errors name the file and key.
 * A path is read in Node; in a browser pass SafetensorsFile.fromBytes(bytes, name).
 */
export function readLoraFile(pathOrFile: string | SafetensorsFile): LoraFile {
  const f = typeof pathOrFile === 'string' ? SafetensorsFile.open(pathOrFile) : pathOrFile;
  const path = f.source;
  try {
    const keys = f.keys();
    const isKohya = keys.some((k) => k.includes('.lora_down.'));
    const isPeft = keys.some((k) => k.includes('.lora_A.'));
    if (isKohya === isPeft) {
      throw new Error(`${path}: not a LoRA file this loader knows: expected kohya keys (lora_unet_*.lora_down.weight / .lora_up.weight / .alpha) ` +
        `or diffusers/PEFT keys (unet.*.lora_A.weight / .lora_B.weight); found ${keys.slice(0, 3).join(', ')}${keys.length > 3 ? ', ...' : ''}`);
    }
    const format: LoraFormat = isKohya ? 'kohya' : 'peft';
    const [downTag, upTag] = isKohya ? ['.lora_down.weight', '.lora_up.weight'] : ['.lora_A.weight', '.lora_B.weight'];
    const prefixes = isKohya ? KOHYA_PREFIX : PEFT_PREFIX;
    const used = new Set<string>();
    const layers: LoraLayer[] = [];
    // diffusers' PEFT rule without alphas uses the rank of each model's first module in the order
    // safetensors' safe_open lists keys (sorted by name).
    const firstRank = new Map<LoraTarget, number>();
    for (const key of [...keys].sort()) {
      if (!key.endsWith(downTag)) continue;
      const prefix = Object.keys(prefixes).find((p) => key.startsWith(p));
      const shape = f.infos.get(key)?.shape;
      if (prefix && shape && !firstRank.has(prefixes[prefix]!)) firstRank.set(prefixes[prefix]!, shape[0]!);
    }
    for (const key of keys) {
      if (!key.endsWith(downTag)) continue;
      const base = key.slice(0, -downTag.length);
      const prefix = Object.keys(prefixes).find((p) => base.startsWith(p));
      if (!prefix) throw new Error(`${path}: LoRA key '${key}' has no known model prefix (${Object.keys(prefixes).join(', ')})`);
      const upKey = base + upTag;
      if (!f.has(upKey)) throw new Error(`${path}: '${key}' has no matching '${upKey}'`);
      const down = f.readFloat32(key), up = f.readFloat32(upKey);
      for (const [k, t] of [[key, down], [upKey, up]] as const) {
        const bad = t.data.findIndex((x) => !Number.isFinite(x));
        if (bad >= 0) {
          const count = t.data.reduce((n, x) => n + (Number.isFinite(x) ? 0 : 1), 0);
          throw new Error(`${path}: '${k}' holds ${count} NaN or infinite values of ${t.data.length}, the first at index ${bad} (${t.data[bad]}); nothing was merged`);
        }
      }
      const rank = down.shape[0]!;
      if (up.shape[1] !== rank || (up.shape.length === 4 && (up.shape[2] !== 1 || up.shape[3] !== 1))) {
        throw new Error(`${path}: '${upKey}' is [${up.shape.join(', ')}], expected [out, ${rank}] or [out, ${rank}, 1, 1] to match '${key}' [${down.shape.join(', ')}]`);
      }
      const alphaKey = `${base}.alpha`;
      let alpha: number;
      if (f.has(alphaKey)) {
        const a = f.readFloat32(alphaKey).data;
        if (a.length !== 1 || !Number.isFinite(a[0])) throw new Error(`${path}: '${alphaKey}' must be one finite number`);
        alpha = a[0]!;
        used.add(alphaKey);
      } else {
        // kohya without alpha: alpha = rank (scale 1); PEFT without alpha: the first module's rank (diffusers).
        alpha = isKohya ? rank : firstRank.get(prefixes[prefix]!)!;
      }
      used.add(key).add(upKey);
      layers.push({ target: prefixes[prefix]!, fileName: base.slice(prefix.length), down, up, rank, alpha });
    }
    const extra = keys.filter((k) => !used.has(k));
    if (extra.length > 0) {
      throw new Error(`${path}: ${extra.length} key(s) are not part of a ${format} LoRA pair: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}`);
    }
    if (layers.length === 0) throw new Error(`${path}: no LoRA layers found`);
    return { source: path, format, layers };
  } finally {
    f.close();
  }
}

/**
 * Map each layer to the `<module>.weight` parameter it updates. kohya names are matched against the
 * model's module paths with '.' replaced by '_'; an underscored name that two modules share is an error.
 */
export function resolveLoraParameters(lora: LoraFile, target: LoraTarget, model: LoraModel): Map<LoraLayer, string> {
  const weights = model.namedParameters().map(([p]) => p).filter((p) => p.endsWith('.weight'));
  const byModule = new Set(weights.map((p) => p.slice(0, -'.weight'.length)));
  const byUnderscored = new Map<string, string[]>();
  for (const m of byModule) {
    const u = m.replace(/\./g, '_');
    byUnderscored.set(u, [...(byUnderscored.get(u) ?? []), m]);
  }
  const out = new Map<LoraLayer, string>();
  const missing: string[] = [];
  for (const layer of lora.layers.filter((l) => l.target === target)) {
    let module: string | undefined;
    if (lora.format === 'peft') module = byModule.has(layer.fileName) ? layer.fileName : undefined;
    else {
      const hits = byUnderscored.get(layer.fileName) ?? [];
      if (hits.length > 1) throw new Error(`${lora.source}: kohya name '${layer.fileName}' matches several ${target} modules: ${hits.join(', ')}`);
      module = hits[0];
    }
    if (!module) missing.push(layer.fileName);
    else out.set(layer, `${module}.weight`);
  }
  if (missing.length > 0) {
    throw new Error(`${lora.source}: ${missing.length} ${target} LoRA module(s) have no matching parameter in the model ` +
      `(a LoRA for another architecture?): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`);
  }
  return out;
}

/** A merged LoRA: what unmergeLora needs to take it out again. */
export interface MergedLora {
  source: string;
  scale: number;
  /** Parameter paths updated, per model. */
  merged: { target: LoraTarget; parameter: string }[];
  /** Layers of a model that was not given (e.g. text encoder layers when only a UNet is passed). */
  skipped: { target: LoraTarget; count: number }[];
  /** @internal */
  entries: { model: LoraModel; parameter: string; layer: LoraLayer }[];
}

/** delta = (up.flatten(1) @ down.flatten(1)).reshape(shape) on the model's backend. */
function loraDelta(layer: LoraLayer, shape: readonly number[], backend: Backend, where: string): Tensor {
  const out = shape[0]!;
  const inner = shape.slice(1).reduce((p, d) => p * d, 1);
  const downInner = layer.down.shape.slice(1).reduce((p, d) => p * d, 1);
  if (layer.up.shape[0] !== out || downInner !== inner) {
    throw new Error(`${where}: LoRA up [${layer.up.shape.join(', ')}] @ down [${layer.down.shape.join(', ')}] does not fit the weight [${shape.join(', ')}]`);
  }
  const up = backend.fromRaw(layer.up.data, [out, layer.rank]);
  const down = backend.fromRaw(layer.down.data, [layer.rank, inner]);
  const prod = ops.matmul(up, down);
  const delta = prod.reshape(shape);
  [up, down, prod].forEach((t) => t.dispose());
  return delta;
}

function applyDelta(model: LoraModel, parameter: string, layer: LoraLayer, weight: number, where: string): void {
  // A 16-bit weight (f16 weight storage) is merged in f32; setParameter rounds the result back.
  const w = ops.cast(model.getParameter(parameter), 'f32');
  const delta = loraDelta(layer, w.shape, w.backend, where);
  const next = ops.linearCombination([[w, 1], [delta, weight]]);
  [delta, w].forEach((t) => t.dispose());
  model.setParameter(parameter, next);
}

/**
 * Merge a LoRA into the given models with `scale` (diffusers lora_scale). Layers for a model not given
 * are reported in `skipped`, not silently dropped.
 */
export function mergeLora(lora: LoraFile, models: { unet?: LoraModel; textEncoder?: LoraModel }, scale: number): MergedLora {
  if (!Number.isFinite(scale)) throw new Error(`mergeLora: scale must be a finite number, found ${scale}`);
  const result: MergedLora = { source: lora.source, scale, merged: [], skipped: [], entries: [] };
  for (const [target, model] of [['unet', models.unet], ['text_encoder', models.textEncoder]] as const) {
    const count = lora.layers.filter((l) => l.target === target).length;
    if (count === 0) continue;
    if (!model) { result.skipped.push({ target, count }); continue; }
    const map = resolveLoraParameters(lora, target, model);
    for (const [layer, parameter] of map) {
      applyDelta(model, parameter, layer, scale * layer.alpha / layer.rank, `${lora.source} -> ${parameter}`);
      result.merged.push({ target, parameter });
      result.entries.push({ model, parameter, layer });
    }
  }
  return result;
}

/** Take a merged LoRA out again (W -= the same delta). */
export function unmergeLora(m: MergedLora): void {
  for (const { model, parameter, layer } of m.entries) {
    applyDelta(model, parameter, layer, -m.scale * layer.alpha / layer.rank, `${m.source} -> ${parameter}`);
  }
  m.entries = [];
  m.merged = [];
}
