// Command-line options of `npm run experiment:convergence` (node bench/dist/convergence/main.js). The
// defaults are sized for 2 CPU cores with the wasm backend: measured 18.8 min wall (base model 9.0, control
// arms 9.7) with a load average of 6-8 from other jobs on those cores (bench/results/convergence/README.md);
// the flags scale every budget up (a GPU: --backend webgpu).

import { parseArgs } from 'node:util';

export type ExperimentBackend = 'wasm' | 'cpu' | 'webgpu';
export type ControlKind = 'mask' | 'outline';

export interface ConvergenceOptions {
  backend: ExperimentBackend;
  /** wasm: worker threads (default 2: the two cores of the machine the defaults are sized for). */
  threads: number;
  /** Image side in pixels (control image); latents are size / 8. */
  size: number;
  /** Control image of the shapes set: the filled mask or the outline (fill50k-like). */
  control: ControlKind;
  /** Training examples (shapes dataset seed 0, indices 0..N-1). */
  trainExamples: number;
  /** Held-out evaluation samples (shapes dataset seed 1). */
  evalSamples: number;
  /** DDIM steps of each evaluation generation. */
  ddimSteps: number;
  /** Base model: full-UNet training steps, batch, learning rate. */
  baseSteps: number;
  baseBatch: number;
  baseLr: number;
  /** Load the base UNet from this safetensors file instead of training it (a previous run's base_unet.safetensors). */
  baseFrom?: string;
  /** Control arms: steps per run, batch, base learning rate (the module gets 10x, the recipe's multiplier). */
  steps: number;
  batch: number;
  lr: number;
  /** Seeds per arm (0..seeds-1): module init, batch order and noise of each run. */
  seeds: number;
  /** Evaluate every this many steps (and at step 0 and the last step). */
  evalEvery: number;
  /** Output folder (default bench/results/convergence). */
  out: string;
}

export const DEFAULT_CONVERGENCE_OPTIONS: ConvergenceOptions = {
  backend: 'wasm', threads: 2, size: 64, control: 'mask', trainExamples: 1024, evalSamples: 16, ddimSteps: 20,
  baseSteps: 2500, baseBatch: 8, baseLr: 1e-3, steps: 150, batch: 8, lr: 1e-4, seeds: 3, evalEvery: 25,
  out: 'bench/results/convergence',
};

export class ConvergenceUsageError extends Error {}

export const CONVERGENCE_HELP = `Usage: npm run experiment:convergence -- [options]

The ControlNeXt convergence claim at toy scale: trains a tiny text-to-image UNet on the synthetic shapes
set (pixel-grid latents, no VAE), then the light ControlNeXt module on it with cross normalisation and with
a zero convolution (same data, seeds, budget), evaluating the shape IoU of generated images against the
control mask on a held-out set every --eval-every steps. Writes results.json, fidelity.svg, loss.svg,
base_loss.svg, base_training_log.csv, base_samples.png, control_grid.png, summary.md and base_unet.safetensors
to --out.

Options (defaults in brackets):
  --backend wasm|cpu|webgpu   [wasm] cpu is the float64 reference (slow); webgpu for a GPU
  --threads N                 wasm worker threads [2]
  --base-steps N              base-model training steps [${DEFAULT_CONVERGENCE_OPTIONS.baseSteps}]
  --base-batch N              [${DEFAULT_CONVERGENCE_OPTIONS.baseBatch}]
  --base-lr X                 [${DEFAULT_CONVERGENCE_OPTIONS.baseLr}]
  --base-from FILE            load the base UNet (base_unet.safetensors of an earlier run) instead of training
  --steps N                   control training steps per run [${DEFAULT_CONVERGENCE_OPTIONS.steps}]
  --batch N                   control training batch [${DEFAULT_CONVERGENCE_OPTIONS.batch}]
  --lr X                      control base learning rate; the module (and zero conv) get 10x [${DEFAULT_CONVERGENCE_OPTIONS.lr}]
  --seeds N                   runs per arm [${DEFAULT_CONVERGENCE_OPTIONS.seeds}]
  --eval-every N              [${DEFAULT_CONVERGENCE_OPTIONS.evalEvery}]
  --eval-samples N            held-out samples [${DEFAULT_CONVERGENCE_OPTIONS.evalSamples}]
  --ddim-steps N              [${DEFAULT_CONVERGENCE_OPTIONS.ddimSteps}]
  --train-examples N          [${DEFAULT_CONVERGENCE_OPTIONS.trainExamples}]
  --size N                    image pixels, a multiple of 8 (latents N/8) [${DEFAULT_CONVERGENCE_OPTIONS.size}]
  --control mask|outline      control image kind [${DEFAULT_CONVERGENCE_OPTIONS.control}]
  --out DIR                   [${DEFAULT_CONVERGENCE_OPTIONS.out}]
  --help
`;

function int(name: string, v: string | undefined, def: number, min: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new ConvergenceUsageError(`--${name}: expected an integer >= ${min}, found '${v}'`);
  return n;
}

function positive(name: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!(n > 0) || !Number.isFinite(n)) throw new ConvergenceUsageError(`--${name}: expected a positive number, found '${v}'`);
  return n;
}

export function parseConvergenceOptions(argv: readonly string[]): ConvergenceOptions | 'help' {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: [...argv], allowPositionals: false, strict: true,
      options: Object.fromEntries([
        'backend', 'threads', 'base-steps', 'base-batch', 'base-lr', 'base-from', 'steps', 'batch', 'lr', 'seeds', 'eval-every',
        'eval-samples', 'ddim-steps', 'train-examples', 'size', 'control', 'out',
      ].map((k) => [k, { type: 'string' as const }]).concat([['help', { type: 'boolean' as const }]] as never)),
    }).values as Record<string, string | boolean | undefined>;
  } catch (e) {
    throw new ConvergenceUsageError((e as Error).message);
  }
  if (values.help) return 'help';
  const s = (k: string) => values[k] as string | undefined;
  const d = DEFAULT_CONVERGENCE_OPTIONS;
  const backend = (s('backend') ?? d.backend) as ExperimentBackend;
  if (!['wasm', 'cpu', 'webgpu'].includes(backend)) throw new ConvergenceUsageError(`--backend: expected wasm, cpu or webgpu, found '${backend}'`);
  const control = (s('control') ?? d.control) as ControlKind;
  if (control !== 'mask' && control !== 'outline') throw new ConvergenceUsageError(`--control: expected mask or outline, found '${control}'`);
  const size = int('size', s('size'), d.size, 8);
  if (size % 8 !== 0) throw new ConvergenceUsageError(`--size: expected a multiple of 8 (the light module's stride), found ${size}`);
  const o: ConvergenceOptions = {
    backend, control, size,
    threads: int('threads', s('threads'), d.threads, 1),
    trainExamples: int('train-examples', s('train-examples'), d.trainExamples, 1),
    evalSamples: int('eval-samples', s('eval-samples'), d.evalSamples, 1),
    ddimSteps: int('ddim-steps', s('ddim-steps'), d.ddimSteps, 1),
    baseSteps: int('base-steps', s('base-steps'), d.baseSteps, 0),
    baseBatch: int('base-batch', s('base-batch'), d.baseBatch, 1),
    baseLr: positive('base-lr', s('base-lr'), d.baseLr),
    ...(s('base-from') !== undefined ? { baseFrom: s('base-from') } : {}),
    steps: int('steps', s('steps'), d.steps, 1),
    batch: int('batch', s('batch'), d.batch, 1),
    lr: positive('lr', s('lr'), d.lr),
    seeds: int('seeds', s('seeds'), d.seeds, 1),
    evalEvery: int('eval-every', s('eval-every'), d.evalEvery, 1),
    out: s('out') ?? d.out,
  };
  if (o.baseFrom === undefined && o.baseSteps < 1) throw new ConvergenceUsageError('--base-steps: expected >= 1 unless --base-from gives the base model');
  return o;
}
