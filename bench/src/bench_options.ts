// Command-line options of `npm run bench` (node bench/dist/main.js). Defaults finish in a few minutes
// on a 2-core machine without a GPU: the fast CPU backend (wasm), 64x64 pixels, 1 warm-up + 3 timed
// steps (4 rounds x 6 configurations x ~1-2 s on two cores, plus building the random-weight models).
// Bad usage throws BenchUsageError (main exits with 2, as the cnx CLI does); at least one warm-up round
// is enforced (the first round pays JIT compilation, pipeline compilation and buffer-pool growth).

import { parseArgs } from 'node:util';
import { BENCH_MODEL_NAMES, BENCH_MODELS, type BenchModelName } from './bench_model.js';

export interface BenchOptions {
  /** The architecture measured (bench_model.ts): SD1.5 (default) or SDXL. */
  model: BenchModelName;
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
  /** Configuration ids of the model (bench_model.ts variantIds). */
  variants: string[];
  /**
   * 'f32', or 'f16': weights stored in f16 (any adapter; halves weight memory) plus f16 compute (f16
   * operands, f32 accumulation) where the WebGPU device has shader-f16 (the record says which ran).
   */
  dtype: 'f32' | 'f16';
  /** Output folder for the JSON record, the SVG chart and latest.md; undefined: a new run folder under bench/runs/ (run_folder.ts). */
  out: string | undefined;
  /** Print every column (the default table is the narrow one; the JSON and latest.md always have all). */
  wide: boolean;
  seed: number;
  /** Run even where the pre-flight estimate says it will take very long. */
  force: boolean;
  /** Time a training step instead (train_bench.ts): forward + backward + AdamW of ControlNeXt light on SD1.5. */
  train: boolean;
}

export const HELP = `Usage: npm run bench -- [options]    (or: node bench/dist/main.js [options])

One denoising step with classifier-free guidance (UNet batch 2 x --batch) of the SD1.5 architecture with
random weights, for: the base UNet; UNet + diffusers ControlNet; UNet + ControlNeXt (SD1.5 release module
and the light SD1.5-Training module), each as the reference code runs it and on our optimised path
(control at batch 1 per image, timestep-independent prefix cached). Prints a table, writes
<out>/<backend>-<res>.json, <out>/<backend>-<res>.svg and <out>/latest.md, where <out> is a new run folder
under bench/runs/ (git-ignored) unless --out names one: --out bench/results updates the committed results.

Options:
  --model sd15|sdxl        architecture (default sd15). sdxl: the SDXL UNet with its text_time conditioning,
                           alone and with ControlNeXt-SDXL (${BENCH_MODELS.sdxl.variantIds.join(', ')}); pixels in
                           multiples of 32 (1024 is SDXL's size); results go to <out>/sdxl-<backend>-<res>.json
  --backend wasm|cpu|webgpu
                           backend (default wasm: the fast CPU backend, f32 WebAssembly SIMD on worker
                           threads; cpu: the float64 reference, ~15x slower)
  --adapter gpu|swiftshader|lavapipe|llvmpipe
                           WebGPU adapter (default: the first of gpu, swiftshader, lavapipe, llvmpipe that exists)
  --resolution N | HxW     pixels, multiples of 64 (default 64; 512 is SD1.5's native size)
  --steps N                timed steps per configuration (default 3)
  --warmup N               untimed warm-up rounds, at least 1 (default 1)
  --batch N                images per prompt; the UNet runs on 2N samples (default 1)
  --variants a,b,...       subset of: ${BENCH_MODELS.sd15.variantIds.join(', ')} (sdxl: see --model) (default: all; 'base' is always run)
  --dtype f32|f16          f16: weights stored in f16 (halves weight memory, any adapter) and, on a WebGPU
                           device with shader-f16, f16 compute with f32 accumulation (default f32)
  --out DIR                results folder (default: a new bench/runs/<date>-<backend>-<res>/; bench/results
                           is the committed one the READMEs quote)
  --wide                   print every column (default: a narrow table; the JSON and latest.md have all)
  --seed N                 random weights / inputs seed (default 0)
  --force                  run even when the pre-flight estimate exceeds 15 minutes per configuration
  --train                  time one training step instead: forward + backward + fused AdamW of the light
                           ControlNeXt module (SD1.5-Training) with the UNet's to_out parameters trained,
                           --batch samples (no CFG), phases timed apart; writes <out>/train-<backend>-<res>.json
                           (--variants, --dtype f16 and --model sdxl do not apply)
  --help                   this text
`;

/** Bad command-line usage: main prints it with a pointer to --help and exits with status 2. */
export class BenchUsageError extends Error {}

function positiveInt(name: string, v: string | undefined, fallback: number, min = 1, why = ''): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new BenchUsageError(`--${name}: expected an integer >= ${min}${why}, found '${v}'`);
  return n;
}

export function parseBenchOptions(argv: string[]): BenchOptions | 'help' {
  try {
    return parse(argv);
  } catch (e) {
    // node:util parseArgs: unknown option, missing value, unexpected argument (codes ERR_PARSE_ARGS_*).
    if (e instanceof BenchUsageError) throw e;
    throw new BenchUsageError((e as Error).message);
  }
}

function parse(argv: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' }, backend: { type: 'string' }, adapter: { type: 'string' }, resolution: { type: 'string' },
      steps: { type: 'string' }, warmup: { type: 'string' }, batch: { type: 'string' },
      variants: { type: 'string' }, dtype: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' },
      force: { type: 'boolean' }, wide: { type: 'boolean' }, train: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const modelName = values.model ?? 'sd15';
  if (!(BENCH_MODEL_NAMES as readonly string[]).includes(modelName)) throw new Error(`--model: expected ${BENCH_MODEL_NAMES.join(' or ')}, found '${modelName}'`);
  const model = BENCH_MODELS[modelName as BenchModelName];
  const backend = values.backend ?? 'wasm';
  if (backend !== 'cpu' && backend !== 'webgpu' && backend !== 'wasm') throw new BenchUsageError(`--backend: expected cpu, wasm or webgpu, found '${backend}'`);
  const res = values.resolution ?? '64';
  const m = /^(\d+)(?:x(\d+))?$/.exec(res);
  if (!m) throw new BenchUsageError(`--resolution: expected N or HxW in pixels, found '${res}'`);
  const resolution: [number, number] = [Number(m[1]), Number(m[2] ?? m[1])];
  const mult = model.resolutionMultiple;
  if (resolution.some((d) => d <= 0 || d % mult !== 0)) {
    throw new BenchUsageError(`--resolution: ${model.title} needs multiples of ${mult} pixels (the latent is /8 and the UNet halves it ` +
      `${Math.log2(mult / 8)} times), found ${resolution.join('x')}`);
  }
  const dtype = values.dtype ?? 'f32';
  if (values.train) {
    // The training step is SD1.5-Training's recipe in f32: refuse what would silently not apply.
    if (modelName !== 'sd15') throw new BenchUsageError(`--train: only --model sd15 (the SD1.5-Training recipe), found '${modelName}'`);
    if (dtype !== 'f32') throw new BenchUsageError(`--train: training runs in f32 (the optimizer's dtype), found --dtype ${dtype}`);
    if (values.variants !== undefined) throw new BenchUsageError('--train: --variants does not apply (one training configuration)');
  }
  if (dtype !== 'f32' && dtype !== 'f16') throw new BenchUsageError(`--dtype: expected f32 or f16, found '${dtype}'`);
  const ids = model.variantIds;
  let variants: string[] = [...ids];
  if (values.variants !== undefined) {
    const asked = values.variants.split(',').map((s) => s.trim()).filter((s) => s !== '');
    for (const a of asked) if (!ids.includes(a)) throw new BenchUsageError(`--variants: unknown '${a}' for --model ${model.name}; expected some of ${ids.join(', ')}`);
    variants = ids.filter((id) => id === 'base' || asked.includes(id));
  }
  return {
    model: model.name,
    backend,
    ...(values.adapter !== undefined ? { adapter: values.adapter } : {}),
    resolution,
    steps: positiveInt('steps', values.steps, 3),
    warmup: positiveInt('warmup', values.warmup, 1, 1, ' (the first round pays JIT and pipeline compilation, so it is never timed)'),
    batch: positiveInt('batch', values.batch, 1),
    variants,
    dtype,
    out: values.out,
    wide: values.wide ?? false,
    seed: positiveInt('seed', values.seed, 0, 0),
    force: values.force ?? false,
    train: values.train ?? false,
  };
}
