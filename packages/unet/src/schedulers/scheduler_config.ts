// Reading a diffusers `scheduler_config.json` with `from_config` semantics (diffusers v0.29.2,
// configuration_utils.py ConfigMixin.from_config / extract_init_dict): every key a scheduler class
// knows is honoured, every other key (`_class_name`, `_diffusers_version`, keys of other scheduler
// classes such as PNDM's `skip_prk_steps` read by UniPC) is ignored, and a missing key takes that
// class's own default. A present key with a wrong type or value is an error naming the class, the
// key, what is allowed and what was found.

import { nodeFs, readRegularTextFile } from '@cnx/tensor';
import { checkJsonNesting } from '../model_files.js';

/** A parsed scheduler_config.json. */
export type SchedulerConfigJson = Readonly<Record<string, unknown>>;

/**
 * JSON.parse that also accepts the bare `Infinity`, `-Infinity` and `NaN` tokens Python's json module
 * writes (DPMSolverMultistepScheduler stores `"lambda_min_clipped": -Infinity`).
 */
const SENTINEL = '@@python-non-finite@@';

export function parsePythonJson(text: string, source: string): unknown {
  checkJsonNesting(text, source);
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (inString) {
      out += ch;
      if (ch === '\\') out += text[++i] ?? '';
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') { inString = true; out += ch; continue; }
    // Python tokens become sentinel strings that the reviver turns back into numbers.
    const rest = text.slice(i);
    const token = /^(-?Infinity|NaN)/.exec(rest)?.[1];
    if (token) { out += `"${SENTINEL}${token}"`; i += token.length - 1; continue; }
    out += ch;
  }
  try {
    return JSON.parse(out, (_k, v: unknown) =>
      typeof v === 'string' && v.startsWith(SENTINEL) ? Number(v.slice(SENTINEL.length)) : v);
  } catch (e) {
    throw new Error(`${source}: not valid JSON (${(e as Error).message})`);
  }
}

/** Parse the text of a scheduler_config.json (Python's non-finite tokens allowed); errors name `source`. */
export function parseSchedulerConfig(text: string, source = 'scheduler_config.json'): SchedulerConfigJson {
  const json = parsePythonJson(text, source);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`${source}: expected a JSON object of scheduler settings`);
  }
  return json as SchedulerConfigJson;
}

/**
 * Read and parse a scheduler_config.json file (Node; node:fs looked up lazily); errors name the file.
 * A regular file only (a FIFO never blocks), size-capped before reading (@cnx/tensor model_folder_files.ts).
 */
export function readSchedulerConfigFile(path: string): SchedulerConfigJson {
  nodeFs('readSchedulerConfigFile', 'parse the text with parseSchedulerConfig');
  let text: string;
  try {
    text = readRegularTextFile(path, 'readSchedulerConfigFile');
  } catch (e) {
    throw new Error(`cannot read scheduler config ${path}: ${(e as Error).message}`);
  }
  return parseSchedulerConfig(text, path);
}

function describe(v: unknown): string {
  const s = typeof v === 'string' ? `"${v}"` : typeof v === 'number' && !Number.isFinite(v) ? String(v) : JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s; // a 10^5-entry array stays one short line
}

/**
 * The most training timesteps a scheduler config may declare (diffusers' SD configs use 1000): the
 * tables (betas, alphas_cumprod, sigmas) are built with one entry per timestep when the scheduler is
 * made. 1e8 was accepted before and took 118 s and 1.66 GB.
 */
export const MAX_SCHEDULER_TIMESTEPS = 100_000;

export interface NumberRange {
  min?: number;
  max?: number;
  /** min itself is excluded. */
  exclusiveMin?: boolean;
  /** Admit -Infinity / Infinity. */
  infinite?: boolean;
}

function inRange(v: number, r: NumberRange): boolean {
  if (Number.isNaN(v) || (!r.infinite && !Number.isFinite(v))) return false;
  if (r.min !== undefined && (r.exclusiveMin ? v <= r.min : v < r.min)) return false;
  return r.max === undefined || v <= r.max;
}

function describeRange(what: string, r: NumberRange): string {
  const lo = r.min ?? (r.infinite ? '-inf' : '-inf (finite)');
  const hi = r.max ?? (r.infinite ? 'inf' : 'inf (finite)');
  if (r.min === undefined && r.max === undefined) return r.infinite ? `${what} (not NaN)` : `a finite number`;
  return `${what} in ${r.exclusiveMin ? '(' : '['}${lo}, ${hi}]`;
}

/** Typed access to one class's keys, with that class's defaults. */
export class ConfigReader {
  constructor(private readonly json: SchedulerConfigJson, private readonly className: string) {}

  private fail(key: string, expected: string, found: unknown): never {
    throw new Error(`${this.className} config: "${key}" must be ${expected}, found ${describe(found)}`);
  }

  private get(key: string): unknown {
    return Object.hasOwn(this.json, key) ? this.json[key] : undefined;
  }

  /**
   * A number in `range` (default: any finite number). `infinite` also admits -Infinity / Infinity
   * (Python's json writes them; DPMSolver's lambda_min_clipped defaults to -inf); NaN never passes.
   */
  number(key: string, def: number, range: NumberRange = {}): number {
    const v = this.get(key);
    if (v === undefined || v === null) return def;
    if (typeof v !== 'number' || !inRange(v, range)) this.fail(key, describeRange('a number', range), v);
    return v;
  }

  numberOrNull(key: string, range: NumberRange = {}): number | null {
    const v = this.get(key);
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !inRange(v, range)) this.fail(key, describeRange('a number', range) + ' or null', v);
    return v;
  }

  /** An integer in [min, max]. */
  int(key: string, def: number, min = -Infinity, max = Infinity): number {
    const v = this.number(key, def);
    if (!Number.isInteger(v) || v < min || v > max) {
      this.fail(key, `an integer${min > -Infinity ? ` >= ${min}` : ''}${max < Infinity ? ` and <= ${max}` : ''}`, v);
    }
    return v;
  }

  bool(key: string, def: boolean): boolean {
    const v = this.get(key);
    if (v === undefined || v === null) return def;
    if (typeof v !== 'boolean') this.fail(key, 'true or false', v);
    return v;
  }

  /** One of `allowed`; `aliases` maps accepted legacy values to the value diffusers registers instead. */
  oneOf<T extends string>(key: string, allowed: readonly T[], def: T, aliases: Readonly<Record<string, T>> = {}): T {
    const v = this.get(key);
    if (v === undefined || v === null) return def;
    if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
    if (typeof v === 'string' && aliases[v] !== undefined) return aliases[v]!;
    return this.fail(key, `one of ${[...allowed, ...Object.keys(aliases)].map((a) => `"${a}"`).join(', ')}`, v);
  }

  /** An array of numbers in `range` (finite by default) of at most `maxLength` entries, or null. */
  numberArrayOrNull(key: string, range: NumberRange = {}, maxLength = MAX_SCHEDULER_TIMESTEPS): number[] | null {
    const v = this.get(key);
    if (v === undefined || v === null) return null;
    if (!Array.isArray(v) || v.length > maxLength || v.some((x) => typeof x !== 'number' || !inRange(x, range))) {
      this.fail(key, `an array of at most ${maxLength} entries, each ${describeRange('a number', range)}, or null`, v);
    }
    return v as number[];
  }

  /** A key this implementation does not support in a non-default state: error, never silently ignored. */
  unsupported(key: string, isDefault: (v: unknown) => boolean, why: string): void {
    const v = this.get(key);
    if (v !== undefined && v !== null && !isDefault(v)) {
      throw new Error(`${this.className} config: "${key}" = ${describe(v)} is not supported (${why})`);
    }
  }
}
