// Weight sources: where models get their parameters, by state-dict path (candle's VarBuilder idea).
// Model classes mirror the diffusers module tree, so a model fetches `down_blocks.0.resnets.1.conv1.weight`
// by walking `source.sub('down_blocks').sub('0')...` and asking for each parameter with its expected
// shape (DESIGN.md, "Models and weights"). Three implementations:
//  - WeightStore: real safetensors files (file, diffusers folder, sharded index), strict loading with
//    one report of every missing / mis-shaped / unused key;
//  - RandomWeights: seeded random parameters at any size (the benchmark builds SD1.5 with them);
//  - ShapeRecorder: counts parameters of a configuration without allocating them.

import type { Backend } from './backend.js';
import type { DType } from './dtype.js';
import { fromFloat32 } from './dtype.js';
import { SafetensorsFile, describeJsonValue, findNonFinite, type SafetensorsDType } from './safetensors.js';
import { readRegularTextFile, resolveInsideFolder } from './model_folder_files.js';
import { formatShape, numel } from './shape.js';
import { nodeFs, nodePath } from './node_fs.js';
import type { Tensor } from './tensor.js';

/** What a model is built from: parameters by path, and views of sub-trees. */
export interface WeightSource {
  /** The parameter at `path` (relative to this source's prefix) with exactly `shape`. */
  get(path: string, shape: readonly number[], backend: Backend): Tensor;
  has(path: string): boolean;
  /** A view whose paths are prefixed by `prefix.` (the module tree is the key tree). */
  sub(prefix: string): WeightSource;
  /**
   * Acknowledge a stored key that the model deliberately does not load (a buffer it recomputes, such as
   * the int64 `position_ids` of older CLIP checkpoints): its shape is checked and it counts as used,
   * but it is not read, and not refused for a non-float dtype as get() would. Optional: sources that
   * do not track used keys need not implement it (callers fall back to doing nothing).
   */
  skip?(path: string, shape: readonly number[]): void;
}

/** `a.b` + `c` -> `a.b.c`; an empty side contributes nothing. */
export function joinWeightPath(prefix: string, path: string): string {
  if (prefix === '') return path;
  if (path === '') return prefix;
  return `${prefix}.${path}`;
}

function normalizePrefix(prefix: string): string {
  return prefix.replace(/^\.+|\.+$/g, '');
}

function checkShape(what: string, path: string, shape: readonly number[]): void {
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new Error(`${what}: shape ${formatShape(shape)} requested for '${path}' is not a list of non-negative integers`);
  }
}

// ---------------------------------------------------------------------------------------------
// RandomWeights
// ---------------------------------------------------------------------------------------------

export interface RandomWeightsOptions {
  seed?: number;
  /** Storage dtype of the returned tensors (f32 by default; f16/bf16 for half-precision runs). */
  dtype?: DType;
  /**
   * 'pooled' (default): each tensor is a scaled window, at a path-dependent start, of one shared pool of
   * POOL_SIZE standard normals per seed: marginally N(0, 1/fan_in), but tensors larger than the pool
   * repeat with that period and different tensors share (shifted) values. A copy-and-scale per element,
   * so SD1.5's ~860M parameters take about a second; fine for latency, where values do not matter.
   * 'exact': fresh independent samples for every element (about 25 ns each: ~20 s for SD1.5).
   */
  sampling?: 'pooled' | 'exact';
}

/** Standard normals in RandomWeights' pool: 2^22 + 15 (a period that aligns with no power-of-two dim). */
export const RANDOM_WEIGHTS_POOL_SIZE = (1 << 22) + 15;

/** The pool of the last seed asked for (one at a time: 16 MB). */
let poolCache: { seed: number; pool: Float32Array } | undefined;

function normalPool(seed: number): Float32Array {
  if (poolCache?.seed !== seed) {
    const pool = new Float32Array(RANDOM_WEIGHTS_POOL_SIZE);
    fillNormal(pool, 1, (Math.imul(seed, 0x9e3779b1) ^ 0x5bd1e995) >>> 0);
    poolCache = { seed, pool };
  }
  return poolCache.pool;
}

/** out[i] = pool[(start + i) mod P] * std, in two straight loops per period (no modulo per element). */
function fillFromPool(out: Float32Array, pool: Float32Array, std: number, start: number): void {
  const p = pool.length;
  let i = 0, j = start % p;
  while (i < out.length) {
    const run = Math.min(out.length - i, p - j);
    for (let k = 0; k < run; k++) out[i + k] = pool[j + k]! * std;
    i += run;
    j = 0;
  }
}

/** How RandomWeights fills a parameter, from its path and shape. */
export type RandomInit = 'ones' | 'zeros' | 'normal';

/**
 * Norm affine weights are 1, biases 0, everything else N(0, 1/fan_in) with fan_in = prod(shape[1:])
 * (the scale of torch's default inits, so activations stay O(1) through a deep random network).
 * A rank-1 `.weight` is always a norm's (Linear/Conv/Embedding weights have rank >= 2), so the rank
 * decides, not the name.
 */
export function randomInitFor(path: string, shape: readonly number[]): RandomInit {
  const leaf = path.slice(path.lastIndexOf('.') + 1);
  if (leaf === 'bias' || leaf.endsWith('_bias')) return 'zeros';
  // norm1.weight, norm_out.weight, layer_norm.weight, ...: all rank 1, like every norm affine weight.
  if (leaf === 'weight' && shape.length <= 1) return 'ones';
  return 'normal';
}

/** FNV-1a of a string: makes each path's stream independent of the order in which paths are asked. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Fill `out` with N(0, std^2) samples: xorshift32 uniforms and the Marsaglia polar method (no trig,
 * one log + one sqrt per pair), all inlined in one loop for speed (SD1.5 has ~860M parameters).
 */
export function fillNormal(out: Float32Array, std: number, seed: number): void {
  let s = (seed >>> 0) || 0x9e3779b9;
  const n = out.length;
  let i = 0;
  while (i < n) {
    let u: number, v: number, r: number;
    do {
      s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
      u = (s >>> 0) * 4.656612873077393e-10 - 1; // 2^-31: uniform in [-1, 1)
      s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
      v = (s >>> 0) * 4.656612873077393e-10 - 1;
      r = u * u + v * v;
    } while (r >= 1 || r === 0);
    const m = std * Math.sqrt((-2 * Math.log(r)) / r);
    out[i++] = u * m;
    if (i < n) out[i++] = v * m;
  }
}

/** Seeded, deterministic random parameters: the same (seed, path, shape) always gives the same tensor. */
export class RandomWeights implements WeightSource {
  private readonly seed: number;
  private readonly dtype: DType;
  private readonly sampling: 'pooled' | 'exact';

  constructor(opts: RandomWeightsOptions = {}, private readonly prefix = '') {
    this.seed = opts.seed ?? 0;
    this.dtype = opts.dtype ?? 'f32';
    this.sampling = opts.sampling ?? 'pooled';
  }

  get(path: string, shape: readonly number[], backend: Backend): Tensor {
    const full = joinWeightPath(this.prefix, path);
    checkShape('RandomWeights.get', full, shape);
    const data = new Float32Array(numel(shape));
    const init = randomInitFor(full, shape);
    if (init === 'ones') data.fill(1);
    else if (init === 'normal') {
      const fanIn = shape.length >= 2 ? numel(shape.slice(1)) : 1;
      const std = 1 / Math.sqrt(Math.max(fanIn, 1));
      const h = hashString(full);
      if (this.sampling === 'exact') fillNormal(data, std, (h ^ Math.imul(this.seed, 0x9e3779b1)) >>> 0);
      else fillFromPool(data, normalPool(this.seed), std, h);
    }
    const raw = this.dtype === 'f32' ? data : fromFloat32(data, this.dtype);
    return backend.fromRaw(raw, shape, this.dtype);
  }

  /** Every path exists: a random model has whatever parameters its configuration asks for. */
  has(_path: string): boolean { return true; }

  sub(prefix: string): RandomWeights {
    return new RandomWeights({ seed: this.seed, dtype: this.dtype, sampling: this.sampling }, joinWeightPath(this.prefix, normalizePrefix(prefix)));
  }
}

// ---------------------------------------------------------------------------------------------
// ShapeRecorder
// ---------------------------------------------------------------------------------------------

/**
 * Records the path and shape of every parameter a model asks for, to count parameters of a
 * configuration without allocating them. get() returns a zero broadcast VIEW of the requested shape
 * (`zeros([1]).expand(shape)`: one element of storage, stride 0 everywhere). Limitation: such a view
 * has the right shape but is not contiguous, so a model that computes with it (rather than only
 * constructing itself) either pays a copy in contiguous() or, for ops that demand contiguous inputs,
 * must materialise it; use the recorder for construction and counting only.
 *
 * has() answers from `present` (default: false for every path), so optional weights that a model
 * detects with has() are not counted unless the caller says they exist.
 */
export class ShapeRecorder implements WeightSource {
  private readonly records: Map<string, readonly number[]>;

  constructor(
    private readonly present: (path: string) => boolean = () => false,
    private readonly prefix = '',
    records?: Map<string, readonly number[]>,
  ) {
    this.records = records ?? new Map();
  }

  get(path: string, shape: readonly number[], backend: Backend): Tensor {
    const full = joinWeightPath(this.prefix, path);
    checkShape('ShapeRecorder.get', full, shape);
    const prev = this.records.get(full);
    if (prev && formatShape(prev) !== formatShape(shape)) {
      throw new Error(`ShapeRecorder: '${full}' requested twice with different shapes: ${formatShape(prev)} then ${formatShape(shape)}`);
    }
    this.records.set(full, Object.freeze([...shape]));
    if (shape.length === 0) return backend.zeros([]);
    const one = backend.zeros(shape.map(() => 1));
    const view = one.expand(shape);
    one.dispose(); // the view holds the storage
    return view;
  }

  has(path: string): boolean { return this.present(joinWeightPath(this.prefix, path)); }

  sub(prefix: string): ShapeRecorder {
    return new ShapeRecorder(this.present, joinWeightPath(this.prefix, normalizePrefix(prefix)), this.records);
  }

  /** path -> shape of every parameter requested so far (shared by all sub() views). */
  shapes(): ReadonlyMap<string, readonly number[]> { return this.records; }

  /** Total number of parameters requested (each path counted once). */
  parameterCount(): number {
    let n = 0;
    for (const s of this.records.values()) n += numel(s);
    return n;
  }
}

// ---------------------------------------------------------------------------------------------
// WeightStore
// ---------------------------------------------------------------------------------------------

export interface WeightStoreOptions {
  /**
   * Which variant of a diffusers folder to load when both exist: `fp32` (default) prefers
   * `diffusion_pytorch_model.safetensors`, `fp16` prefers `diffusion_pytorch_model.fp16.safetensors`;
   * either falls back to the other.
   */
  prefer?: 'fp32' | 'fp16';
  /**
   * File names a folder's weights may also have, tried after the diffusers / transformers names and before
   * the single-file rule (ControlNeXt module folders: `controlnext.safetensors`, `controlnet.safetensors`;
   * a training checkpoint folder holds several .safetensors, of which the module is one).
   */
  fileNames?: readonly string[];
  /** Keep F16/BF16 tensors in their storage dtype instead of widening them to f32 on load. */
  keepDtype?: boolean;
  /** finish() does not fail on keys that were never requested. */
  allowUnused?: boolean;
}

export interface WeightReport {
  /** Requested but absent, each with the nearest existing key (edit distance), if the store has any. */
  missing: { path: string; shape: number[]; nearest?: string }[];
  /** Present with another shape. */
  misShaped: { path: string; expected: number[]; found: number[] }[];
  /** Present with a dtype that is not a float (parameters are F32, or F16/BF16 widened on load). */
  wrongDtype: { path: string; expected: string; found: SafetensorsDType; file: string }[];
  /** Present with NaN or infinite elements: how many of how many, and the first. */
  nonFinite: { path: string; count: number; total: number; firstIndex: number; firstValue: number; file: string }[];
  /** Present but never requested. */
  unused: string[];
}

/** Levenshtein distance, abandoned (returns Infinity) as soon as it must exceed `limit`. */
export function editDistance(a: string, b: string, limit = Infinity): number {
  if (Math.abs(a.length - b.length) > limit) return Infinity;
  let prev = new Array<number>(b.length + 1);
  let cur = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const sub = prev[j - 1]! + (a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1);
      const v = Math.min(sub, prev[j]! + 1, cur[j - 1]! + 1);
      cur[j] = v;
      if (v < rowMin) rowMin = v;
    }
    if (rowMin > limit) return Infinity;
    [prev, cur] = [cur, prev];
  }
  const d = prev[b.length]!;
  return d > limit ? Infinity : d;
}

function nearestKey(path: string, keys: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of keys) {
    const d = editDistance(path, k, bestD);
    if (d < bestD) { bestD = d; best = k; }
  }
  return best;
}

/** Stored dtypes a parameter may have (get() widens F16/BF16 to f32 unless keepDtype). */
const PARAMETER_DTYPES: ReadonlySet<SafetensorsDType> = new Set(['F32', 'F16', 'BF16']);
const PARAMETER_DTYPES_TEXT = 'F32, or F16/BF16 (widened to f32)';

/** Variant file names of a diffusers / transformers model folder, in the order `prefer` wants them. */
function folderCandidates(prefer: 'fp32' | 'fp16'): string[] {
  const fp32 = ['diffusion_pytorch_model.safetensors', 'model.safetensors',
    'diffusion_pytorch_model.safetensors.index.json', 'model.safetensors.index.json'];
  const fp16 = ['diffusion_pytorch_model.fp16.safetensors', 'model.fp16.safetensors',
    'diffusion_pytorch_model.fp16.safetensors.index.json', 'model.fp16.safetensors.index.json'];
  return prefer === 'fp16' ? [...fp16, ...fp32] : [...fp32, ...fp16];
}

/** Open the shards of a `*.safetensors.index.json` (transformers/diffusers sharded checkpoints). */
function openShardIndex(indexPath: string): SafetensorsFile[] {
  const { dirname } = nodePath('WeightStore.open');
  const text = readRegularTextFile(indexPath, 'WeightStore.open');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${indexPath}: not a readable JSON shard index (${(e as Error).message})`);
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new Error(`${indexPath}: expected {"weight_map": {key: file}}, found no weight_map object`);
  }
  const byFile = new Map<string, string[]>();
  for (const [key, file] of Object.entries(map as Record<string, unknown>)) {
    if (typeof file !== 'string') throw new Error(`${indexPath}: weight_map['${key}'] must be a file name, found ${describeJsonValue(file)}`);
    // Every shard lies inside the index's folder (a weight_map naming ../../.. loaded foreign files).
    resolveInsideFolder(dirname(indexPath), file, `${indexPath}: weight_map['${key}']`);
    let keys = byFile.get(file);
    if (!keys) byFile.set(file, (keys = []));
    keys.push(key);
  }
  const files: SafetensorsFile[] = [];
  try {
    for (const [file, keys] of byFile) {
      const f = SafetensorsFile.open(resolveInsideFolder(dirname(indexPath), file, `${indexPath}: weight_map`));
      files.push(f);
      const absent = keys.filter((k) => !f.has(k));
      if (absent.length > 0) {
        throw new Error(`${indexPath}: weight_map puts ${absent.length} key(s) in ${file} that it does not hold: ${absent.slice(0, 5).join(', ')}`);
      }
    }
  } catch (e) {
    for (const f of files) f.close();
    throw e;
  }
  return files;
}

interface StoreState {
  readonly source: string;
  readonly files: readonly SafetensorsFile[];
  /** key -> the file holding it. */
  readonly index: ReadonlyMap<string, SafetensorsFile>;
  readonly opts: WeightStoreOptions;
  readonly used: Set<string>;
  readonly missing: Map<string, number[]>;
  readonly misShaped: Map<string, { expected: number[]; found: number[] }>;
  readonly wrongDtype: Map<string, { found: SafetensorsDType; file: string }>;
  readonly nonFinite: Map<string, { count: number; total: number; firstIndex: number; firstValue: number; file: string }>;
  /** The folder's parsed config.json, when opened from a model folder that has one. */
  readonly config: Record<string, unknown> | undefined;
  /** Elements of the zero placeholders handed out for keys that could not be loaded (bounded: MAX_PLACEHOLDER_ELEMENTS). */
  readonly placeholders: { elements: number };
}

/**
 * The most elements of zero placeholders a store hands out (for missing, mis-shaped, wrong-dtype or
 * non-finite keys) before it stops and reports: 2^26 (256 MiB of f32). A config declaring widths its
 * weights file does not hold (block_out_channels of 16384 against an SD1.5 file) would otherwise
 * allocate zeros of every declared shape before the report (issue 17: unbounded memory from a config).
 */
export const MAX_PLACEHOLDER_ELEMENTS = 2 ** 26;

/**
 * Parameters from safetensors files, fetched by path with their expected shape (candle's VarBuilder).
 * Loading is strict but reports everything at once: a missing or mis-shaped key, a key whose dtype is
 * not a float (I64, I32, U8, BOOL; F16/BF16 are widened to f32, the one documented conversion) and a
 * key holding NaN or infinite values each return a zero tensor of the requested shape and are
 * recorded, so the whole model can be constructed; finish() then throws one error listing every
 * missing key (with its nearest existing key), every mis-shaped, wrong-dtype and non-finite key (with
 * its file) and every unused key. sub(prefix) views share that record; close() and finish() act on
 * the whole store.
 */
export class WeightStore implements WeightSource {
  private constructor(private readonly state: StoreState, private readonly prefix: string) {}

  /**
   * Open a `.safetensors` file, a `*.safetensors.index.json` shard index, or a model folder
   * (diffusers: config.json + diffusion_pytorch_model[.fp16].safetensors or a sharded index;
   * transformers: model.safetensors; or a folder with exactly one .safetensors file, as ControlNeXt's
   * releases are).
   */
  static open(pathOrFolder: string, opts: WeightStoreOptions = {}): WeightStore {
    const { existsSync, readdirSync, statSync } = nodeFs('WeightStore.open');
    const { join } = nodePath('WeightStore.open');
    if (!existsSync(pathOrFolder)) throw new Error(`WeightStore.open: ${pathOrFolder} does not exist`);
    let config: Record<string, unknown> | undefined;
    let target = pathOrFolder;
    if (statSync(pathOrFolder).isDirectory()) {
      const present = readdirSync(pathOrFolder);
      const candidates = [...folderCandidates(opts.prefer ?? 'fp32'), ...(opts.fileNames ?? [])];
      const pick = candidates.find((c) => present.includes(c))
        ?? (() => {
          const st = present.filter((p) => p.endsWith('.safetensors'));
          if (st.length === 1) return st[0]!;
          throw new Error(`WeightStore.open: ${pathOrFolder} holds no weights file it can choose: looked for ` +
            `${candidates.join(', ')} or a single *.safetensors; found ` +
            `${present.length > 0 ? present.join(', ') : 'an empty folder'}`);
        })();
      target = join(pathOrFolder, pick);
      const cfg = join(pathOrFolder, 'config.json');
      if (existsSync(cfg)) {
        const text = readRegularTextFile(cfg, 'WeightStore.open');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch (e) {
          throw new Error(`WeightStore.open: ${cfg} is not valid JSON (${(e as Error).message})`);
        }
        if (json === null || typeof json !== 'object' || Array.isArray(json)) {
          throw new Error(`WeightStore.open: ${cfg}: expected a JSON object, found ${Array.isArray(json) ? 'an array' : json === null ? 'null' : typeof json}`);
        }
        config = json as Record<string, unknown>;
      }
    }
    const files = target.endsWith('.index.json') ? openShardIndex(target) : [SafetensorsFile.open(target)];
    return WeightStore.build(target, files, opts, config);
  }

  /** A store over already-open files (keys must be unique across them). */
  static fromFiles(files: readonly SafetensorsFile[], opts: WeightStoreOptions = {}): WeightStore {
    return WeightStore.build(files.map((f) => f.source).join(' + ') || '<no files>', files, opts, undefined);
  }

  private static build(source: string, files: readonly SafetensorsFile[], opts: WeightStoreOptions, config: Record<string, unknown> | undefined): WeightStore {
    const index = new Map<string, SafetensorsFile>();
    for (const f of files) {
      for (const k of f.keys()) {
        const other = index.get(k);
        if (other) {
          for (const g of files) g.close();
          throw new Error(`WeightStore: key '${k}' is in both ${other.source} and ${f.source}`);
        }
        index.set(k, f);
      }
    }
    return new WeightStore({
      source, files, index, opts, config, used: new Set(), missing: new Map(), misShaped: new Map(),
      wrongDtype: new Map(), nonFinite: new Map(), placeholders: { elements: 0 },
    }, '');
  }

  /** Where the weights come from (file paths), for messages. */
  get source(): string { return this.state.source; }

  /** The model folder's config.json, parsed (undefined when not opened from a folder that has one). */
  get config(): Record<string, unknown> | undefined { return this.state.config; }

  get(path: string, shape: readonly number[], backend: Backend): Tensor {
    const full = joinWeightPath(this.prefix, path);
    checkShape(`WeightStore.get (${this.state.source})`, full, shape);
    const file = this.state.index.get(full);
    if (!file) {
      this.state.missing.set(full, [...shape]);
      return this.placeholder(shape, backend);
    }
    this.state.used.add(full);
    const info = file.info(full);
    if (formatShape(info.shape) !== formatShape(shape)) {
      this.state.misShaped.set(full, { expected: [...shape], found: [...info.shape] });
      return this.placeholder(shape, backend);
    }
    // Parameters are floats: F32 as is, F16/BF16 widened to f32 (or kept with keepDtype). An integer
    // or BOOL tensor where a parameter belongs is a wrong file, not something to convert.
    if (!PARAMETER_DTYPES.has(info.dtype)) {
      this.state.wrongDtype.set(full, { found: info.dtype, file: file.source });
      return this.placeholder(shape, backend);
    }
    const raw = file.readRaw(full);
    const bad = findNonFinite(raw);
    if (bad) {
      this.state.nonFinite.set(full, { ...bad, total: numel(info.shape), file: file.source });
      return this.placeholder(shape, backend);
    }
    return file.rawToTensor(full, raw, backend, this.state.opts.keepDtype ? undefined : 'f32');
  }

  /** A zero tensor standing in for a key that could not be loaded, within the store's placeholder budget. */
  private placeholder(shape: readonly number[], backend: Backend): Tensor {
    this.state.placeholders.elements += numel(shape);
    if (this.state.placeholders.elements > MAX_PLACEHOLDER_ELEMENTS) {
      throw new Error(this.describeProblems(true,
        `stopped early: zero placeholders for these keys would exceed ${MAX_PLACEHOLDER_ELEMENTS} elements; the model's config declares shapes its weights do not hold`));
    }
    return backend.zeros(shape);
  }

  has(path: string): boolean { return this.state.index.has(joinWeightPath(this.prefix, path)); }

  skip(path: string, shape: readonly number[]): void {
    const full = joinWeightPath(this.prefix, path);
    checkShape(`WeightStore.skip (${this.state.source})`, full, shape);
    const file = this.state.index.get(full);
    if (!file) return; // nothing to acknowledge (callers ask has() first)
    this.state.used.add(full);
    const found = file.info(full).shape;
    if (formatShape(found) !== formatShape(shape)) this.state.misShaped.set(full, { expected: [...shape], found: [...found] });
  }

  /** The stored shape at `path`, or undefined when absent (reading shapes never marks a key used). */
  shapeOf(path: string): number[] | undefined {
    const full = joinWeightPath(this.prefix, path);
    const f = this.state.index.get(full);
    return f ? [...f.info(full).shape] : undefined;
  }

  /** The stored dtype at `path`, or undefined when absent. */
  dtypeOf(path: string): SafetensorsDType | undefined {
    const full = joinWeightPath(this.prefix, path);
    return this.state.index.get(full)?.info(full).dtype;
  }

  /** Keys under this view's prefix, relative to it. */
  keys(): string[] {
    if (this.prefix === '') return [...this.state.index.keys()];
    const p = `${this.prefix}.`;
    return [...this.state.index.keys()].filter((k) => k.startsWith(p)).map((k) => k.slice(p.length));
  }

  sub(prefix: string): WeightStore {
    return new WeightStore(this.state, joinWeightPath(this.prefix, normalizePrefix(prefix)));
  }

  /** Everything wrong so far (for the whole store, whatever the view), without throwing. */
  report(nearestFor = Infinity): WeightReport {
    const keys = [...this.state.index.keys()];
    return {
      missing: [...this.state.missing].map(([path, shape], i) => {
        // The nearest key costs an edit distance per key: only for the entries a message shows.
        const nearest = i < nearestFor ? nearestKey(path, keys) : undefined;
        return nearest === undefined ? { path, shape } : { path, shape, nearest };
      }),
      misShaped: [...this.state.misShaped].map(([path, m]) => ({ path, ...m })),
      wrongDtype: [...this.state.wrongDtype].map(([path, m]) => ({ path, expected: PARAMETER_DTYPES_TEXT, ...m })),
      nonFinite: [...this.state.nonFinite].map(([path, m]) => ({ path, ...m })),
      unused: keys.filter((k) => !this.state.used.has(k)),
    };
  }

  /**
   * Throw one error listing every missing, mis-shaped and (unless allowUnused, here or in the open
   * options) unused key; return quietly when loading was exact.
   */
  finish(opts: { allowUnused?: boolean } = {}): void {
    const message = this.describeProblems(opts.allowUnused ?? this.state.opts.allowUnused ?? false);
    if (message !== undefined) throw new Error(message);
  }

  /** The loader report as one message (with `note` in its first line), or undefined when loading was exact. */
  private describeProblems(allowUnused: boolean, note?: string): string | undefined {
    const limit = 100;
    const r = this.report(limit);
    const unused = allowUnused ? [] : r.unused;
    if (r.missing.length === 0 && r.misShaped.length === 0 && r.wrongDtype.length === 0 && r.nonFinite.length === 0 && unused.length === 0 && note === undefined) return undefined;
    const section = <T>(title: string, items: T[], line: (t: T) => string): string[] =>
      items.length === 0 ? [] : [`${title} (${items.length}):`, ...items.slice(0, limit).map((t) => `  ${line(t)}`),
        ...(items.length > limit ? [`  ... and ${items.length - limit} more`] : [])];
    return [
      `WeightStore(${this.state.source}): the model and the weights disagree${note ? ` (${note})` : ''}`,
      ...section('missing keys', r.missing, (m) => `${m.path} ${formatShape(m.shape)}${m.nearest ? ` (nearest: ${m.nearest})` : ''}`),
      ...section('mis-shaped keys', r.misShaped, (m) => `${m.path}: expected ${formatShape(m.expected)}, found ${formatShape(m.found)}`),
      ...section('wrong-dtype keys', r.wrongDtype, (m) => `${m.path}: expected ${m.expected}, found ${m.found} (${m.file})`),
      ...section('keys with non-finite values', r.nonFinite, (m) =>
        `${m.path}: ${m.count} of ${m.total} elements are NaN or infinite, the first at index ${m.firstIndex} (${m.firstValue}) (${m.file})`),
      ...section('unused keys', unused, (k) => k),
    ].join('\n');
  }

  /** Close every file (of the whole store, whatever the view). */
  close(): void {
    for (const f of this.state.files) f.close();
  }
}
