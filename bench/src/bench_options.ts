// Command-line options of `npm run bench` (node bench/dist/main.js). Defaults finish in a few minutes
// on a 2-core machine without a GPU: the fast CPU backend (wasm), 64x64 pixels, 1 warm-up + 2 timed
// steps (3 rounds x 6 configurations x ~1-2 s on two cores, plus building the random-weight models).

import { parseArgs } from 'node:util';
import { VARIANT_IDS, type VariantId } from './variants.js';

export interface BenchOptions {
  backend: 'cpu' | 'webgpu' | 'wasm';
  adapter?: string;
  /** Pixel height and width. */
  resolution: [number, number];
  /** Timed denoising steps per configuration. */
  steps: number;
  /** Untimed steps before timing (pipeline compilation, buffer pool, JIT). */
  warmup: number;
  /** Images per prompt: the UNet runs on 2 * batch under CFG. */
  batch: number;
  variants: VariantId[];
  /**
   * 'f32', or 'f16': weights stored in f16 (any adapter; halves weight memory) plus f16 compute (f16
   * operands, f32 accumulation) where the WebGPU device has shader-f16 (the record says which ran).
   */
  dtype: 'f32' | 'f16';
  /** Output folder for the JSON record, the SVG chart and latest.md. */
  out: string;
  seed: number;
  /** Run even where the pre-flight estimate says it will take very long. */
  force: boolean;
}

export const HELP = `Usage: npm run bench -- [options]    (or: node bench/dist/main.js [options])

One denoising step with classifier-free guidance (UNet batch 2 x --batch) of the SD1.5 architecture with
random weights, for: the base UNet; UNet + diffusers ControlNet; UNet + ControlNeXt (SD1.5 release module
and the light SD1.5-Training module), each as the reference code runs it and on our optimised path
(control at batch 1 per image, timestep-independent prefix cached). Prints a table, writes
<out>/<backend>-<res>.json, <out>/<backend>-<res>.svg and <out>/latest.md.

Options:
  --backend wasm|cpu|webgpu
                           backend (default wasm: the fast CPU backend, f32 WebAssembly SIMD on worker
                           threads; cpu: the float64 reference, ~15x slower)
  --adapter gpu|swiftshader|llvmpipe
                           WebGPU adapter (default: the first of gpu, swiftshader, llvmpipe that exists)
  --resolution N | HxW     pixels, multiples of 64 (default 64; 512 is SD1.5's native size)
  --steps N                timed steps per configuration (default 2)
  --warmup N               untimed warm-up steps (default 1)
  --batch N                images per prompt; the UNet runs on 2N samples (default 1)
  --variants a,b,...       subset of: ${VARIANT_IDS.join(', ')} (default: all; 'base' is always run)
  --dtype f32|f16          f16: weights stored in f16 (halves weight memory, any adapter) and, on a WebGPU
                           device with shader-f16, f16 compute with f32 accumulation (default f32)
  --out DIR                results folder (default bench/results)
  --seed N                 random weights / inputs seed (default 0)
  --force                  run even when the pre-flight estimate exceeds 15 minutes per configuration
  --help                   this text
`;

function positiveInt(name: string, v: string | undefined, fallback: number, min = 1): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name}: expected an integer >= ${min}, found '${v}'`);
  return n;
}

export function parseBenchOptions(argv: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      backend: { type: 'string' }, adapter: { type: 'string' }, resolution: { type: 'string' },
      steps: { type: 'string' }, warmup: { type: 'string' }, batch: { type: 'string' },
      variants: { type: 'string' }, dtype: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' },
      force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const backend = values.backend ?? 'wasm';
  if (backend !== 'cpu' && backend !== 'webgpu' && backend !== 'wasm') throw new Error(`--backend: expected cpu, wasm or webgpu, found '${backend}'`);
  const res = values.resolution ?? '64';
  const m = /^(\d+)(?:x(\d+))?$/.exec(res);
  if (!m) throw new Error(`--resolution: expected N or HxW in pixels, found '${res}'`);
  const resolution: [number, number] = [Number(m[1]), Number(m[2] ?? m[1])];
  if (resolution.some((d) => d <= 0 || d % 64 !== 0)) {
    throw new Error(`--resolution: SD1.5 needs multiples of 64 pixels (the latent is /8 and the UNet halves it 3 times), found ${resolution.join('x')}`);
  }
  const dtype = values.dtype ?? 'f32';
  if (dtype !== 'f32' && dtype !== 'f16') throw new Error(`--dtype: expected f32 or f16, found '${dtype}'`);
  let variants: VariantId[] = [...VARIANT_IDS];
  if (values.variants !== undefined) {
    const asked = values.variants.split(',').map((s) => s.trim()).filter((s) => s !== '');
    for (const a of asked) if (!(VARIANT_IDS as readonly string[]).includes(a)) throw new Error(`--variants: unknown '${a}'; expected some of ${VARIANT_IDS.join(', ')}`);
    variants = VARIANT_IDS.filter((id) => id === 'base' || asked.includes(id));
  }
  return {
    backend,
    ...(values.adapter !== undefined ? { adapter: values.adapter } : {}),
    resolution,
    steps: positiveInt('steps', values.steps, 2),
    warmup: positiveInt('warmup', values.warmup, 1, 0),
    batch: positiveInt('batch', values.batch, 1),
    variants,
    dtype,
    out: values.out ?? 'bench/results',
    seed: positiveInt('seed', values.seed, 0, 0),
    force: values.force ?? false,
  };
}
