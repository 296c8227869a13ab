// op_timestep_embedding: diffusers get_timestep_embedding(timesteps, dim, flip_sin_to_cos,
// downscale_freq_shift, scale, max_period) (src/diffusers/models/embeddings.py) per variant.
// Each option is read from the variant, else case.json args, else config, else the `call` text
// (e.g. "flip_sin_to_cos=True"), else get_timestep_embedding's own default.
import { timestepEmbedding } from '@cnx/unet';
import type { GoldenCase, Produced, Runner } from '../golden_case.js';

interface TimestepVariant { name: string; dim: number; [key: string]: unknown }

/** get_timestep_embedding's keyword defaults. */
const DEFAULTS = { flip_sin_to_cos: false, downscale_freq_shift: 1, scale: 1, max_period: 10000 } as const;

function option<K extends keyof typeof DEFAULTS>(c: GoldenCase, v: TimestepVariant, key: K): (typeof DEFAULTS)[K] {
  for (const src of [v, c.args, c.config]) {
    if (src[key] !== undefined) return src[key] as (typeof DEFAULTS)[K];
  }
  const m = new RegExp(`${key}\\s*=\\s*(True|False|-?[0-9.eE+-]+)`).exec(c.json.call ?? '');
  if (m) return (m[1] === 'True' ? true : m[1] === 'False' ? false : Number(m[1])) as (typeof DEFAULTS)[K];
  return DEFAULTS[key];
}

export const opTimestepEmbedding: Runner = async (c, backend) => {
  const out: Produced = new Map();
  for (const v of c.args.variants as TimestepVariant[]) {
    if (!Number.isInteger(v.dim)) throw new Error(`${c.name}: variant '${v.name}' needs an integer 'dim', found ${JSON.stringify(v)}`);
    const t = c.input(`${v.name}.timesteps`, backend);
    const t1 = t.reshape([-1]);
    out.set(`${v.name}.y`, timestepEmbedding(t1, {
      dim: v.dim,
      flipSinToCos: Boolean(option(c, v, 'flip_sin_to_cos')),
      downscaleFreqShift: Number(option(c, v, 'downscale_freq_shift')),
      scale: Number(option(c, v, 'scale')),
      maxPeriod: Number(option(c, v, 'max_period')),
    }));
    [t, t1].forEach((x) => x.dispose());
  }
  return out;
};
