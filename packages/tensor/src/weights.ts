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
import { formatShape, numel } from './shape.js';
import type { Tensor } from './tensor.js';

/** What a model is built from: parameters by path, and views of sub-trees. */
export interface WeightSource {
  /** The parameter at `path` (relative to this source's prefix) with exactly `shape`. */
  get(path: string, shape: readonly number[], backend: Backend): Tensor;
  has(path: string): boolean;
  /** A view whose paths are prefixed by `prefix.` (the module tree is the key tree). */
  sub(prefix: string): WeightSource;
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

  constructor(opts: RandomWeightsOptions = {}, private readonly prefix = '') {
    this.seed = opts.seed ?? 0;
    this.dtype = opts.dtype ?? 'f32';
  }

  get(path: string, shape: readonly number[], backend: Backend): Tensor {
    const full = joinWeightPath(this.prefix, path);
    checkShape('RandomWeights.get', full, shape);
    const data = new Float32Array(numel(shape));
    const init = randomInitFor(full, shape);
    if (init === 'ones') data.fill(1);
    else if (init === 'normal') {
      const fanIn = shape.length >= 2 ? numel(shape.slice(1)) : 1;
      fillNormal(data, 1 / Math.sqrt(Math.max(fanIn, 1)), (hashString(full) ^ Math.imul(this.seed, 0x9e3779b1)) >>> 0);
    }
    const raw = this.dtype === 'f32' ? data : fromFloat32(data, this.dtype);
    return backend.fromRaw(raw, shape, this.dtype);
  }

  /** Every path exists: a random model has whatever parameters its configuration asks for. */
  has(_path: string): boolean { return true; }

  sub(prefix: string): RandomWeights {
    return new RandomWeights({ seed: this.seed, dtype: this.dtype }, joinWeightPath(this.prefix, normalizePrefix(prefix)));
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
