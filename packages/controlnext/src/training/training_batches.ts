// Training data as the ControlNeXt recipe feeds it (issue 12; ControlNeXt-SD1.5-Training/train_controlnext.py,
// make_train_dataset + collate_fn + the loop's first lines). Browser-safe: reading dataset files is in
// node/fill50k_dataset.ts; this file takes examples as images.
//
// Per example, as the script's transforms on a PIL image:
//   target:  Resize(resolution, BILINEAR) -> CenterCrop(resolution) -> ToTensor -> Normalize([0.5], [0.5])  ([-1, 1])
//   control: Resize(resolution, BILINEAR) -> CenterCrop(resolution) -> ToTensor                             ([0, 1])
// Resize with an int resizes the shorter side to `resolution` (long side int(resolution * long / short));
// PIL's BILINEAR is a triangle filter widened by the scale when shrinking (antialiased), run horizontally then
// vertically on 8-bit pixels with 22-bit fixed-point weights, rounding to 8 bits after each pass. pilResize
// below does exactly that (images are quantised to 8 bits first, as a PIL image is), so it matches
// torchvision on PIL images bit for bit. CenterCrop's offsets are int(round((size - crop) / 2)) with
// Python's round-half-to-even.
//
// The cache (TrainingDataCache.build) runs the frozen encoders ONCE: the VAE posterior (mean and std) of
// every target and the text encoder's last hidden state of every distinct prompt (plus the empty-prompt
// text). Batches are then assembled on the host and uploaded:
//   latents             [B, 4, R/8, R/8]  (mean + std * eps) * scaling_factor  (latent_dist.sample(), drawn per
//                                          batch as the script draws per step; 'mean' option: the mode)
//   encoderHiddenStates [B, 77, D]        the prompt's, or with probability proportionEmptyPrompts the
//                                          empty-prompt text's ("PBH" in train_controlnext.py; "" in diffusers'
//                                          train_controlnet.py), drawn per batch as the script draws per access
//   controlImage        [B, 3, R, R]      in [0, 1]
// Order: torch DataLoader(shuffle=True, drop_last=False): each epoch a fresh permutation, the last batch
// shorter unless dropLast. Everything random is a function of (seed, epoch) for the permutation and
// (seed, step) for the per-batch draws, so batch(step) is random access and a resumed run sees exactly
// the batches an uninterrupted one would. Generator: @cnx/unet's RandomGenerator (xoshiro128**, Box-Muller).

import ndarray from 'ndarray';
import { noGrad, type Backend, type Tensor } from '@cnx/tensor';
import { RandomGenerator, type DiagonalGaussian } from '@cnx/unet';
import type { ImageArray } from '../images.js';
import type { PromptEncoder } from '../pipelines/pipeline.js';
import { imageToRgbBytes, rgbBytesToImage, shapeSample, type ShapeDatasetOptions } from './shapes.js';

// ---------------------------------------------------------------------------------------------------
// Transforms

/** PIL's bilinear filter (Resample.c bilinear_filter). */
function triangle(x: number): number {
  const a = Math.abs(x);
  return a < 1 ? 1 - a : 0;
}

const PRECISION_BITS = 32 - 8 - 2; // Resample.c: fixed-point weights for 8-bit images

/** Pillow's precompute_coeffs for one axis: per output index, the first input index and integer weights. */
function resampleCoefficients(inSize: number, outSize: number): Array<{ start: number; weights: number[] }> {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 1 * filterscale; // bilinear support 1.0, widened when shrinking
  const out: Array<{ start: number; weights: number[] }> = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const k: number[] = [];
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = triangle((x + xmin - center + 0.5) * ss);
      k.push(w);
      ww += w;
    }
    const weights = k.map((w) => {
      const v = ww === 0 ? 0 : w / ww;
      return v < 0 ? Math.trunc(-0.5 + v * 2 ** PRECISION_BITS) : Math.trunc(0.5 + v * 2 ** PRECISION_BITS);
    });
    out.push({ start: xmin, weights });
  }
  return out;
}

/** One fixed-point pass along an axis of an 8-bit [H, W, 3] buffer. */
function resamplePass(src: Uint8Array, H: number, W: number, outSize: number, horizontal: boolean): Uint8Array {
  const coeffs = resampleCoefficients(horizontal ? W : H, outSize);
  const oH = horizontal ? H : outSize, oW = horizontal ? outSize : W;
  const dst = new Uint8Array(oH * oW * 3);
  const half = 2 ** (PRECISION_BITS - 1), one = 2 ** PRECISION_BITS;
  for (let y = 0; y < oH; y++) {
    for (let x = 0; x < oW; x++) {
      const { start, weights } = coeffs[horizontal ? x : y]!;
      for (let c = 0; c < 3; c++) {
        let ss = half;
        for (let k = 0; k < weights.length; k++) {
          const i = horizontal ? (y * W + start + k) * 3 + c : ((start + k) * W + x) * 3 + c;
          ss += src[i]! * weights[k]!;
        }
        dst[(y * oW + x) * 3 + c] = Math.min(255, Math.max(0, Math.floor(ss / one)));
      }
    }
  }
  return dst;
}

/** Image ndarray [H, W, 3] in [0, 1] -> 8-bit RGB bytes (round half up, clamped; NaN -> 0), as a PIL image holds it. */
function toBytes(image: ImageArray): Uint8Array {
  const [H, W, C] = image.shape as [number, number, number];
  if (image.shape.length !== 3 || C !== 3) throw new Error(`expected an RGB image ndarray [H, W, 3], found [${image.shape.join(', ')}]`);
  const out = new Uint8Array(H * W * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < 3; c++) {
        const v = image.get(y, x, c);
        out[(y * W + x) * 3 + c] = Math.floor(Math.min(Math.max(Number.isNaN(v) ? 0 : v, 0), 1) * 255 + 0.5);
      }
    }
  }
  return out;
}

/**
 * PIL Image.resize((width, height), BILINEAR) of an RGB image: 8-bit, horizontal pass then vertical,
 * each skipped when that side keeps its size (see the file header). Values come back in [0, 1] (k / 255).
 */
export function pilResize(image: ImageArray, height: number, width: number): ImageArray {
  const [H, W] = image.shape as [number, number, number];
  if (!(Number.isInteger(height) && Number.isInteger(width) && height >= 1 && width >= 1)) throw new Error(`pilResize: output size must be positive integers, found ${width}x${height}`);
  let buf = toBytes(image), h = H, w = W;
  if (width !== W) { buf = resamplePass(buf, h, w, width, true); w = width; }
  if (height !== H) { buf = resamplePass(buf, h, w, height, false); h = height; }
  return rgbBytesToImage(buf, h, w);
}

/** torchvision Resize(size) with an int: the output (height, width) with the shorter side = size. */
export function shorterSideSize(height: number, width: number, size: number): [number, number] {
  if (!Number.isInteger(size) || size < 1) throw new Error(`resize: size must be a positive integer, found ${size}`);
  const short = Math.min(height, width), long = Math.max(height, width);
  const newLong = Math.trunc((size * long) / short);
  return width <= height ? [newLong, size] : [size, newLong];
}

/** Python's round(): half to even. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v), d = v - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}

/** torchvision CenterCrop (no padding: the image must be at least the crop size). */
export function centerCrop(image: ImageArray, height: number, width = height): ImageArray {
  const [H, W] = image.shape as [number, number, number];
  if (H < height || W < width) throw new Error(`centerCrop: the image is ${W}x${H}, smaller than the ${width}x${height} crop`);
  const top = roundHalfEven((H - height) / 2), left = roundHalfEven((W - width) / 2);
  return image.hi(top + height, left + width, 3).lo(top, left, 0);
}

/** Resize(resolution, BILINEAR) + CenterCrop(resolution): the script's geometry for targets and controls. */
export function resizeAndCrop(image: ImageArray, resolution: number): ImageArray {
  const [H, W] = image.shape as [number, number, number];
  const [h, w] = shorterSideSize(H, W, resolution);
  return centerCrop(pilResize(image, h, w), resolution);
}

/** [H, W, 3] in [0, 1] -> planar [3, H, W] floats, optionally Normalize([0.5], [0.5]) to [-1, 1]. */
function toPlanar(image: ImageArray, normalize: boolean, out = new Float32Array(3 * image.shape[0]! * image.shape[1]!), offset = 0): Float32Array {
  const [H, W] = image.shape as [number, number, number];
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const v = image.get(y, x, c);
        out[offset + (c * H + y) * W + x] = normalize ? (v - 0.5) / 0.5 : v;
      }
    }
  }
  return out;
}

/** The target transform: resize + crop + ToTensor + Normalize([0.5], [0.5]) -> planar [3, R, R] in [-1, 1]. */
export function targetPixels(image: ImageArray, resolution: number): Float32Array {
  return toPlanar(resizeAndCrop(image, resolution), true);
}

/** The conditioning transform: resize + crop + ToTensor (no normalisation) -> planar [3, R, R] in [0, 1]. */
export function controlPixels(image: ImageArray, resolution: number): Float32Array {
  return toPlanar(resizeAndCrop(image, resolution), false);
}

// ---------------------------------------------------------------------------------------------------
// Examples

/** One training example: images [H, W, 3] in [0, 1] at any size (the transforms bring them to the resolution). */
export interface TrainingExample {
  prompt: string;
  control: ImageArray;
  target: ImageArray;
}

/** Random-access examples: node/fill50k_dataset.ts's Fill50kDataset, shapesExampleSource, or an array wrapper. */
export interface TrainingExampleSource {
  readonly length: number;
  get(index: number): TrainingExample | Promise<TrainingExample>;
}

/** Samples [start, start + count) of the synthetic shapes dataset as training examples (nothing on disk). */
export function shapesExampleSource(count: number, opts: ShapeDatasetOptions, start = 0): TrainingExampleSource {
  if (!Number.isInteger(count) || count < 1) throw new Error(`shapesExampleSource: count must be an integer >= 1, found ${count}`);
  shapeSample(start, opts); // checks the options now
  return {
    length: count,
    get(index: number): TrainingExample {
      if (!Number.isInteger(index) || index < 0 || index >= count) throw new Error(`shapesExampleSource: index ${index} out of range [0, ${count})`);
      const s = shapeSample(start + index, opts);
      return { prompt: s.prompt, control: rgbBytesToImage(s.control, s.size, s.size), target: rgbBytesToImage(s.target, s.size, s.size) };
    },
  };
}

/** Examples held in memory as a source. */
export function arrayExampleSource(examples: readonly TrainingExample[]): TrainingExampleSource {
  return { length: examples.length, get: (i) => { const e = examples[i]; if (!e) throw new Error(`example ${i} out of range [0, ${examples.length})`); return e; } };
}

// ---------------------------------------------------------------------------------------------------
// Cache and batches

/** What the cache needs of the VAE (AutoencoderKL has both). */
export interface LatentEncoder {
  encode(image: Tensor): DiagonalGaussian;
  readonly scalingFactor: number;
}

export interface TrainingDataOptions {
  backend: Backend;
  vae: LatentEncoder;
  /** The SD prompt encoder (ClipPromptEncoder: last_hidden_state [B, 77, D]). */
  textEncoder: Pick<PromptEncoder, 'encode'>;
  /** Training resolution in pixels, a multiple of 8 (the script's check). */
  resolution: number;
  batchSize: number;
  seed: number;
  /** Probability of replacing a prompt by emptyPromptText, per sample per batch (default 0). */
  proportionEmptyPrompts?: number;
  /** The replacement prompt (default "PBH", as train_controlnext.py; diffusers' train_controlnet.py uses ""). */
  emptyPromptText?: string;
  /** 'sample' (default: latent_dist.sample() drawn per batch, as the script) or 'mean' (latent_dist.mode()). */
  latents?: 'sample' | 'mean';
  /** Drop the last short batch of each epoch (default false: DataLoader's default). */
  dropLast?: boolean;
  /** Examples per encoder call while building the cache (default 4). */
  encodeBatchSize?: number;
  /** Refuse to build a cache larger than this many bytes of host memory (default 2 GiB). */
  maxCacheBytes?: number;
  /** Called after each encoded group with (examples done, total). */
  onProgress?: (done: number, total: number) => void;
}

/** One batch: tensors on the backend (the caller disposes them, e.g. disposeTrainingBatch), plus where it came from. */
export interface TrainingBatchData {
  /** [B, C_latent, R/8, R/8] */
  latents: Tensor;
  /** [B, L, D] */
  encoderHiddenStates: Tensor;
  /** [B, 3, R, R] in [0, 1] */
  controlImage: Tensor;
  /** The 0-based step, epoch and the examples' indices in the source. */
  step: number;
  epoch: number;
  indices: number[];
  /** The prompts used (emptyPromptText where replaced). */
  prompts: string[];
}

/** Dispose a batch's tensors. */
export function disposeTrainingBatch(b: Pick<TrainingBatchData, 'latents' | 'encoderHiddenStates' | 'controlImage'>): void {
  b.latents.dispose();
  b.encoderHiddenStates.dispose();
  b.controlImage.dispose();
}

/** FNV-1a + finaliser over 32-bit words: seeds of the independent streams (epoch permutations, per-step draws). */
export function mixSeed(...words: number[]): number {
  let h = 0x811c9dc5;
  for (const v of words) {
    for (let k = 0; k < 4; k++) {
      h ^= (v >>> (8 * k)) & 0xff;
      h = Math.imul(h, 0x01000193);
    }
  }
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Stream ids of mixSeed: 1, 2 here; 3 is the trainer's noise and timesteps (controlnext_trainer.ts). */
const STREAM_PERMUTATION = 1, STREAM_BATCH = 2;

/**
 * The encoded training set on the host: per example the latent posterior (mean, std) and control pixels,
 * per distinct prompt its hidden states; batches assembled and uploaded on request (see the file header).
 */
export class TrainingDataCache {
  private permutationEpoch = -1;
  private permutation: number[] = [];

  private constructor(
    private readonly opts: TrainingDataOptions,
    readonly length: number,
    /** [C_latent, h, w] of one example's latents. */
    readonly latentShape: readonly [number, number, number],
    /** [L, D] of one prompt's hidden states. */
    readonly promptShape: readonly [number, number],
    private readonly means: Float32Array[],
    private readonly stds: Float32Array[],
    private readonly controls: Uint8Array[],
    private readonly promptOf: string[],
    private readonly promptStates: Map<string, Float32Array>,
    readonly scalingFactor: number,
  ) {}

  /** Encode every example of `source` once (VAE posterior of the target, text states of each distinct prompt). */
  static async build(source: TrainingExampleSource, opts: TrainingDataOptions): Promise<TrainingDataCache> {
    const R = opts.resolution;
    if (!Number.isInteger(R) || R < 8 || R % 8 !== 0) throw new Error(`training data: resolution must be a positive multiple of 8 (the script's check), found ${R}`);
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new Error(`training data: batchSize must be an integer >= 1, found ${opts.batchSize}`);
    if (!Number.isInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffffffff) throw new Error(`training data: seed must be an integer in [0, 2^32), found ${opts.seed}`);
    const p = opts.proportionEmptyPrompts ?? 0;
    if (!(p >= 0 && p <= 1)) throw new Error(`training data: proportionEmptyPrompts must be in [0, 1], found ${p}`);
    const mode = opts.latents ?? 'sample';
    if (mode !== 'sample' && mode !== 'mean') throw new Error(`training data: latents must be 'sample' or 'mean', found '${String(mode)}'`);
    const N = source.length;
    if (!Number.isInteger(N) || N < 1) throw new Error(`training data: the dataset has no examples (length ${N})`);
    if (opts.dropLast && N < opts.batchSize) throw new Error(`training data: dropLast with ${N} examples and batch size ${opts.batchSize} leaves no batch`);
    const group = opts.encodeBatchSize ?? 4;
    if (!Number.isInteger(group) || group < 1) throw new Error(`training data: encodeBatchSize must be an integer >= 1, found ${group}`);
    const { backend, vae, textEncoder } = opts;

    // Controls are kept as the 8-bit pixels of the resized, cropped image: ToTensor's k / 255 is recomputed
    // exactly per batch, at a quarter of the memory.
    const means: Float32Array[] = [], stds: Float32Array[] = [], controls: Uint8Array[] = [], promptOf: string[] = [];
    let latentShape: [number, number, number] | undefined;
    const maxBytes = opts.maxCacheBytes ?? 2 * 2 ** 30;
    const pixels = 3 * R * R;
    for (let g = 0; g < N; g += group) {
      const n = Math.min(group, N - g);
      const targets = new Float32Array(n * pixels);
      for (let k = 0; k < n; k++) {
        const ex = await source.get(g + k);
        if (typeof ex.prompt !== 'string') throw new Error(`training data: example ${g + k} has no prompt string`);
        toPlanar(resizeAndCrop(ex.target, R), true, targets, k * pixels);
        controls.push(imageToRgbBytes(resizeAndCrop(ex.control, R)));
        promptOf.push(ex.prompt);
      }
      const x = backend.fromRaw(targets, [n, 3, R, R]);
      const post = noGrad(() => vae.encode(x));
      x.dispose();
      try {
        const [, C, h, w] = post.mean.shape as [number, number, number, number];
        latentShape ??= [C, h, w];
        if (g === 0) {
          // Refuse a cache that would not fit before encoding the rest (latent mean + std, control pixels, prompt states later).
          const est = N * (2 * C * h * w * 4 + pixels);
          if (est > maxBytes) throw new Error(`training data: caching ${N} examples at ${R}x${R} needs about ${(est / 2 ** 30).toFixed(2)} GiB of host memory, over the ${(maxBytes / 2 ** 30).toFixed(2)} GiB limit (maxCacheBytes); use fewer examples or a lower resolution`);
        }
        const m = await post.mean.data(), s = await post.std.data();
        const per = C * h * w;
        for (let k = 0; k < n; k++) {
          means.push(m.slice(k * per, (k + 1) * per));
          stds.push(s.slice(k * per, (k + 1) * per));
        }
      } finally {
        post.mean.dispose(); post.logvar.dispose(); post.std.dispose();
      }
      opts.onProgress?.(g + n, N);
      await new Promise<void>((r) => setTimeout(r, 0));
    }

    // Text states: each distinct prompt once (the empty-prompt text too when it can be drawn).
    const distinct = [...new Set(promptOf)];
    const emptyText = opts.emptyPromptText ?? 'PBH';
    if (p > 0 && !distinct.includes(emptyText)) distinct.push(emptyText);
    const promptStates = new Map<string, Float32Array>();
    let promptShape: [number, number] | undefined;
    for (let g = 0; g < distinct.length; g += group) {
      const batch = distinct.slice(g, g + group);
      const hs = noGrad(() => textEncoder.encode(batch));
      try {
        if (hs.rank !== 3 || hs.shape[0] !== batch.length) throw new Error(`training data: the text encoder returned ${hs.toString()} for ${batch.length} prompts (expected [${batch.length}, L, D])`);
        const [, L, D] = hs.shape as [number, number, number];
        if (!promptShape) {
          promptShape = [L, D];
          const [C, h, w] = latentShape!;
          const est = N * (2 * C * h * w * 4 + pixels) + distinct.length * L * D * 4;
          if (est > maxBytes) throw new Error(`training data: caching ${N} examples with ${distinct.length} distinct prompts needs about ${(est / 2 ** 30).toFixed(2)} GiB of host memory (prompt states ${L}x${D} each), over the ${(maxBytes / 2 ** 30).toFixed(2)} GiB limit (maxCacheBytes); use fewer examples`);
        }
        const d = await hs.data();
        batch.forEach((prompt, k) => promptStates.set(prompt, d.slice(k * L * D, (k + 1) * L * D)));
      } finally {
        hs.dispose();
      }
      await new Promise<void>((r) => setTimeout(r, 0));
    }
    return new TrainingDataCache(opts, N, latentShape!, promptShape!, means, stds, controls, promptOf, promptStates, vae.scalingFactor);
  }

  /** Batches per epoch (DataLoader: ceil(N / B), or floor with dropLast). */
  get batchesPerEpoch(): number {
    return this.opts.dropLast ? Math.floor(this.length / this.opts.batchSize) : Math.ceil(this.length / this.opts.batchSize);
  }

  /** The example order of `epoch` (a seeded permutation of 0..N-1). */
  epochOrder(epoch: number): number[] {
    if (epoch !== this.permutationEpoch) {
      const rng = new RandomGenerator(mixSeed(this.opts.seed, STREAM_PERMUTATION, epoch));
      const order = Array.from({ length: this.length }, (_, i) => i);
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor((rng.nextUint32() / 4294967296) * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      this.permutation = order;
      this.permutationEpoch = epoch;
    }
    return this.permutation;
  }

  /** The batch of training step `step` (0-based): a pure function of (seed, step) and the data. */
  batch(step: number): TrainingBatchData {
    if (!Number.isInteger(step) || step < 0) throw new Error(`training data: step must be an integer >= 0, found ${step}`);
    const per = this.batchesPerEpoch;
    const epoch = Math.floor(step / per), k = step % per;
    const B0 = this.opts.batchSize;
    const indices = this.epochOrder(epoch).slice(k * B0, (k + 1) * B0);
    const B = indices.length;
    const rng = new RandomGenerator(mixSeed(this.opts.seed, STREAM_BATCH, step));
    const p = this.opts.proportionEmptyPrompts ?? 0;
    const emptyText = this.opts.emptyPromptText ?? 'PBH';
    const [C, h, w] = this.latentShape, lat = C * h * w;
    const [L, D] = this.promptShape;
    const R = this.opts.resolution, pix = 3 * R * R;
    const latents = new Float32Array(B * lat), states = new Float32Array(B * L * D), control = new Float32Array(B * pix);
    const prompts: string[] = [];
    const sf = this.scalingFactor;
    indices.forEach((ix, b) => {
      // Per example, in order: one uniform (empty prompt or not), then its latent noise.
      const empty = rng.uniform() < p;
      const prompt = empty ? emptyText : this.promptOf[ix]!;
      prompts.push(prompt);
      states.set(this.promptStates.get(prompt)!, b * L * D);
      const mean = this.means[ix]!, std = this.stds[ix]!;
      if ((this.opts.latents ?? 'sample') === 'sample') {
        const eps = rng.normal(lat);
        for (let i = 0; i < lat; i++) latents[b * lat + i] = (mean[i]! + std[i]! * eps[i]!) * sf;
      } else {
        for (let i = 0; i < lat; i++) latents[b * lat + i] = mean[i]! * sf;
      }
      const bytes = this.controls[ix]!, o = b * pix, hw = R * R;
      // Interleaved [R, R, 3] bytes -> planar [3, R, R] floats k / 255 (ToTensor).
      for (let i = 0; i < hw; i++) for (let c = 0; c < 3; c++) control[o + c * hw + i] = bytes[3 * i + c]! / 255;
    });
    const be = this.opts.backend;
    return {
      latents: be.fromRaw(latents, [B, C, h, w]),
      encoderHiddenStates: be.fromRaw(states, [B, L, D]),
      controlImage: be.fromRaw(control, [B, 3, R, R]),
      step, epoch, indices, prompts,
    };
  }

  /** Batches for steps [startStep, startStep + steps) (default: forever), one at a time. */
  *batches(startStep = 0, steps = Infinity): Generator<TrainingBatchData> {
    for (let s = startStep; s < startStep + steps; s++) yield this.batch(s);
  }

  /** The cached hidden states [L, D] of a prompt (a copy), or undefined when it was not in the data. */
  promptState(prompt: string): Float32Array | undefined {
    return this.promptStates.get(prompt)?.slice();
  }

  /** Host bytes held. */
  get bytes(): number {
    let n = 0;
    for (const a of [...this.means, ...this.stds, ...this.controls, ...this.promptStates.values()]) n += a.byteLength;
    return n;
  }
}

/** Build an ndarray [H, W, 3] from a planar [3, H, W] buffer (for looking at transformed pixels). */
export function planarToImage(planar: Float32Array, height: number, width: number, denormalize = false): ImageArray {
  if (planar.length !== 3 * height * width) throw new Error(`planarToImage: expected 3x${height}x${width} = ${3 * height * width} values, found ${planar.length}`);
  const out = new Float32Array(planar.length);
  for (let c = 0; c < 3; c++) for (let i = 0; i < height * width; i++) out[3 * i + c] = denormalize ? planar[c * height * width + i]! * 0.5 + 0.5 : planar[c * height * width + i]!;
  return ndarray(out, [height, width, 3]);
}
