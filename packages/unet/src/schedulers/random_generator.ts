// The project's seeded random source for initial latents and stochastic scheduler steps.
//
// Algorithm (documented so that results can be reproduced elsewhere):
//  - uniform bits: xoshiro128** (Blackman & Vigna, https://prng.di.unimi.it/xoshiro128starstar.c),
//    its 128-bit state seeded from the 32-bit seed with splitmix32 (four successive outputs);
//  - uniforms: u = (x >>> 8) / 2^24 + 2^-25, so u lies in (0, 1) and log(u) is finite;
//  - normals: Box-Muller, both outputs used: z0 = r cos(2 pi u2), z1 = r sin(2 pi u2),
//    r = sqrt(-2 log u1), computed in float64 and stored as float32.
// Same seed -> same sequence on every platform (integer arithmetic via Math.imul). It does not
// reproduce torch.Generator; to match a PyTorch run exactly, pass its latents / noise explicitly.

/** Where a stochastic step or the initial latents get standard normal samples. */
export interface NoiseSource {
  /** `count` independent N(0, 1) samples. */
  normal(count: number): Float32Array;
}

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class RandomGenerator implements NoiseSource {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  /** Second Box-Muller output kept for the next call. */
  private spare: number | undefined;

  /** `seed`: an integer in [0, 2^32). */
  constructor(readonly seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new Error(`RandomGenerator: seed must be an integer in [0, 4294967295], found ${seed}`);
    }
    const sm = splitmix32(seed);
    this.s0 = sm(); this.s1 = sm(); this.s2 = sm(); this.s3 = sm();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the all-zero state is a fixed point
  }

  /** Next 32 uniform bits (xoshiro128**). */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in the open interval (0, 1). */
  uniform(): number {
    return (this.nextUint32() >>> 8) / 16777216 + 2 ** -25;
  }

  normal(count: number): Float32Array {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      if (this.spare !== undefined) {
        out[i] = this.spare;
        this.spare = undefined;
        continue;
      }
      const r = Math.sqrt(-2 * Math.log(this.uniform()));
      const a = 2 * Math.PI * this.uniform();
      out[i] = r * Math.cos(a);
      this.spare = r * Math.sin(a);
    }
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * A NoiseSource that replays recorded samples in order (noise saved from another run, e.g. the
 * `noise` tensor of a golden case): the n-th request gets the next n values. Running out is an error.
 */
export class RecordedNoise implements NoiseSource {
  private pos = 0;

  constructor(private readonly values: Float32Array, private readonly name = 'recorded noise') {}

  normal(count: number): Float32Array {
    if (this.pos + count > this.values.length) {
      throw new Error(`${this.name}: asked for ${count} more values after ${this.pos}, but only ${this.values.length} were recorded`);
    }
    const out = this.values.slice(this.pos, this.pos + count);
    this.pos += count;
    return out;
  }

  /** Values not yet handed out. */
  get remaining(): number { return this.values.length - this.pos; }
}
