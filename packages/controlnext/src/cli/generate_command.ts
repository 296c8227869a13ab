// `cnx generate`: prompt (+ control image) -> PNG. --model is a Stable Diffusion 1.x/2.x or SDXL diffusers
// folder (the pipeline class comes from its model_index.json); a ControlNeXt module's variant is named by
// --variant or detected from the file and the folder. Without --model it runs the tiny built-in model with
// random weights (tiny_model.ts) and says so: the output is noise, not a picture.

import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, existsSync, openSync, rmSync, statSync } from 'node:fs';
import { dirname, extname, join, resolve } from 'node:path';
import { compileProgressPrinter, createBackend, watchCompiles } from '@cnx/kernels';
import type { Backend, Tensor } from '@cnx/tensor';
import type { ControlType } from '../control_types/control_type.js';
import { imageToTensor, readImageHeader, resizeImage, tensorToImages, toRgbImage, type ImageArray, type ImageHeader } from '../images.js';
import { decodeImage, imageFormatOfPath, readImageBytes, writeImage } from '../node/image_files.js';
import { controlTypeRegistry } from '../node/control_type_plugins.js';
import { loadPipeline } from '../node/pipeline_loading.js';
import { MAX_OUTPUT_SIDE } from '../pipelines/pipeline.js';
import { NON_FINITE_CONSEQUENCE, NonFiniteError } from '../pipelines/finite_guard.js';
import type { DiffusionPipeline } from '../pipelines/pipeline_assembly.js';
import type { VariantName } from '../controlnext/variants.js';
import { createProgress } from './progress.js';
import { SCHEDULER_NAMES, isSchedulerName } from '@cnx/unet';
import { TINY_IMAGE_SIZE, tinyPipeline } from '../pipelines/tiny_model.js';
import { formatOptions, parseOptions, UsageError, type OptionSpec } from './options.js';

export const GENERATE_OPTIONS: readonly OptionSpec[] = [
  { name: 'model', type: 'string', metavar: 'DIR', description: 'Stable Diffusion 1.x/2.x or SDXL folder in the diffusers layout (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/; SDXL also text_encoder_2/, tokenizer_2/); without it a tiny built-in model with RANDOM weights runs' },
  { name: 'prompt', type: 'string', metavar: 'TEXT', description: 'what to draw', default: '' },
  { name: 'negative-prompt', type: 'string', metavar: 'TEXT', description: 'what to avoid (the ControlNeXt examples use "PBH"; default: "", and for SDXL zeros, as diffusers)' },
  { name: 'control-image', type: 'string', metavar: 'FILE', description: 'control image (PNG or JPEG); resized to the output size' },
  { name: 'control-type', type: 'string', metavar: 'NAME', description: 'how the control image becomes the control map (see `cnx control-types`)', default: 'passthrough' },
  { name: 'control-type-dir', type: 'list', metavar: 'DIR', description: 'a plug-in folder of control types (.js files exporting controlType), added to the built-in ones (repeatable)' },
  { name: 'control-option', type: 'list', metavar: 'KEY=VALUE', description: 'an option of the control type (repeatable), e.g. low=100' },
  { name: 'control-scale', type: 'number', metavar: 'S', description: 'control strength', default: 1, min: 0, max: 10 },
  { name: 'controlnext', type: 'string', metavar: 'FILE', description: 'ControlNeXt control module (controlnet.safetensors or its folder)' },
  { name: 'controlnext-unet', type: 'string', metavar: 'FILE', description: 'ControlNeXt partial UNet weights (unet.safetensors; SDXL: deltas, added)' },
  { name: 'variant', type: 'string', metavar: 'NAME', description: 'ControlNeXt release the module belongs to: sd15 (SD1.5 release module), sd15_training (SD1.5-Training light module), sdxl (default: detected from the module file and the model folder)', choices: ['sd15', 'sd15_training', 'sdxl'] },
  { name: 'controlnet', type: 'string', metavar: 'DIR', description: 'a diffusers ControlNet folder (instead of ControlNeXt)' },
  { name: 'scheduler', type: 'string', metavar: 'NAME', description: `sampler: ${Object.keys(SCHEDULER_NAMES).join(', ')} (or a diffusers class name)`, default: 'unipc' },
  { name: 'steps', type: 'integer', metavar: 'N', description: 'denoising steps', default: 20, min: 1, max: 1000 },
  { name: 'guidance', type: 'number', metavar: 'G', description: 'classifier-free guidance scale (<= 1: off; default: 7.5, SDXL 5)', min: 0, max: 30 },
  { name: 'guidance-rescale', type: 'number', metavar: 'R', description: 'guidance_rescale (arXiv 2305.08891), 0 = off', default: 0, min: 0, max: 1 },
  { name: 'seed', type: 'integer', metavar: 'N', description: 'random seed (default: a random one, printed)', min: 0, max: 4294967295 },
  { name: 'width', type: 'integer', metavar: 'PX', description: 'output width, a multiple of 8 (default: the UNet\'s sample_size x 8; image-to-image: the init image\'s; a size taken from an image has the same cap)', min: 8, max: MAX_OUTPUT_SIDE },
  { name: 'height', type: 'integer', metavar: 'PX', description: 'output height, a multiple of 8', min: 8, max: MAX_OUTPUT_SIDE },
  { name: 'num-images', type: 'integer', metavar: 'N', description: 'images to generate', default: 1, min: 1, max: 16 },
  { name: 'init-image', type: 'string', metavar: 'FILE', description: 'image-to-image: start from this image' },
  { name: 'strength', type: 'number', metavar: 'S', description: 'image-to-image: how much to repaint (default: 0.8, SDXL 0.3)', min: 0.01, max: 1 },
  { name: 'lora', type: 'list', metavar: 'FILE[:SCALE]', description: 'LoRA file (kohya or diffusers/PEFT) with its scale, default 1 (repeatable)' },
  { name: 'output', type: 'string', metavar: 'FILE', description: 'output image, PNG or JPEG by its extension (.png, .jpg, .jpeg; several images: FILE-1.png, FILE-2.png, ...)', default: 'output.png' },
  { name: 'backend', type: 'string', metavar: 'NAME', description: 'where to compute (wasm: the fast CPU path; cpu: the float64 reference)', default: 'cpu', choices: ['cpu', 'wasm', 'webgpu'] },
  { name: 'adapter', type: 'string', metavar: 'NAME', description: 'WebGPU adapter (with --backend webgpu; default: the first that works, in this order)', choices: ['gpu', 'swiftshader', 'lavapipe', 'llvmpipe'] },
  { name: 'fp16', type: 'boolean', description: 'load .fp16 weight files where both exist (computation stays f32)' },
  { name: 'check-finite', type: 'boolean', description: 'stop with an error naming the step when the latents (or the decoded image) hold NaN or infinities; --no-check-finite skips the check', default: true },
  { name: 'help', type: 'boolean', description: 'show this help' },
];

export const GENERATE_USAGE = 'usage: cnx generate [--model DIR] --prompt TEXT [--control-image FILE --controlnext FILE] [options]';

export function generateHelp(): string {
  return `${GENERATE_USAGE}

Generate an image from a prompt, optionally controlled by a ControlNeXt module (or a ControlNet) and a
control image, and write it as PNG. Without --model, a tiny model with random weights runs so that a
first try works anywhere: its output is noise, not a picture.

Options:
${formatOptions(GENERATE_OPTIONS)}

Output: on a terminal a progress bar (step, it/s, ETA) on stderr; otherwise nothing until one line per
image on stdout: "wrote FILE WxH seed=N steps=N scheduler=NAME seconds=S".

Examples:
  cnx generate --prompt "a cat" --control-image edges.png --control-type canny --steps 4 --output cat.png
  cnx generate --model ./sd15 --controlnext ./controlnet.safetensors --controlnext-unet ./unet.safetensors \\
    --control-image pose.png --prompt "a dancer" --negative-prompt PBH --seed 42 --output dancer.png`;
}

export interface CommandIO {
  stdout: { write(s: string): boolean };
  stderr: { isTTY?: boolean; write(s: string): boolean };
}

function outputPaths(output: string, n: number): string[] {
  if (n === 1) return [output];
  const ext = extname(output) || '.png';
  const stem = output.slice(0, output.length - extname(output).length);
  return Array.from({ length: n }, (_, i) => `${stem}-${i + 1}${ext}`);
}

/**
 * Refuse an output path that cannot be written, before any model loads: the extension must name a
 * format, the folder must exist, the name must not be a folder, and a probe file must be creatable in
 * the folder (this catches read-only folders and file systems, whatever the permission bits say).
 */
function checkOutputPaths(paths: readonly string[]): void {
  for (const p of paths) {
    if (!imageFormatOfPath(p)) throw new UsageError(`--output must end in .png, .jpg or .jpeg (the format follows the extension), found '${p}'`);
    const dir = dirname(resolve(p));
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`--output: folder ${dir} does not exist`);
    if (existsSync(p) && statSync(p).isDirectory()) throw new UsageError(`--output: ${p} is a folder`);
  }
  const dir = dirname(resolve(paths[0]!));
  const probe = join(dir, `.cnx-write-test-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    closeSync(openSync(probe, 'wx'));
    rmSync(probe, { force: true });
  } catch (e) {
    throw new UsageError(`--output: cannot write into ${dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  for (const p of paths) {
    if (!existsSync(p)) continue;
    try {
      accessSync(p, constants.W_OK);
    } catch {
      throw new UsageError(`--output: ${p} exists and is not writable`);
    }
  }
}

function parseLora(spec: string): { path: string; scale: number } {
  const m = /^(.*?)(?::(-?[0-9.eE+-]+))?$/.exec(spec)!;
  const path = m[1]!;
  const scale = m[2] === undefined ? 1 : Number(m[2]);
  if (!Number.isFinite(scale) || scale < -10 || scale > 10) throw new UsageError(`--lora scale must be a number in [-10, 10], found '${m[2]}' in '${spec}'`);
  if (!existsSync(path)) throw new UsageError(`--lora: file ${path} does not exist`);
  return { path, scale };
}

function parseControlOptions(list: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new UsageError(`--control-option must be KEY=VALUE, found '${kv}'`);
    const key = kv.slice(0, i);
    if (Object.hasOwn(out, key)) throw new UsageError(`--control-option ${key} is given twice`);
    out[key] = kv.slice(i + 1);
  }
  return out;
}

const DECIMAL = /^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/;

/**
 * Check --control-option keys against the control type's declared options (unknown keys are refused,
 * never ignored) and the values against the type of each option's default: a number default takes a
 * decimal number, a boolean default true/false/1/0, 'auto' either 'auto' or a number.
 */
function checkControlOptions(type: ControlType, opts: Record<string, string>): void {
  for (const [key, value] of Object.entries(opts)) {
    const info = type.options.find((o) => o.name === key);
    if (!info) {
      const known = type.options.map((o) => o.name);
      throw new UsageError(`--control-option ${key}: control type '${type.name}' has no option '${key}' ` +
        `(${known.length > 0 ? `its options: ${known.join(', ')}` : 'it takes no options'}; see \`cnx control-types\`)`);
    }
    const d = info.default;
    const ok = typeof d === 'number' ? DECIMAL.test(value)
      : typeof d === 'boolean' ? ['true', 'false', '1', '0'].includes(value)
        : d === 'auto' ? value === 'auto' || DECIMAL.test(value) : true;
    if (!ok) {
      const want = typeof d === 'number' ? 'a number' : typeof d === 'boolean' ? 'true or false' : "'auto' or a number";
      throw new UsageError(`--control-option ${key} must be ${want}, found '${value}'`);
    }
  }
}

/** The largest output side, as --width / --height allow; the size taken from an image obeys it too. */
const MAX_SIDE = MAX_OUTPUT_SIDE;

/**
 * Read an image file given by `flag`, refusing it from its header (before decoding) when it is over the
 * decoding limits or when the output size would be taken from it and exceed MAX_SIDE.
 */
function readInputImage(flag: string, path: string, sizeFromImage: { width: boolean; height: boolean }): ImageArray {
  const bytes = readImageBytes(path);
  let header: ImageHeader;
  try {
    header = readImageHeader(bytes);
  } catch {
    return decodeImage(bytes, path); // throws, naming the file and the format
  }
  const round = (x: number) => Math.floor(x / 8) * 8;
  for (const [k, v] of [['width', header.width], ['height', header.height]] as const) {
    if (sizeFromImage[k] && round(v) > MAX_SIDE) {
      throw new UsageError(`${flag} ${path} is ${header.width}x${header.height}: the output ${k} would be taken from it (${round(v)}), ` +
        `over the ${MAX_SIDE} limit of --${k}; pass --width and --height (the image is resized to them)`);
    }
  }
  return decodeImage(bytes, path);
}

/** Run `cnx generate`; returns the process exit status. */
export async function runGenerate(argv: readonly string[], io: CommandIO): Promise<number> {
  const { values: v, positional, given } = parseOptions(argv, GENERATE_OPTIONS);
  if (v['help']) { io.stdout.write(generateHelp() + '\n'); return 0; }
  if (positional.length > 0) throw new UsageError(`unexpected argument '${positional[0]}' (options start with --; quote a prompt with spaces)`);
  const str = (k: string) => v[k] as string | undefined;
  const num = (k: string) => v[k] as number | undefined;

  // Validate everything that can be checked before loading any model: usage errors (exit 2) name the flag.
  const scheduler = str('scheduler')!;
  if (!isSchedulerName(scheduler)) {
    throw new UsageError(`unknown scheduler '${scheduler}' (known: ${Object.keys(SCHEDULER_NAMES).join(', ')})`);
  }
  for (const k of ['width', 'height'] as const) {
    const x = num(k);
    if (x !== undefined && x % 8 !== 0) throw new UsageError(`--${k} must be a multiple of 8 in [8, ${MAX_SIDE}], found ${x}`);
  }
  const backendName = str('backend')!;
  if (str('adapter') !== undefined && backendName !== 'webgpu') throw new UsageError(`--adapter chooses a WebGPU adapter: it needs --backend webgpu (found --backend ${backendName})`);
  const model = str('model');
  if (model !== undefined && (!existsSync(model) || !statSync(model).isDirectory())) {
    throw new UsageError(`--model: folder ${model} ${existsSync(model) ? 'is a file, not a folder' : 'does not exist'} (expected a Stable Diffusion diffusers folder: model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)`);
  }
  const controlImagePath = str('control-image');
  if (str('controlnext') && str('controlnet')) throw new UsageError('give --controlnext FILE (ControlNeXt) or --controlnet DIR (ControlNet), not both');
  if (model !== undefined && controlImagePath && !str('controlnext') && !str('controlnet')) {
    throw new UsageError('--control-image needs a control model: --controlnext FILE (ControlNeXt module) or --controlnet DIR');
  }
  if (!controlImagePath && (str('controlnext') || str('controlnet'))) {
    throw new UsageError(`--${str('controlnext') ? 'controlnext' : 'controlnet'} needs a control image: --control-image FILE`);
  }
  if (str('variant') && !str('controlnext')) throw new UsageError('--variant names the release of a ControlNeXt module: give --controlnext FILE');
  if (model === undefined && (str('controlnext') || str('controlnet') || str('controlnext-unet'))) {
    throw new UsageError('--controlnext / --controlnext-unet / --controlnet need --model (the base Stable Diffusion folder)');
  }
  for (const k of ['controlnext', 'controlnext-unet', 'controlnet'] as const) {
    const p = str(k);
    if (p !== undefined && !existsSync(p)) throw new UsageError(`--${k}: ${p} does not exist`);
  }
  if (!controlImagePath) {
    for (const k of ['control-type', 'control-option', 'control-scale'] as const) {
      if (given.has(k)) throw new UsageError(`--${k} applies to a control image: give --control-image FILE`);
    }
  }
  if (model === undefined && v['fp16']) throw new UsageError('--fp16 chooses the .fp16 weight files of --model: it needs --model');
  const loras = ((v['lora'] as string[] | undefined) ?? []).map(parseLora);
  if (model === undefined && loras.length > 0) throw new UsageError('--lora needs --model (a LoRA is trained for a real model, not the random tiny one)');
  const initImagePath = str('init-image');
  const steps = num('steps')!;
  // diffusers get_timesteps: int(steps * strength) steps run (the family's default strength is checked after loading).
  const strengthLeavesNoStep = (strength: number) => Math.floor(steps * strength) < 1;
  const noStep = (strength: number, flag: string) =>
    new UsageError(`${flag} ${strength} with --steps ${steps} runs no step (floor(steps x strength) = 0): raise --strength or --steps`);
  if (initImagePath) {
    const strength = num('strength');
    if (strength !== undefined && strengthLeavesNoStep(strength)) throw noStep(strength, '--strength');
  } else if (given.has('strength')) {
    throw new UsageError('--strength applies to image-to-image: give --init-image FILE');
  }
  const outputs = outputPaths(str('output')!, num('num-images')!);
  checkOutputPaths(outputs);
  const controlOpts = parseControlOptions(v['control-option'] as string[] | undefined);
  const registry = await controlTypeRegistry((v['control-type-dir'] as string[] | undefined) ?? [])
    .catch((e: Error) => { throw new UsageError(`--control-type-dir: ${e.message}`); });
  const controlType = (() => {
    try { return registry.get(str('control-type')!); } catch (e) { throw new UsageError(`--control-type: ${(e as Error).message}`); }
  })();
  checkControlOptions(controlType, controlOpts);
  // Images are read before the (slow) model load, so a bad file fails fast; their declared size is
  // checked from the header before decoding. The init image sets the output size when --width / --height
  // do not, so its size is capped here; the control image's is checked after loading, where it is known
  // whether the size comes from it (a model without sample_size).
  const sizeFromImage = { width: num('width') === undefined, height: num('height') === undefined };
  const controlImage = controlImagePath ? readInputImage('--control-image', controlImagePath, { width: false, height: false }) : undefined;
  const initImage = initImagePath ? readInputImage('--init-image', initImagePath, sizeFromImage) : undefined;

  const backend: Backend = await createBackend(backendName, { adapter: str('adapter') });
  io.stderr.write(`backend: ${backend.description}\n`);
  // Slow adapters compile the first step's shaders for minutes: say so instead of sitting silent.
  const stopCompileProgress = watchCompiles(backend, compileProgressPrinter(io.stderr));
  let pipe: DiffusionPipeline | undefined;
  const owned: Tensor[] = [];
  try {
    let defaultSize: [number, number] | undefined;
    let sdxl = false;
    if (model === undefined) {
      io.stderr.write('NOTE: no --model given: running the tiny built-in model with RANDOM weights. The output is noise from random weights, not a picture.\n');
      pipe = tinyPipeline(backend, { scheduler, control: controlImage !== undefined });
      defaultSize = [TINY_IMAGE_SIZE, TINY_IMAGE_SIZE];
    } else {
      const loaded = loadPipeline(model, backend, {
        scheduler, prefer: v['fp16'] ? 'fp16' : 'fp32', controlnext: str('controlnext'), controlnextUnet: str('controlnext-unet'),
        variant: str('variant') as VariantName | undefined, controlnet: str('controlnet'), loras,
      });
      pipe = loaded.pipeline;
      defaultSize = pipe.defaultImageSize;
      sdxl = loaded.modelIndex.family === 'sdxl';
      io.stderr.write(`model: ${loaded.modelIndex.family === 'sdxl' ? 'SDXL' : 'Stable Diffusion'} (${loaded.modelIndex.evidence})\n`);
      if (loaded.variant) io.stderr.write(`controlnext: variant ${loaded.variant.name} (${loaded.variant.evidence})\n`);
      if (loaded.partialUnet) {
        const p = loaded.partialUnet;
        io.stderr.write(`controlnext unet: ${p.mode === 'add' ? 'added deltas to' : 'replaced'} ${p.keys.length} tensors from ${p.source} (${p.reason})\n`);
      }
      for (const l of loaded.loras) {
        io.stderr.write(`lora: ${l.source} merged into ${l.merged.length} weights (scale ${l.scale})` +
          (l.skipped.length ? `; skipped ${l.skipped.map((s) => `${s.count} ${s.target} layers`).join(', ')}` : '') + '\n');
      }
    }
    // What needs the loaded model: the scheduler's training steps, the VAE's scale factor.
    const trainSteps = pipe.scheduler.numTrainTimesteps;
    if (steps > trainSteps) throw new UsageError(`--steps must be at most the model's num_train_timesteps (${trainSteps}), found ${steps}`);
    // Output size: explicit, else (image-to-image) the init image rounded down to a multiple of 8, else the
    // UNet's sample_size x vae_scale_factor (diffusers' default), else the control image's.
    const f = pipe.vaeScaleFactor;
    for (const k of ['width', 'height'] as const) {
      const x = num(k);
      if (x !== undefined && x % f !== 0) throw new UsageError(`--${k} must be a multiple of ${f} (this model's VAE scale factor), found ${x}`);
    }
    // The family's default img2img strength (diffusers: 0.8; SDXL 0.3) must leave a step too.
    const defaultStrength = sdxl ? 0.3 : 0.8;
    if (initImage && num('strength') === undefined && strengthLeavesNoStep(defaultStrength)) throw noStep(defaultStrength, 'the default strength');
    const round = (x: number) => Math.max(f, Math.floor(x / f) * f);
    const ref = initImage ?? (defaultSize ? undefined : controlImage);
    // A size taken from the control image obeys the --width / --height cap (the init image's was checked from its header).
    if (ref && ref === controlImage) {
      const [h, w] = [round(ref.shape[0]!), round(ref.shape[1]!)];
      if ((num('height') === undefined && h > MAX_SIDE) || (num('width') === undefined && w > MAX_SIDE)) {
        throw new UsageError(`--control-image is ${ref.shape[1]}x${ref.shape[0]} and this model has no sample_size, so the output size would be taken from it ` +
          `(${w}x${h}), over the ${MAX_SIDE} limit of --width / --height; pass --width and --height (the image is resized to them)`);
      }
    }
    const height = num('height') ?? (ref ? round(ref.shape[0]!) : defaultSize?.[0]);
    const width = num('width') ?? (ref ? round(ref.shape[1]!) : defaultSize?.[1]);
    let controlTensor: Tensor | undefined;
    if (controlImage) {
      const h = height ?? round(controlImage.shape[0]!), w = width ?? round(controlImage.shape[1]!);
      controlTensor = await controlType.prepare(toRgbImage(resizeImage(controlImage, h, w)), backend, controlOpts);
      owned.push(controlTensor);
    }
    let initTensor: Tensor | undefined;
    if (initImage) {
      const h = height ?? round(initImage.shape[0]!), w = width ?? round(initImage.shape[1]!);
      initTensor = imageToTensor(resizeImage(initImage, h, w), backend);
      owned.push(initTensor);
    }
    const seed = num('seed') ?? Math.floor(Math.random() * 2 ** 32);
    const progress = createProgress(io.stderr);
    const result = await pipe.generate({
      prompt: str('prompt')!, negativePrompt: str('negative-prompt'), numImagesPerPrompt: num('num-images'),
      height, width, numInferenceSteps: num('steps'), guidanceScale: num('guidance'), guidanceRescale: num('guidance-rescale'), seed,
      controlImage: controlTensor, controlScale: num('control-scale'), initImage: initTensor, strength: num('strength'),
      observer: { onStep: (s) => progress.update(s.index + 1, s.total) }, checkFinite: v['check-finite'] as boolean,
    }).catch((e: unknown) => {
      progress.finish();
      // The library's hint names its option; the CLI names its flag.
      if (e instanceof NonFiniteError) throw new Error(`${e.subject} ${NON_FINITE_CONSEQUENCE} (--no-check-finite skips this check)`);
      throw e;
    });
    const seconds = progress.finish();
    const images = await tensorToImages(result.images);
    const [H, W] = [result.images.shape[2]!, result.images.shape[3]!];
    result.images.dispose();
    result.latents.dispose();
    images.forEach((img, i) => {
      writeImage(outputs[i]!, img);
      io.stdout.write(`wrote ${outputs[i]} ${W}x${H} seed=${seed} steps=${result.timesteps.length} scheduler=${scheduler} seconds=${seconds.toFixed(2)}\n`);
    });
    return 0;
  } finally {
    stopCompileProgress();
    owned.forEach((t) => t.dispose());
    pipe?.dispose();
    backend.destroy();
  }
}
