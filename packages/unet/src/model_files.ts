// Models from bytes: a model folder as a map of file name -> contents, which is what a browser has after
// fetch() (or what a test builds in memory). Every model class has `fromFiles(files, backend)` next to
// its `fromFolder(dir, backend)`; the folder form reads files lazily from disk (load_model.ts), this one
// parses the same files from memory with the same strict checks.
//
//   const files = { 'config.json': await (await fetch(`${url}/config.json`)).text(),
//                   'diffusion_pytorch_model.safetensors': await (await fetch(...)).arrayBuffer() };
//   const unet = UNet2DConditionModel.fromFiles(files, backend);
//
// Weights file choice follows WeightStore.open: diffusers / transformers names (fp32 first unless
// prefer 'fp16'), a *.safetensors.index.json shard index with its shards, or the single .safetensors.

import { SafetensorsFile, WeightStore, type WeightStoreOptions } from '@cnx/tensor';
import type { Module } from './module.js';

/** A folder's files by path relative to the folder ('config.json', 'unet/config.json', ...). */
export type ModelFiles = Readonly<Record<string, ArrayBuffer | Uint8Array | string>>;

/** The files under `prefix/` with the prefix removed (a pipeline folder's 'unet/' sub-folder). */
export function subFiles(files: ModelFiles, prefix: string): ModelFiles {
  const p = prefix.endsWith('/') ? prefix : `${prefix}/`;
  const out: Record<string, ArrayBuffer | Uint8Array | string> = {};
  for (const [k, v] of Object.entries(files)) if (k.startsWith(p)) out[k.slice(p.length)] = v;
  return out;
}

function describeNames(files: ModelFiles): string {
  const names = Object.keys(files);
  return names.length > 0 ? names.join(', ') : 'no files';
}

/** The bytes of `name`; errors name the loader `who` and the files that are there. */
export function fileBytes(files: ModelFiles, name: string, who: string): Uint8Array {
  const v = Object.hasOwn(files, name) ? files[name] : undefined;
  if (v === undefined) throw new Error(`${who}: no ${name} among the files (${describeNames(files)})`);
  if (typeof v === 'string') return new TextEncoder().encode(v);
  return v instanceof Uint8Array ? v : new Uint8Array(v);
}

/** The text of `name` (UTF-8), or undefined when absent and `optional`. */
export function fileText(files: ModelFiles, name: string, who: string): string;
export function fileText(files: ModelFiles, name: string, who: string, optional: true): string | undefined;
export function fileText(files: ModelFiles, name: string, who: string, optional = false): string | undefined {
  if (optional && !Object.hasOwn(files, name)) return undefined;
  const v = files[name];
  return typeof v === 'string' ? v : new TextDecoder().decode(fileBytes(files, name, who));
}

/**
 * The deepest nesting of arrays and objects a config or tokenizer JSON file may have (real ones nest at
 * most 3 deep). Deeper text is refused before JSON.parse: walking a 100,000-deep value afterwards
 * (JSON.stringify for a message, a recursive check) would overflow the stack.
 */
export const MAX_CONFIG_JSON_DEPTH = 32;

/** Throws, naming `source`, when `text` nests arrays/objects deeper than `max` (strings are skipped). */
export function checkJsonNesting(text: string, source: string, max = MAX_CONFIG_JSON_DEPTH): void {
  let depth = 0, inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) throw new Error(`${source}: JSON nested deeper than ${max} levels (config files nest at most a few)`);
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
}

/** Parse a config.json text; errors name the source. */
export function parseConfigText(text: string, source: string): Record<string, unknown> {
  checkJsonNesting(text, source);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${source}: not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new Error(`${source}: expected a JSON object`);
  return json as Record<string, unknown>;
}

/** config.json of a file map, parsed (not validated), with its name for config errors. */
export function configFromFiles(files: ModelFiles, who: string): { raw: Record<string, unknown>; path: string } {
  return { raw: parseConfigText(fileText(files, 'config.json', who), 'config.json'), path: 'config.json' };
}

const FP32 = ['diffusion_pytorch_model.safetensors', 'model.safetensors', 'diffusion_pytorch_model.safetensors.index.json', 'model.safetensors.index.json'];
const FP16 = ['diffusion_pytorch_model.fp16.safetensors', 'model.fp16.safetensors', 'diffusion_pytorch_model.fp16.safetensors.index.json', 'model.fp16.safetensors.index.json'];

/** A WeightStore over the weights among `files`, chosen as WeightStore.open chooses in a folder. */
export function weightStoreFromFiles(files: ModelFiles, opts: WeightStoreOptions, who: string): WeightStore {
  const names = Object.keys(files);
  const order = (opts.prefer ?? 'fp32') === 'fp16' ? [...FP16, ...FP32] : [...FP32, ...FP16];
  let pick = order.find((c) => names.includes(c));
  if (!pick) {
    const single = names.filter((n) => n.endsWith('.safetensors'));
    if (single.length !== 1) {
      throw new Error(`${who}: no weights file it can choose: looked for ${order.join(', ')} or a single *.safetensors; found ${describeNames(files)}`);
    }
    pick = single[0]!;
  }
  if (!pick.endsWith('.index.json')) return WeightStore.fromFiles([SafetensorsFile.fromBytes(fileBytes(files, pick, who), pick)], opts);
  const index = parseConfigText(fileText(files, pick, who), pick);
  const map = index.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new Error(`${pick}: expected {"weight_map": {key: file}}, found no weight_map object`);
  const shards = [...new Set(Object.values(map as Record<string, unknown>).map(String))];
  return WeightStore.fromFiles(shards.map((s) => SafetensorsFile.fromBytes(fileBytes(files, s, who), s)), opts);
}

/**
 * Build a model from a weight store and check that every key was used (WeightStore.finish, the loader
 * report). A build or finish error disposes what was built; the store is closed either way.
 */
export function buildStrict<M extends Module>(store: WeightStore, build: (store: WeightStore) => M): M {
  try {
    const model = build(store);
    try {
      store.finish();
    } catch (e) {
      model.dispose();
      throw e;
    }
    return model;
  } finally {
    store.close();
  }
}

/** buildStrict over the weights among `files`. */
export function loadStrictFromFiles<M extends Module>(files: ModelFiles, opts: WeightStoreOptions, who: string, build: (store: WeightStore) => M): M {
  return buildStrict(weightStoreFromFiles(files, opts, who), build);
}
