// Typed, bounded reading of config.json values (issue 17: numbers in configs were not bounded, so
// layers_per_block: 1e5 ran for minutes at 3.4 GB, cross_attention_dim: 1e12 ended in a bare RangeError,
// norm_eps: "x" gave an all-black image, in_channels: "4" and sample_size: -1 were accepted). Every
// number a model config holds is checked here for its type, integrality, sign and a documented maximum,
// and every error names the file, the class and the key, with what was expected and what was found.
//
// The maxima are far above every released Stable Diffusion / SDXL / SD2 configuration (the largest
// width there is 1280 channels, the deepest block 10 transformer layers, the widest CLIP 1280) and low
// enough that a model built from them is bounded before its weights are read. They are listed in the
// README's reliability section; change them there too.

/** Widths: channels, attention and embedding dimensions. */
export const MAX_CONFIG_CHANNELS = 16384;
/** Down (and up) blocks of a UNet or VAE. */
export const MAX_CONFIG_BLOCKS = 8;
/** layers_per_block and transformer_layers_per_block entries. */
export const MAX_CONFIG_LAYERS = 32;
/** Attention heads per layer. */
export const MAX_CONFIG_HEADS = 1024;
/** Latent sample_size (pipelines default to sample_size x 8 pixels, capped separately). */
export const MAX_CONFIG_SAMPLE_SIZE = 4096;

/** A value as it appears in messages (short, whatever its size). */
export function showValue(v: unknown): string {
  const s = typeof v === 'number' && !Number.isFinite(v) ? String(v) : JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** Range text for messages: [min, max]. */
function range(min: number, max: number): string {
  return `[${min}, ${max}]`;
}

/** Checks values of one config file of one model class; `source` names the file. */
export class ConfigChecker {
  constructor(readonly source: string, readonly className: string) {}

  fail(key: string, value: unknown, expected: string): never {
    throw new Error(`${this.source}: ${this.className} ${key}=${showValue(value)}: expected ${expected}`);
  }

  /** An integer in [min, max]. */
  int(key: string, v: unknown, min: number, max: number): number {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.fail(key, v, `an integer in ${range(min, max)}`);
    return v;
  }

  /** A finite number in [min, max] (`exclusiveMin`: (min, max]). */
  number(key: string, v: unknown, min: number, max: number, exclusiveMin = false): number {
    if (typeof v !== 'number' || !Number.isFinite(v) || (exclusiveMin ? v <= min : v < min) || v > max) {
      this.fail(key, v, `a number in ${exclusiveMin ? '(' : '['}${min}, ${max}]`);
    }
    return v;
  }

  bool(key: string, v: unknown): boolean {
    if (typeof v !== 'boolean') this.fail(key, v, 'true or false');
    return v;
  }

  /** A list of `minLength`..`maxLength` items, each checked by `item` (its key is `key[i]`). */
  list<T>(key: string, v: unknown, minLength: number, maxLength: number, item: (key: string, x: unknown) => T): T[] {
    if (!Array.isArray(v)) this.fail(key, v, `a list of ${minLength} to ${maxLength} entries`);
    if (v.length < minLength || v.length > maxLength) this.fail(key, v, `a list of ${minLength} to ${maxLength} entries, found ${v.length}`);
    return v.map((x, i) => item(`${key}[${i}]`, x));
  }

  /** A list of exactly `n` integers in [min, max]. */
  intList(key: string, v: unknown, n: number, min: number, max: number): number[] {
    return this.list(key, v, n, n, (k, x) => this.int(k, x, min, max));
  }

  string(key: string, v: unknown): string {
    if (typeof v !== 'string') this.fail(key, v, 'a string');
    return v;
  }

  /** An integer in [min, max], or a list of `n` of them (one per block). */
  intOrList(key: string, v: unknown, n: number, min: number, max: number): number | number[] {
    if (Array.isArray(v)) {
      if (v.length !== n) this.fail(key, v, `an integer in ${range(min, max)} or a list of one per down block (${n})`);
      return v.map((x, i) => this.int(`${key}[${i}]`, x, min, max));
    }
    return this.int(key, v, min, max);
  }
}
