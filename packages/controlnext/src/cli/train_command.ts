// `cnx train`: train a ControlNeXt light module (the SD1.5-Training recipe, training/controlnext_trainer.ts)
// on a fill50k-layout dataset or a synthetic shapes set, on a Stable Diffusion 1.x folder or the tiny
// built-in model (random weights). Writes into --output:
//
//   dataset/              the synthetic set (--shapes N only; fill50k layout, node/fill50k_dataset.ts)
//   checkpoint-<step>/    every --checkpoint-every steps: the trainer's files (controlnext.safetensors,
//                         unet.safetensors, unet_weight_increasements.safetensors, optimizer.safetensors,
//                         trainer_state.json) and the module's config.json: the folder loads as a module
//                         folder (load_control_module.ts picks controlnext.safetensors)
//   final/                the last step's checkpoint
//   loss.csv, loss.svg    one row per step (training/loss_curve.ts); a resumed run keeps the rows up to
//                         its checkpoint and continues them
//   validation/step-<k>.png   one row per validation sample: control | generated (| target when known)
//   validation.csv        per validation: step and, for held-out shapes samples, the mean shape IoU
//
// Resume (--resume DIR): the trainer restores weights, optimizer and step; the data order, latent samples,
// noise and timesteps are pure functions of (seed, step) (training_batches.ts, controlnext_trainer.ts), so
// the resumed run computes what an uninterrupted one would.

import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ndarray from 'ndarray';
import { compileProgressPrinter, createBackend, watchCompiles } from '@cnx/kernels';
import { RandomWeights, noGrad, setGradEnabled, type Backend } from '@cnx/tensor';
import { createScheduler, readSchedulerConfigFile, type AutoencoderKL, type UNet2DConditionModel } from '@cnx/unet';
import { ControlNeXt } from '../controlnext/controlnext.js';
import { ControlNeXtLightModule, lightReleasedStructure, type LightStructure } from '../controlnext/controlnext_light.js';
import { imageToTensor, tensorToImages, type ImageArray } from '../images.js';
import { decodeImage, readImageBytes, writeImage } from '../node/image_files.js';
import { openFill50kDataset, readShapesDatasetInfo, writeShapesDataset } from '../node/fill50k_dataset.js';
import { loadPipeline } from '../node/pipeline_loading.js';
import { readTrainingCheckpoint, writeTrainingCheckpoint } from '../node/training_checkpoint_files.js';
import { ControllableDiffusionPipeline, type PromptEncoder } from '../pipelines/pipeline.js';
import { ControlNeXtControl } from '../pipelines/pipeline_control.js';
import { ClipPromptEncoder } from '../pipelines/prompt_encoder.js';
import { SD15_SCHEDULER_CONFIG, TINY_LIGHT_CONTROLNEXT_STRUCTURE, TINY_UNET_CONFIG, tinyModels } from '../pipelines/tiny_model.js';
import { ControlNeXtTrainer, CHECKPOINT_FILES, trainingNoiseSchedule, type TrainingInjection } from '../training/controlnext_trainer.js';
import { StepLogCsv, lossCurveSvg, parseStepLogCsv, type StepLogRow } from '../training/loss_curve.js';
import { meanShapeIoU } from '../training/shape_iou.js';
import { rgbBytesToImage, shapeSample, type ShapeDatasetOptions, type ShapeSample } from '../training/shapes.js';
import { TrainingDataCache, disposeTrainingBatch, resizeAndCrop, type TrainingExampleSource } from '../training/training_batches.js';
import type { CommandIO } from './generate_command.js';
import { formatOptions, parseOptions, UsageError, type OptionSpec } from './options.js';
import { formatDuration } from './progress.js';

/** The variants `cnx train` can train (the light module on an SD 1.x UNet, injected after down_blocks[0]). */
export const TRAINABLE_VARIANTS = ['sd15_training'] as const;

export const TRAIN_OPTIONS: readonly OptionSpec[] = [
  { name: 'dataset', type: 'string', metavar: 'DIR', description: 'training set in the fill50k layout (prompt.json JSON lines {"source", "target", "prompt"}, source/ = control images, target/ = images)' },
  { name: 'shapes', type: 'integer', metavar: 'N', description: 'instead of --dataset: write N samples of the synthetic shapes set (a coloured shape, its outline as control) at --resolution into OUTPUT/dataset and train on them', min: 1, max: 1_000_000 },
  { name: 'shapes-seed', type: 'integer', metavar: 'N', description: 'seed of the synthetic shapes set (with --shapes)', default: 0, min: 0, max: 4294967295 },
  { name: 'model', type: 'string', metavar: 'DIR|tiny', description: 'base Stable Diffusion 1.x folder (diffusers layout), or "tiny": the built-in tiny model with RANDOM weights (seed 0, as `cnx tiny-model`); for pictures one can look at, a `cnx tiny-model DIR --vae block-mean` folder (a tiny UNet folder gets the tiny light module)', default: 'tiny' },
  { name: 'variant', type: 'string', metavar: 'NAME', description: `what to train: ${TRAINABLE_VARIANTS.join(', ')} (the SD1.5-Training light module)`, default: 'sd15_training' },
  { name: 'resolution', type: 'integer', metavar: 'PX', description: 'training resolution, a multiple of 8: images are resized (shorter side) and centre-cropped to it (default: 512, the tiny model 64)', min: 8, max: 2048 },
  { name: 'batch-size', type: 'integer', metavar: 'N', description: 'samples per step', default: 4, min: 1, max: 256 },
  { name: 'steps', type: 'integer', metavar: 'N', description: 'total optimizer steps (a resumed run continues up to this many)', default: 1000, min: 1, max: 10_000_000 },
  { name: 'learning-rate', type: 'number', metavar: 'LR', description: 'AdamW learning rate of the trained UNet tensors (the control module: x --control-lr-multiplier)', default: 1e-5, min: 1e-12, max: 1 },
  { name: 'control-lr-multiplier', type: 'number', metavar: 'M', description: 'learning-rate factor of the control module (the recipe\'s x10)', default: 10, min: 1e-6, max: 1e6 },
  { name: 'max-grad-norm', type: 'number', metavar: 'G', description: 'clip the gradient norm over every trained tensor (default: no clipping, as the recipe)', min: 1e-12, max: 1e12 },
  { name: 'seed', type: 'integer', metavar: 'N', description: 'seed of the data order, latent samples, noise and timesteps, and of the fresh module\'s weights', default: 0, min: 0, max: 4294967295 },
  { name: 'backend', type: 'string', metavar: 'NAME', description: 'where to compute (wasm: the fast CPU path; cpu: the float64-accumulating reference)', default: 'cpu', choices: ['cpu', 'wasm', 'webgpu'] },
  { name: 'adapter', type: 'string', metavar: 'NAME', description: 'WebGPU adapter (with --backend webgpu; default: the first that works, in this order)', choices: ['gpu', 'swiftshader', 'lavapipe', 'llvmpipe'] },
  { name: 'output', type: 'string', metavar: 'DIR', description: 'output folder: checkpoint-<step>/, final/, loss.csv, loss.svg, validation/ (a new or empty folder, or the folder of the run --resume continues)' },
  { name: 'checkpoint-every', type: 'integer', metavar: 'N', description: 'write checkpoint-<step>/ every N steps (and always at the last step, as final/)', default: 500, min: 1, max: 10_000_000 },
  { name: 'resume', type: 'string', metavar: 'DIR', description: 'continue from a checkpoint folder (checkpoint-<step>/ or final/): weights, optimizer and step; the other options must match the run that wrote it' },
  { name: 'init-module', type: 'string', metavar: 'FILE', description: 'start from an existing light module (a .safetensors file or its folder) instead of random weights' },
  { name: 'injection', type: 'string', metavar: 'NAME', description: 'cross_norm: the recipe\'s cross normalisation; zero_conv: the ablation baseline (its checkpoints do not run in the pipeline, so it gets no validation images)', default: 'cross_norm', choices: ['cross_norm', 'zero_conv'] },
  { name: 'unet-trainable', type: 'string', metavar: 'PATTERN', description: 'UNet parameters trained with the module: a substring of their names, or /REGEX/', default: 'to_out' },
  { name: 'gradient-checkpointing', type: 'boolean', description: 'recompute each UNet / module block in backward: less memory, ~1.3x the time' },
  { name: 'latents', type: 'string', metavar: 'MODE', description: 'training latents: sample (latent_dist.sample(), as the recipe) or mean (latent_dist.mode(); for a VAE whose posterior noise drowns the image, e.g. the random tiny one)', default: 'sample', choices: ['sample', 'mean'] },
  { name: 'max-train-samples', type: 'integer', metavar: 'N', description: 'use only the first N samples of the dataset', min: 1, max: 100_000_000 },
  { name: 'proportion-empty-prompts', type: 'number', metavar: 'P', description: 'probability of replacing a sample\'s prompt by the empty-prompt text ("PBH", as the recipe)', default: 0, min: 0, max: 1 },
  { name: 'validation-prompt', type: 'list', metavar: 'TEXT', description: 'validation prompt (repeatable, paired in order with --validation-image)' },
  { name: 'validation-image', type: 'list', metavar: 'FILE', description: 'validation control image, PNG or JPEG (repeatable, one per --validation-prompt)' },
  { name: 'validation-samples', type: 'integer', metavar: 'N', description: 'without --validation-prompt, on a shapes dataset: validate on N held-out shapes samples (the indices after the training set) and report their mean shape IoU', default: 4, min: 0, max: 256 },
  { name: 'validation-every', type: 'integer', metavar: 'N', description: 'validation images every N steps (0: only after the last step); step 0 too when N > 0 and the run starts fresh', default: 0, min: 0, max: 10_000_000 },
  { name: 'validation-steps', type: 'integer', metavar: 'N', description: 'denoising steps of the validation images (UniPC)', default: 20, min: 1, max: 1000 },
  { name: 'validation-guidance', type: 'number', metavar: 'G', description: 'classifier-free guidance scale of the validation images (<= 1: off)', default: 7.5, min: 0, max: 30 },
  { name: 'log-every', type: 'integer', metavar: 'N', description: 'off a terminal: one progress line every N steps', default: 1, min: 1, max: 10_000_000 },
  { name: 'help', type: 'boolean', description: 'show this help' },
];

export const TRAIN_USAGE = 'usage: cnx train (--dataset DIR | --shapes N) --output DIR [--model DIR|tiny] [--steps N] [options]';

export function trainHelp(): string {
  return `${TRAIN_USAGE}

Train a ControlNeXt control module (the SD1.5-Training recipe: the light module at lr x 10 plus the UNet's
attention to_out layers, AdamW, DDPM noise, MSE on the noise) on a dataset in the fill50k layout or on a
synthetic shapes set, with a Stable Diffusion 1.x folder or the tiny built-in model (random weights: it
learns, but its pictures are not pictures; with the block-mean VAE of \`cnx tiny-model DIR --vae block-mean\`
and the whole tiny UNet trained, they are: bench/results/training/README.md).

Options:
${formatOptions(TRAIN_OPTIONS)}

Output folder: checkpoint-<step>/ and final/ (each loads as a module: \`cnx generate --model BASE
--controlnext OUT/final --controlnext-unet OUT/final/unet.safetensors ...\`; with --model tiny, BASE is
\`cnx tiny-model BASE\`), loss.csv and loss.svg, validation/step-<k>.png (rows: control | generated
| target when known) and validation.csv (the mean shape IoU on held-out shapes samples).

Progress: on a terminal a bar (step, loss, it/s, ETA) on stderr; otherwise lines on stdout:
  step=K/N loss=L it_per_s=R eta_s=S
  checkpoint step=K dir=DIR
  validation step=K file=FILE [mean_iou=X]
  done steps=N loss=L seconds=S final=DIR

Examples:
  cnx train --shapes 512 --output run1 --resolution 64 --batch-size 4 --steps 300 --learning-rate 1e-4 \\
    --backend wasm --validation-every 100
  cnx train --shapes 512 --output run1 --resolution 64 --batch-size 4 --steps 600 --learning-rate 1e-4 \\
    --backend wasm --validation-every 100 --resume run1/checkpoint-300
  cnx tiny-model shapes-sd --vae block-mean
  cnx train --model shapes-sd --shapes 1024 --output shapes-run --resolution 96 --batch-size 8 --steps 1500 \\
    --learning-rate 1e-3 --control-lr-multiplier 1 --unet-trainable '/./' --backend wasm --validation-every 250 \\
    --validation-guidance 1
  cnx train --model ./sd15 --dataset ./fill50k --output fill50k-run --resolution 512 --batch-size 4 \\
    --validation-prompt "red circle with blue background" --validation-image ./fill50k/source/0.png`;
}

/** The module's config.json: ControlNeXt-SD1.5-Training's class (detectVariant reads it as sd15_training). */
function moduleConfig(s: LightStructure): Record<string, unknown> {
  return {
    _class_name: 'ControlNeXtModel', controlnext_scale: s.scale, groups: s.groups, time_embed_dim: s.timeEmbedDim,
    in_channels: s.inChannels, out_channels: s.outChannels, _cnx: 'written by cnx train',
  };
}

function parsePattern(p: string): string | RegExp {
  const m = /^\/(.+)\/$/.exec(p);
  if (!m) return p;
  try {
    return new RegExp(m[1]!);
  } catch (e) {
    throw new UsageError(`--unet-trainable: /${m[1]}/ is not a regular expression (${(e as Error).message})`);
  }
}

interface ValidationSample {
  prompt: string;
  control: ImageArray;
  target?: ImageArray;
  /** The target through the VAE (decode(encode(target).mean)): the best the model can draw with this VAE. */
  roundTrip?: ImageArray;
  /** The target's latents (encode(target).mean * scaling_factor) [C * h * w], and their shape. */
  targetLatents?: Float32Array;
  latentShape?: readonly [number, number, number];
  shape?: ShapeSample;
}

/** decode(encode(image).mean) as an image in [0, 1] (clamped), and the latents encode(image).mean * scaling_factor. */
async function vaeRoundTrip(vae: AutoencoderKL, image: ImageArray, backend: Backend): Promise<{ image: ImageArray; latents: Float32Array; latentShape: [number, number, number] }> {
  const [H, W] = image.shape as [number, number];
  const planar = new Float32Array(3 * H * W);
  for (let c = 0; c < 3; c++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) planar[(c * H + y) * W + x] = image.get(y, x, c) * 2 - 1;
  const x = backend.fromRaw(planar, [1, 3, H, W]);
  const post = noGrad(() => vae.encode(x));
  x.dispose();
  const out = noGrad(() => vae.decode(post.mean));
  const mean = await post.mean.data();
  const latentShape = post.mean.shape.slice(1) as [number, number, number];
  post.mean.dispose(); post.logvar.dispose(); post.std.dispose();
  const data = await out.data();
  out.dispose();
  const rgb = new Float32Array(3 * H * W);
  for (let c = 0; c < 3; c++) for (let i = 0; i < H * W; i++) rgb[3 * i + c] = Math.min(1, Math.max(0, data[c * H * W + i]! * 0.5 + 0.5));
  return { image: ndarray(rgb, [H, W, 3]), latents: Float32Array.from(mean, (v) => v * vae.scalingFactor), latentShape };
}

/** Pearson correlation of two equally long vectors (0 when either is constant). */
function correlation(a: Float32Array, b: Float32Array): number {
  const n = a.length;
  let ma = 0, mb = 0;
  for (let i = 0; i < n; i++) { ma += a[i]!; mb += b[i]!; }
  ma /= n; mb /= n;
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < n; i++) { const x = a[i]! - ma, y = b[i]! - mb; sab += x * y; saa += x * x; sbb += y * y; }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : 0;
}

/**
 * Latent channels 0..2 as an RGB image upscaled (nearest) to size x size, each channel mapped to [0, 1]
 * by `range` (the target latents' min and max per channel, so generated and target share one scale).
 */
function latentImage(lat: Float32Array, [C, h, w]: readonly [number, number, number], size: number, range: readonly (readonly [number, number])[]): ImageArray {
  const out = new Float32Array(size * size * 3);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) for (let c = 0; c < Math.min(3, C); c++) {
    const v = lat[(c * h + Math.floor((y * h) / size)) * w + Math.floor((x * w) / size)]!;
    const [lo, hi] = range[c]!;
    out[(y * size + x) * 3 + c] = hi > lo ? Math.min(1, Math.max(0, (v - lo) / (hi - lo))) : 0.5;
  }
  return ndarray(out, [size, size, 3]);
}

function channelRanges(lat: Float32Array, [C, h, w]: readonly [number, number, number]): [number, number][] {
  return Array.from({ length: C }, (_, c) => {
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < h * w; i++) { const v = lat[c * h * w + i]!; lo = Math.min(lo, v); hi = Math.max(hi, v); }
    return [lo, hi] as [number, number];
  });
}

/**
 * The sample with its shape and background colours replaced by the mean colours of `reference` inside and
 * outside the mask: a random-weight VAE does not reproduce the prompt's colours, so the shape IoU against
 * the prompt colours says little there; against the colours the VAE actually gives the target it measures
 * whether the shape is drawn where the control says.
 */
function withReferenceColours(s: ShapeSample, reference: ImageArray): ShapeSample {
  const sum = [[0, 0, 0], [0, 0, 0]], n = [0, 0];
  const W = s.size;
  for (let i = 0; i < s.size * s.size; i++) {
    const k = s.mask[i] ? 0 : 1;
    n[k]!++;
    for (let c = 0; c < 3; c++) sum[k]![c]! += reference.get(Math.floor(i / W), i % W, c) * 255;
  }
  const mean = (k: number) => sum[k]!.map((v) => v / Math.max(1, n[k]!)) as unknown as readonly [number, number, number];
  return { ...s, rgb: mean(0), backgroundRgb: mean(1) };
}

/** A grid: one row per sample of [control | generated | target?], 2-pixel grey gutters. */
function validationGrid(rows: ImageArray[][]): ImageArray {
  const gap = 2;
  const cols = Math.max(...rows.map((r) => r.length));
  const h = rows[0]![0]!.shape[0]!, w = rows[0]![0]!.shape[1]!;
  const H = rows.length * h + (rows.length + 1) * gap, W = cols * w + (cols + 1) * gap;
  const out = new Float32Array(H * W * 3).fill(0.5);
  rows.forEach((row, r) => row.forEach((img, c) => {
    const y0 = gap + r * (h + gap), x0 = gap + c * (w + gap);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let k = 0; k < 3; k++) {
      out[((y0 + y) * W + x0 + x) * 3 + k] = Math.min(1, Math.max(0, img.get(y, x, k)));
    }
  }));
  return ndarray(out, [H, W, 3]);
}

function numericRows(text: string): StepLogRow[] {
  return parseStepLogCsv(text).rows;
}

/** Run `cnx train`; returns the exit status. */
export async function runTrain(argv: readonly string[], io: CommandIO): Promise<number> {
  const { values: v, positional, given } = parseOptions(argv, TRAIN_OPTIONS);
  if (v['help']) { io.stdout.write(trainHelp() + '\n'); return 0; }
  if (positional.length > 0) throw new UsageError(`unexpected argument '${positional[0]}' (options start with --)`);
  const str = (k: string) => v[k] as string | undefined;
  const num = (k: string) => v[k] as number | undefined;
  const list = (k: string) => (v[k] as string[] | undefined) ?? [];

  // ---- everything checkable before a model loads (usage errors name the flag)
  const variant = str('variant')!;
  if (!(TRAINABLE_VARIANTS as readonly string[]).includes(variant)) {
    throw new UsageError(`--variant: only ${TRAINABLE_VARIANTS.join(', ')} can be trained for now (the SD1.5-Training light module), found '${variant}'`);
  }
  const datasetDir = str('dataset'), shapesCount = num('shapes');
  if (datasetDir === undefined && shapesCount === undefined) throw new UsageError('no training data: give --dataset DIR (fill50k layout) or --shapes N (a synthetic set)');
  if (datasetDir !== undefined && shapesCount !== undefined) throw new UsageError('give --dataset DIR or --shapes N, not both');
  if (datasetDir !== undefined && (!existsSync(datasetDir) || !statSync(datasetDir).isDirectory())) {
    throw new UsageError(`--dataset: folder ${datasetDir} ${existsSync(datasetDir) ? 'is a file, not a folder' : 'does not exist'} (expected the fill50k layout: prompt.json, source/, target/)`);
  }
  if (given.has('shapes-seed') && shapesCount === undefined) throw new UsageError('--shapes-seed applies to the synthetic set: give --shapes N');
  const modelArg = str('model')!;
  const tiny = modelArg === 'tiny';
  if (!tiny && (!existsSync(modelArg) || !statSync(modelArg).isDirectory())) {
    throw new UsageError(`--model: folder ${modelArg} ${existsSync(modelArg) ? 'is a file, not a folder' : 'does not exist'} (expected a Stable Diffusion 1.x diffusers folder, or "tiny")`);
  }
  const R = num('resolution') ?? (tiny ? 64 : 512);
  if (R % 8 !== 0) throw new UsageError(`--resolution must be a multiple of 8 (the VAE's scale factor), found ${R}`);
  const output = str('output');
  if (output === undefined) throw new UsageError('--output DIR is missing (the folder for checkpoints, loss curve and validation images)');
  const backendName = str('backend')!;
  if (str('adapter') !== undefined && backendName !== 'webgpu') throw new UsageError(`--adapter chooses a WebGPU adapter: it needs --backend webgpu (found --backend ${backendName})`);
  const prompts = list('validation-prompt'), images = list('validation-image');
  if (images.length > 0 && prompts.length === 0) throw new UsageError('--validation-image needs a --validation-prompt (one per image, paired in order)');
  if (prompts.length > 0 && images.length !== prompts.length) {
    throw new UsageError(`--validation-prompt and --validation-image pair up: found ${prompts.length} prompt(s) and ${images.length} image(s)`);
  }
  for (const f of images) if (!existsSync(f) || !statSync(f).isFile()) throw new UsageError(`--validation-image: file ${f} does not exist`);
  const resumeDir = str('resume'), initModule = str('init-module');
  if (resumeDir !== undefined && initModule !== undefined) throw new UsageError('--init-module starts a new run; --resume continues one: give one of them');
  if (resumeDir !== undefined && !existsSync(join(resumeDir, CHECKPOINT_FILES.state))) {
    throw new UsageError(`--resume: ${resumeDir} is not a training checkpoint folder (no ${CHECKPOINT_FILES.state}; expected OUTPUT/checkpoint-<step> or OUTPUT/final)`);
  }
  if (initModule !== undefined && !existsSync(initModule)) throw new UsageError(`--init-module: ${initModule} does not exist`);
  const injection = str('injection') as TrainingInjection;
  const unetTrainable = parsePattern(str('unet-trainable')!);
  if (typeof unetTrainable === 'string' && unetTrainable === '') throw new UsageError('--unet-trainable must not be empty (it would train the whole UNet)');
  const steps = num('steps')!;
  let resumeStep = 0;
  let resumeFiles: Record<string, Uint8Array> | undefined;
  if (resumeDir !== undefined) {
    try {
      resumeFiles = readTrainingCheckpoint(resumeDir);
      const state = JSON.parse(new TextDecoder().decode(resumeFiles[CHECKPOINT_FILES.state])) as { step: number; seed: unknown; injection: unknown; unetTrainable: unknown };
      resumeStep = state.step;
      // What the trainer checks again, named by flag before any model loads.
      const mismatch = ([['seed', state.seed, v['seed']], ['injection', state.injection, injection], ['unet-trainable', state.unetTrainable, String(unetTrainable)]] as const)
        .find(([, saved, now]) => saved !== now);
      if (mismatch) throw new Error(`the checkpoint was trained with --${mismatch[0]} ${String(mismatch[1])}, this run has ${String(mismatch[2])} (give the checkpoint's value)`);
    } catch (e) {
      throw new UsageError(`--resume: ${(e as Error).message}`);
    }
    if (!(resumeStep < steps)) throw new UsageError(`--steps ${steps}: the checkpoint ${resumeDir} is already at step ${resumeStep}; raise --steps to continue`);
  }
  // The output folder: new, empty, or (resuming) the run's own.
  const lossCsvPath = join(output, 'loss.csv');
  if (existsSync(output)) {
    if (!statSync(output).isDirectory()) throw new UsageError(`--output: ${output} is a file, not a folder`);
    const present = readdirSync(output);
    if (resumeDir === undefined && present.length > 0) {
      throw new UsageError(`--output: ${output} is not empty${present.includes('loss.csv') ? ' (it holds a training run: continue it with --resume ' + join(output, 'final') + ' or a checkpoint-<step> folder)' : ''}; choose a new folder`);
    }
  }
  const validateEvery = num('validation-every')!;

  // ---- the run
  mkdirSync(output, { recursive: true });
  const backend: Backend = await createBackend(backendName, { adapter: str('adapter') });
  io.stderr.write(`backend: ${backend.description}\n`);
  const stopCompileProgress = watchCompiles(backend, compileProgressPrinter(io.stderr));
  let unet: UNet2DConditionModel | undefined, vae: AutoencoderKL | undefined, textEncoder: PromptEncoder | undefined;
  let cnx: ControlNeXt | undefined, trainer: ControlNeXtTrainer | undefined, pipeline: ControllableDiffusionPipeline | undefined;
  try {
    // Models.
    let schedulerConfig: Record<string, unknown>;
    let structure: LightStructure;
    if (tiny) {
      io.stderr.write('NOTE: --model tiny: the tiny built-in model with RANDOM weights (seed 0, as `cnx tiny-model`); it learns the control, but its images are not pictures.\n');
      const m = tinyModels(backend, { seed: 0, control: false });
      unet = m.unet; vae = m.vae; textEncoder = new ClipPromptEncoder(m.tokenizer, m.textModel);
      schedulerConfig = SD15_SCHEDULER_CONFIG;
      structure = TINY_LIGHT_CONTROLNEXT_STRUCTURE;
    } else {
      const loaded = loadPipeline(modelArg, backend, {});
      const p = loaded.pipeline;
      if (loaded.modelIndex.family !== 'sd' || !(p instanceof ControllableDiffusionPipeline)) {
        p.dispose();
        throw new UsageError(`--model: ${modelArg} is an SDXL folder (${loaded.modelIndex.evidence}); --variant sd15_training trains on Stable Diffusion 1.x`);
      }
      ({ unet, vae } = p.components);
      if (!p.components.textEncoder) throw new Error(`--model: ${modelArg} loaded without a text encoder`);
      textEncoder = p.components.textEncoder;
      p.components.scheduler.dispose();
      schedulerConfig = readSchedulerConfigFile(join(modelArg, 'scheduler', 'scheduler_config.json')) as Record<string, unknown>;
      // The tiny model's UNet (a `cnx tiny-model` folder) gets the tiny light module, any other the released widths.
      const tinyUnet = unet.config.block_out_channels.join() === TINY_UNET_CONFIG.block_out_channels.join();
      structure = tinyUnet ? TINY_LIGHT_CONTROLNEXT_STRUCTURE : lightReleasedStructure(unet.config.block_out_channels[0]!);
      io.stderr.write(`model: Stable Diffusion (${loaded.modelIndex.evidence})${tinyUnet ? '; the tiny UNet: the tiny light module' : ''}\n`);
    }
    if (initModule !== undefined) {
      cnx = ControlNeXt.load(initModule, backend, { variant: 'sd15_training' });
      const s = (cnx.module as ControlNeXtLightModule).structure;
      const want = unet.config.block_out_channels[0]!;
      if (s.finalChannels !== want) throw new UsageError(`--init-module: the module gives ${s.finalChannels} channels, the UNet's down_blocks[0] has ${want}`);
      structure = s;
    } else {
      cnx = new ControlNeXt('sd15_training', new ControlNeXtLightModule(new RandomWeights({ seed: v['seed'] as number }), backend, structure), backend);
    }

    // Data.
    let shapeInfo: (ShapeDatasetOptions & { start: number; count: number }) | undefined;
    let dataDir: string;
    if (shapesCount !== undefined) {
      dataDir = join(output, 'dataset');
      const want = { size: R, seed: v['shapes-seed'] as number };
      const info = existsSync(dataDir) ? readShapesDatasetInfo(dataDir) : undefined;
      if (info) {
        if (info.count !== shapesCount || info.size !== want.size || info.seed !== want.seed || info.start !== 0) {
          throw new UsageError(`--shapes: ${dataDir} holds ${info.count} samples at ${info.size} px, seed ${info.seed}; this run asks ${shapesCount} at ${R} px, seed ${want.seed}`);
        }
      } else {
        io.stderr.write(`writing ${shapesCount} synthetic shapes samples to ${dataDir}\n`);
        await writeShapesDataset(dataDir, { count: shapesCount, ...want });
      }
    } else {
      dataDir = datasetDir!;
    }
    shapeInfo = readShapesDatasetInfo(dataDir);
    const dataset = await openFill50kDataset(dataDir).catch((e: Error) => { throw new UsageError(`${shapesCount === undefined ? '--dataset' : '--shapes'}: ${e.message}`); });
    const maxN = num('max-train-samples');
    const source: TrainingExampleSource = maxN === undefined || maxN >= dataset.length ? dataset : { length: maxN, get: (i) => dataset.get(i) };
    const t0 = performance.now();
    const cache = await TrainingDataCache.build(source, {
      backend, vae, textEncoder: textEncoder!, resolution: R, batchSize: num('batch-size')!, seed: v['seed'] as number,
      proportionEmptyPrompts: num('proportion-empty-prompts'), latents: str('latents') as 'sample' | 'mean',
    });
    io.stderr.write(`data: ${source.length} samples from ${dataDir} at ${R}x${R}, encoded in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

    // Validation samples: given prompt/image pairs, else held-out shapes samples.
    const validation: ValidationSample[] = [];
    if (prompts.length > 0) {
      prompts.forEach((prompt, k) => {
        const img = decodeImage(readImageBytes(images[k]!), images[k]!);
        validation.push({ prompt, control: resizeAndCrop(img, R) });
      });
    } else if (shapeInfo && num('validation-samples')! > 0) {
      // The generator continued past the training set, drawn at the training resolution.
      const { start, count, ...opts } = shapeInfo;
      for (let k = 0; k < num('validation-samples')!; k++) {
        const s = shapeSample(start + count + k, { ...opts, size: R });
        const target = rgbBytesToImage(s.target, R, R);
        const rt = await vaeRoundTrip(vae, target, backend);
        validation.push({ prompt: s.prompt, control: rgbBytesToImage(s.control, R, R), target, roundTrip: rt.image, targetLatents: rt.latents, latentShape: rt.latentShape, shape: s });
      }
    }
    if (validation.length > 0 && injection === 'zero_conv') {
      io.stderr.write('NOTE: --injection zero_conv: the pipeline injects by cross normalisation, so no validation images are made\n');
      validation.length = 0;
    }

    // Trainer.
    trainer = await ControlNeXtTrainer.create({
      unet, controlnext: cnx, schedule: trainingNoiseSchedule(schedulerConfig), learningRate: num('learning-rate')!,
      controlLrMultiplier: num('control-lr-multiplier'), maxGradNorm: num('max-grad-norm'), unetTrainable, injection,
      gradientCheckpointing: v['gradient-checkpointing'] === true, seed: v['seed'] as number, resume: resumeFiles,
    }).catch((e: Error) => { throw resumeFiles ? new UsageError(`--resume: ${e.message.replace(/^resume: /, '')}`) : e; });
    const counts = trainer.parameterCounts();
    io.stderr.write(`training: ${counts.control} control-module values at lr ${(num('learning-rate')! * num('control-lr-multiplier')!).toPrecision(3)}, ${counts.unet} UNet values at lr ${num('learning-rate')}; ` +
      `steps ${trainer.step + 1}..${steps}, batch ${num('batch-size')}, ${cache.batchesPerEpoch} batches per epoch\n`);
    pipeline = new ControllableDiffusionPipeline({ unet, vae, scheduler: createScheduler('unipc', schedulerConfig), textEncoder, control: new ControlNeXtControl(cnx) });

    // Loss log: a resumed run keeps the rows up to its step.
    const log = new StepLogCsv();
    let elapsedBefore = 0;
    const lossRows: { step: number; loss: number }[] = [];
    {
      const previous = existsSync(lossCsvPath) ? lossCsvPath : resumeDir !== undefined && existsSync(join(resumeDir, '..', 'loss.csv')) ? join(resumeDir, '..', 'loss.csv') : undefined;
      const kept = previous && resumeDir !== undefined ? numericRows(readFileSync(previous, 'utf8')).filter((r) => (r['step'] as number) <= resumeStep) : [];
      writeFileSync(lossCsvPath, log.header() + kept.map((r) => log.line(r)).join(''));
      for (const r of kept) lossRows.push({ step: r['step'] as number, loss: r['loss'] as number });
      elapsedBefore = kept.length ? Number(kept[kept.length - 1]!['elapsed_s']) || 0 : 0;
    }
    const validationCsv = join(output, 'validation.csv');
    {
      // A resumed run keeps the validations up to its step (a run that went past the checkpoint redoes the rest).
      const header = 'step,mean_iou,min_iou,max_iou,mean_iou_vae_colours,vae_round_trip_iou,latent_correlation,file\n';
      const kept = resumeDir !== undefined && existsSync(validationCsv)
        ? readFileSync(validationCsv, 'utf8').split('\n').slice(1).filter((l) => l !== '' && Number(l.split(',')[0]) <= resumeStep) : [];
      writeFileSync(validationCsv, header + kept.map((l) => l + '\n').join(''));
    }

    const writeLossSvg = () => {
      if (lossRows.length === 0) return;
      writeFileSync(join(output, 'loss.svg'), lossCurveSvg(lossRows, { title: `cnx train: loss (${tiny ? 'tiny model' : modelArg}, ${R}px, batch ${num('batch-size')})`, movingAverage: Math.max(1, Math.min(50, Math.round(lossRows.length / 20))) }));
    };
    const checkpoint = async (dir: string) => {
      const files = await trainer!.checkpointFiles();
      await writeTrainingCheckpoint(dir, files, moduleConfig(structure));
    };
    const validate = async (step: number) => {
      if (validation.length === 0) return;
      mkdirSync(join(output, 'validation'), { recursive: true });
      // Inference only: nothing to record for backward (the trained tensors require gradients).
      const prev = setGradEnabled(false);
      const rows: ImageArray[][] = [], generated: ImageArray[] = [], latentCorr: number[] = [];
      try {
        for (const [k, s] of validation.entries()) {
          const control = imageToTensor(s.control, backend);
          try {
            const r = await pipeline!.generate({
              prompt: s.prompt, controlImage: control, height: R, width: R, numInferenceSteps: num('validation-steps'),
              guidanceScale: num('validation-guidance'), seed: (v['seed'] as number) + k,
            });
            const [img] = await tensorToImages(r.images);
            const lat = await r.latents.data();
            r.images.dispose(); r.latents.dispose();
            generated.push(img!);
            if (s.targetLatents && s.latentShape) {
              // Latent view: what the denoiser drew (left) and the target's latents (right), one colour scale.
              const range = channelRanges(s.targetLatents, s.latentShape);
              latentCorr.push(correlation(lat, s.targetLatents));
              rows.push([s.control, img!, s.roundTrip!, s.target!, latentImage(lat, s.latentShape, R, range), latentImage(s.targetLatents, s.latentShape, R, range)]);
            } else rows.push(s.target ? [s.control, img!, s.target] : [s.control, img!]);
          } finally {
            control.dispose();
          }
        }
      } finally {
        setGradEnabled(prev);
      }
      const file = join(output, 'validation', `step-${step}.png`);
      writeImage(file, validationGrid(rows));
      let iouText = '', iouCsv = ',,,,,';
      if (validation.every((s) => s.shape && s.roundTrip)) {
        const iou = meanShapeIoU(generated, validation.map((s) => s.shape!));
        const refSamples = validation.map((s) => withReferenceColours(s.shape!, s.roundTrip!));
        const ref = meanShapeIoU(generated, refSamples);
        const ceiling = meanShapeIoU(validation.map((s) => s.roundTrip!), refSamples);
        const corr = latentCorr.reduce((a, b) => a + b, 0) / latentCorr.length;
        iouText = ` mean_iou=${iou.mean.toFixed(4)} mean_iou_vae_colours=${ref.mean.toFixed(4)} vae_round_trip_iou=${ceiling.mean.toFixed(4)} latent_corr=${corr.toFixed(4)}`;
        iouCsv = `${iou.mean},${iou.min},${iou.max},${ref.mean},${ceiling.mean},${corr}`;
      }
      appendFileSync(validationCsv, `${step},${iouCsv},${join('validation', `step-${step}.png`)}\n`);
      io.stdout.write(`validation step=${step} file=${file}${iouText}\n`);
    };

    if (validateEvery > 0 && resumeDir === undefined) await validate(0);
    const tty = io.stderr.isTTY === true;
    const loopStart = performance.now();
    const first = trainer.step;
    let lastLoss = NaN;
    for (let s = first; s < steps; s++) {
      const batch = cache.batch(s);
      let loss: number;
      try {
        loss = (await trainer.trainStep(batch)).loss;
      } finally {
        disposeTrainingBatch(batch);
      }
      lastLoss = loss;
      const done = trainer.step;
      const elapsed = (performance.now() - loopStart) / 1000;
      const rate = (done - first) / elapsed;
      appendFileSync(lossCsvPath, log.line({ step: done, loss, lr: num('learning-rate'), it_per_s: rate, elapsed_s: elapsedBefore + elapsed }));
      lossRows.push({ step: done, loss });
      const eta = (steps - done) / rate;
      if (tty) {
        const width = 24, filled = Math.round((done / steps) * width);
        const itS = rate >= 1 ? `${rate.toFixed(2)} it/s` : `${(1 / rate).toFixed(2)} s/it`;
        io.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] step ${done}/${steps}  loss ${loss.toFixed(4)}  ${itS}  ETA ${formatDuration(eta)}\x1b[K`);
      } else if (done % num('log-every')! === 0 || done === steps) {
        io.stdout.write(`step=${done}/${steps} loss=${loss.toPrecision(6)} it_per_s=${rate.toFixed(3)} eta_s=${Math.round(eta)}\n`);
      }
      const atEnd = done === steps;
      if (done % num('checkpoint-every')! === 0 || atEnd) {
        const dir = join(output, `checkpoint-${done}`);
        await checkpoint(dir);
        writeLossSvg();
        if (tty) io.stderr.write('\n');
        io.stdout.write(`checkpoint step=${done} dir=${dir}\n`);
      }
      if ((validateEvery > 0 && done % validateEvery === 0) || atEnd) {
        if (tty) io.stderr.write('\n');
        await validate(done);
      }
    }
    const finalDir = join(output, 'final');
    await checkpoint(finalDir);
    writeLossSvg();
    const seconds = (performance.now() - loopStart) / 1000;
    io.stdout.write(`done steps=${steps} loss=${lastLoss.toPrecision(6)} seconds=${seconds.toFixed(1)} final=${finalDir}\n`);
    return 0;
  } finally {
    stopCompileProgress();
    trainer?.dispose();
    if (pipeline) pipeline.dispose();
    else {
      cnx?.dispose(); unet?.dispose(); vae?.dispose(); textEncoder?.dispose();
    }
    backend.destroy();
  }
}

