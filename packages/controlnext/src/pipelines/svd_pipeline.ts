// Stable Video Diffusion with ControlNeXt-SVD: a reference image plus a sequence of pose frames in, video
// frames out. The released pipelines (ControlNeXt-SVD{,-v2}/pipeline/pipeline_stable_video_diffusion_controlnext.py,
// StableVideoDiffusionPipelineControlNeXt; spec 6.3 and 7.3), step by step:
//
//  image conditioning   CLIP image_embeds of the reference (clip_image_processor.ts preprocessing) -> [2, 1, D]
//                       with ZEROS for the unconditional half; VAE posterior MODE of (2 x image - 1 +
//                       noise_aug_strength x N(0, 1)), NOT scaled, zeros for uncond, repeated over frames and
//                       concatenated on channels with the scaled noisy latents (UNet in_channels 8)
//  added time ids       the pipelines compute [fps - 1, motion_bucket_id, noise_aug_strength] and then
//                       OVERWRITE them with the fixed [6, 128, 0.02] ('fixed', the default; 'arguments' keeps
//                       diffusers' StableVideoDiffusionPipeline values)
//  control frames       preprocess (2x - 1) then (x + 1) / 2, i.e. [0, 1] with the round trip's float rounding
//  scheduler            Euler, SVD-xt config (@cnx/unet schedulers/svd_scheduler.ts); latents x init_noise_sigma; guidance per
//                       frame linspace(min, max, frames_per_batch); CFG when max_guidance_scale >= 1
//  sliding windows      every step: for start in range(0, F - overlap, frames_per_batch - overlap) (clamped to
//                       F - frames_per_batch): reset the scheduler's step index, window latents, the window's
//                       control frames (v2: frame 0 replaced by the global frame 0, the reference pose), the
//                       module, the UNet with the injection, CFG, scheduler.step; the window at start 0 adds all
//                       its frames, every later window all but its first; then divide by the per-frame counts
//  decode               latents / 0.18215, temporal VAE in chunks of decode_chunk_size frames, (x / 2 + 0.5)
//                       clamped to [0, 1]
//
// Ours (controlPath 'ours', the default): the control module runs once per window and step on the window's
// F frames (not on the CFG-doubled batch), with its timestep-independent prefix prepared once per window
// for the whole generation; the injection broadcasts the [F, ...] map (controlnext/controlnext_svd.ts). 'reference'
// runs the module as the repo does (doubled batch, whole module every step): same result, more work.
// Memory: each step runs inside a scope; the prefix cache holds one PreparedControl per window (cachePrefix).

import { keep, ops, scopeAsync, type Backend, type Tensor } from '@cnx/tensor';
import {
  clamp, clipImagePreprocess, createSvdScheduler, RandomGenerator, type AutoencoderKLTemporalDecoder, type CLIPVisionModelWithProjection,
  type NoiseSource, type SchedulerConfigJson, type UNetSpatioTemporalConditionModel,
} from '@cnx/unet';
import type { PreparedControl } from '../controlnext/control_module.js';
import { CallQueue } from './call_queue.js';
import type { ControlNeXtSVD } from '../controlnext/controlnext_svd.js';

export interface SvdPipelineComponents {
  unet: UNetSpatioTemporalConditionModel;
  vae: AutoencoderKLTemporalDecoder;
  /** The CLIP image encoder; optional when every call passes imageEmbeds. */
  imageEncoder?: CLIPVisionModelWithProjection;
  controlnext?: ControlNeXtSVD;
  /** scheduler_config.json of the model folder (SVD-xt's is the default). */
  schedulerConfig?: SchedulerConfigJson;
}

/** A sliding window: frames [start, start + length) of the video. */
export interface FrameWindow {
  start: number;
  /** The first frame this window's result is added to (start, or start + 1 for every window but the first). */
  firstAdded: number;
}

/** The released pipelines' windows (see the header); an error when a frame would get no window. */
export function frameWindows(numFrames: number, framesPerBatch: number, overlap: number): FrameWindow[] {
  const fpb = Math.min(framesPerBatch, numFrames);
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= fpb) {
    throw new Error(`overlap must be an integer in [0, ${fpb - 1}] (below the ${fpb} frames per window), found ${overlap}`);
  }
  const out: FrameWindow[] = [];
  for (let s = 0; s < numFrames - overlap; s += fpb - overlap) {
    const start = s + fpb > numFrames ? numFrames - fpb : s;
    out.push({ start, firstAdded: start === 0 ? 0 : start + 1 });
  }
  const covered = new Array<boolean>(numFrames).fill(false);
  for (const w of out) for (let f = w.firstAdded; f < w.start + fpb; f++) covered[f] = true;
  const hole = covered.indexOf(false);
  if (hole >= 0) {
    throw new Error(`frames per window ${fpb} with overlap ${overlap} leave frame ${hole} of ${numFrames} without a window ` +
      `(the released pipeline adds every later window without its first frame); use overlap >= 1`);
  }
  return out;
}

/** torch.linspace(lo, hi, n) in float32. */
export function linspaceF32(lo: number, hi: number, n: number): Float32Array {
  if (n === 1) return Float32Array.of(lo);
  const step = (hi - lo) / (n - 1);
  return Float32Array.from({ length: n }, (_, i) => (i < n / 2 ? lo + step * i : hi - step * (n - 1 - i)));
}

export interface SvdProgress {
  phase: 'denoise' | 'decode';
  /** denoise: step (1-based) and steps; window (1-based) and windows. decode: frames done and total. */
  done: number;
  total: number;
  window?: number;
  windows?: number;
}

export interface SvdGenerateOptions {
  /** The reference image [1, 3, H, W] in [0, 1], at the output size (multiples of 8 x the UNet's size multiple). */
  image: Tensor;
  /** Precomputed CLIP image_embeds [1, D] instead of running the image encoder. */
  imageEmbeds?: Tensor;
  /** Pose frames [F, 3, H, W] in [0, 1] (required with a ControlNeXt module); F = the number of frames. */
  controlFrames?: Tensor;
  /** Frames to generate (default: the control frames' count, else the UNet's num_frames). */
  numFrames?: number;
  /** Default 25. */
  numInferenceSteps?: number;
  /** Per-frame guidance ramp; defaults 1 and 3 (diffusers); CFG runs when max >= 1. */
  minGuidanceScale?: number;
  maxGuidanceScale?: number;
  /** Sliding window length and overlap; defaults 14 and 4 (the v1 run script). */
  framesPerBatch?: number;
  overlap?: number;
  /** Conditioning (used for the time ids only with timeIds 'arguments'); defaults 7, 127, 0.02. */
  fps?: number;
  motionBucketId?: number;
  /** Noise added to the reference before VAE encoding (always used); default 0.02. */
  noiseAugStrength?: number;
  /** 'fixed' (default): [6, 128, 0.02] as both ControlNeXt-SVD pipelines; 'arguments': [fps - 1, motion bucket, noise aug]. */
  timeIds?: 'fixed' | 'arguments';
  /** VAE decode chunk (frames per decoder call); default the number of frames. */
  decodeChunkSize?: number;
  /** ControlNeXt strength multiplier (1 = the release behaviour). */
  controlScale?: number;
  /** 'ours' (default) or 'reference' (the repo's control-module path; for comparisons). */
  controlPath?: 'ours' | 'reference';
  /**
   * Ours: keep each window's prepared prefix for the whole generation (default true). false prepares it
   * per window and step instead (same result, more work, memory of one window's prefix only: about
   * 2 GB per 14-frame window at 576x1024 for v2).
   */
  cachePrefix?: boolean;
  seed?: number;
  generator?: NoiseSource;
  /** Initial latents [1, F, 4, h, w] (multiplied by init_noise_sigma) and the image noise [1, 3, H, W]. */
  latents?: Tensor;
  imageNoise?: Tensor;
  /** false: stop after denoising (output_type 'latent'). */
  decode?: boolean;
  onProgress?: (p: SvdProgress) => void;
  /** Named intermediates ('latents_init', 'unet_input', ... as the golden case's pipe.*), one call per value. */
  trace?: (name: string, value: Tensor) => void | Promise<void>;
}

export interface SvdGenerateResult {
  /** [F, 3, H, W] in [0, 1] (absent with decode: false). */
  frames?: Tensor;
  /** VAE output before the [0, 1] mapping, [1, F, 3, H, W]. */
  decoded?: Tensor;
  /** Final latents [1, F, 4, h, w]. */
  latents: Tensor;
  timesteps: number[];
  sigmas: number[];
}

function checkRange(name: string, v: number, lo: number, hi: number, integer = false): void {
  if (!Number.isFinite(v) || v < lo || v > hi || (integer && !Number.isInteger(v))) {
    throw new Error(`${name} must be ${integer ? 'an integer' : 'a number'} in [${lo}, ${hi}], found ${v}`);
  }
}

export class SvdControlNeXtPipeline {
  readonly backend: Backend;
  /** generate() calls run one at a time in call order (call_queue.ts), as the image pipelines' do. */
  private readonly calls = new CallQueue();

  constructor(readonly components: SvdPipelineComponents) {
    this.backend = components.unet.backend;
    const { unet, controlnext } = components;
    if (controlnext) {
      const want = unet.channelsAt(controlnext.site);
      if (controlnext.module.outChannels !== want) {
        throw new Error(`SVD pipeline: the ControlNeXt ${controlnext.variant.name} module outputs ${controlnext.module.outChannels} channels, ` +
          `the UNet has ${want} at ${controlnext.site}; the module does not belong to this UNet`);
      }
    }
  }

  get unet(): UNetSpatioTemporalConditionModel { return this.components.unet; }
  get vae(): AutoencoderKLTemporalDecoder { return this.components.vae; }

  /** Pixels per latent cell times the UNet's size multiple: output sides must be multiples of this. */
  get sizeMultiple(): number { return this.vae.downscale * this.unet.sizeMultiple; }

  /** CLIP image_embeds [1, D] of the reference image [1, 3, H, W] in [0, 1] (SVD's _encode_image). */
  async encodeImage(image: Tensor): Promise<Tensor> {
    const enc = this.components.imageEncoder;
    if (!enc) throw new Error('SVD pipeline: no image encoder; pass imageEmbeds');
    const data = await image.data();
    const pre = clipImagePreprocess({ data, shape: image.shape as [number, number, number, number] }, enc.config.image_size);
    const px = this.backend.fromRaw(pre.pixelValues.data, pre.pixelValues.shape);
    const o = enc.forward(px);
    [px, o.lastHiddenState, o.pooledOutput].forEach((t) => t.dispose());
    return o.imageEmbeds;
  }

  /** Run the pipeline. The caller owns the returned tensors. Concurrent calls wait their turn. */
  generate(o: SvdGenerateOptions): Promise<SvdGenerateResult> {
    return this.calls.run('SVD generate', () => this.generateNow(o));
  }

  private async generateNow(o: SvdGenerateOptions): Promise<SvdGenerateResult> {
    const { unet, vae, controlnext } = this.components;
    const backend = this.backend;
    const image = o.image;
    if (image.rank !== 4 || image.shape[0] !== 1 || image.shape[1] !== 3) {
      throw new Error(`SVD pipeline: expected the reference image [1, 3, H, W] in [0, 1], found ${image.toString()}`);
    }
    const [, , H, W] = image.shape as [number, number, number, number];
    const m = this.sizeMultiple;
    if (H % m !== 0 || W % m !== 0) throw new Error(`SVD pipeline: image size ${H}x${W} must be a multiple of ${m} (VAE x UNet downscaling)`);
    if (controlnext && !o.controlFrames) throw new Error(`SVD pipeline: this pipeline holds ControlNeXt ${controlnext.variant.name}; pass controlFrames`);
    if (!controlnext && o.controlFrames) throw new Error('SVD pipeline: controlFrames given but the pipeline has no ControlNeXt module');
    const cf = o.controlFrames;
    if (cf && (cf.rank !== 4 || cf.shape[1] !== 3 || cf.shape[2] !== H || cf.shape[3] !== W)) {
      throw new Error(`SVD pipeline: expected control frames [F, 3, ${H}, ${W}] (the reference image's size), found ${cf.toString()}`);
    }
    const F = o.numFrames ?? cf?.shape[0] ?? unet.config.num_frames;
    checkRange('numFrames', F, 1, 100000, true);
    if (cf && cf.shape[0] !== F) throw new Error(`SVD pipeline: ${cf.shape[0]} control frames for ${F} frames`);
    const steps = o.numInferenceSteps ?? 25;
    checkRange('numInferenceSteps', steps, 1, 1000, true);
    const gMin = o.minGuidanceScale ?? 1, gMax = o.maxGuidanceScale ?? 3;
    checkRange('minGuidanceScale', gMin, 0, 100);
    checkRange('maxGuidanceScale', gMax, 0, 100);
    const cfg = gMax >= 1; // the pipelines' do_classifier_free_guidance
    const fpb = Math.min(o.framesPerBatch ?? 14, F);
    checkRange('framesPerBatch', o.framesPerBatch ?? 14, 1, 100000, true);
    const windows = frameWindows(F, fpb, o.overlap ?? Math.min(4, fpb - 1));
    const fps = o.fps ?? 7, bucket = o.motionBucketId ?? 127, aug = o.noiseAugStrength ?? 0.02;
    checkRange('noiseAugStrength', aug, 0, 10);
    const chunk = o.decodeChunkSize ?? F;
    checkRange('decodeChunkSize', chunk, 1, 100000, true);
    const path = o.controlPath ?? 'ours';
    if (controlnext && o.controlScale !== undefined) {
      checkRange('controlScale', o.controlScale, 0, 10);
      controlnext.strength = o.controlScale;
    }
    const generator = o.generator ?? new RandomGenerator(o.seed ?? Math.floor(Math.random() * 2 ** 32));
    const scheduler = createSvdScheduler(this.components.schedulerConfig);
    const trace = o.trace;
    const h = H / vae.downscale, w = W / vae.downscale, L = vae.config.latent_channels;
    const latentShape = [1, F, L, h, w];
    if (unet.config.in_channels !== 2 * L) {
      throw new Error(`SVD pipeline: the UNet takes ${unet.config.in_channels} input channels, expected 2 x ${L} (noisy latents + image latents)`);
    }

    const prepared: PreparedControl[] = [];
    try {
      return await scopeAsync(async () => {
        // 1. Image conditioning: CLIP embeddings [2, 1, D] (uncond zeros first).
        const embeds = o.imageEmbeds ? o.imageEmbeds.contiguous() : await this.encodeImage(image);
        if (embeds.rank !== 2 || embeds.shape[0] !== 1) throw new Error(`SVD pipeline: expected imageEmbeds [1, D], found ${embeds.toString()}`);
        const e3 = embeds.reshape([1, 1, embeds.shape[1]!]);
        const zerosE = backend.zeros(e3.shape);
        const ctx = cfg ? ops.concat([zerosE, e3], 0) : e3;
        await trace?.('image_embeddings', ctx);

        // 2. Reference latents: posterior mode of the noise-augmented image, not scaled.
        const imageNoise = o.imageNoise ?? backend.fromRaw(generator.normal(image.size), image.shape);
        if (imageNoise.shape.join() !== image.shape.join()) throw new Error(`SVD pipeline: imageNoise must be ${image.toString()}, found ${imageNoise.toString()}`);
        const signed = ops.affine(image, 2, -1);
        const noisy = ops.linearCombination([[signed, 1], [imageNoise, aug]]);
        const post = vae.encode(noisy);
        const mode = post.mean; // [1, L, h, w]
        const zerosL = backend.zeros(mode.shape);
        const imgLat = cfg ? ops.concat([zerosL, mode], 0) : mode; // [N, L, h, w]
        // Repeated over the window's frames: every window sees the same [N, fpb, L, h, w].
        const N = imgLat.shape[0]!;
        const il5 = imgLat.reshape([N, 1, L, h, w]);
        const ile = il5.expand([N, fpb, L, h, w]);
        const imageLatentsWindow = ile.contiguous();
        if (trace) {
          const full = il5.expand([N, F, L, h, w]);
          await trace('image_latents', full);
        }

        // 3. Added time ids, [N, 3].
        const ids = o.timeIds === 'arguments' ? [fps - 1, bucket, aug] : [6, 128, 0.02];
        const one = backend.fromRaw(Float32Array.from(ids), [1, 3]);
        const idsN = cfg ? ops.concat([one, one], 0) : one;
        await trace?.('added_time_ids', idsN);

        // 4. Schedule and initial latents.
        scheduler.setTimesteps(steps);
        const timesteps = [...scheduler.timesteps];
        let latents: Tensor;
        if (o.latents) {
          if (o.latents.shape.join() !== latentShape.join()) throw new Error(`SVD pipeline: latents must be [${latentShape.join(', ')}], found ${o.latents.toString()}`);
          latents = ops.affine(o.latents, scheduler.initNoiseSigma);
        } else {
          const z = backend.fromRaw(generator.normal(latentShape.reduce((a, b) => a * b, 1)), latentShape);
          latents = ops.affine(z, scheduler.initNoiseSigma);
        }
        await trace?.('latents_init', latents);

        // 5. Control frames: the preprocess round trip, and each window's frames (v2: frame 0 = global frame 0).
        let control: Tensor | undefined;
        if (cf && controlnext) {
          const signedC = ops.affine(cf, 2, -1);
          control = ops.affine(signedC, 0.5, 0.5);
        }
        const replaceFirst = controlnext?.variant.name === 'svd_v2';
        const windowFrames = (start: number): Tensor => {
          const rows = control!.slice(0, start, start + fpb);
          if (!replaceFirst || start === 0) { const c = rows.contiguous(); rows.dispose(); return c; }
          const first = control!.slice(0, 0, 1), rest = rows.slice(0, 1, fpb);
          const c = ops.concat([first, rest], 0);
          [rows, first, rest].forEach((t) => t.dispose());
          return c;
        };
        if (control && trace) {
          const c0 = windowFrames(windows[0]!.start);
          await trace('control_input', c0);
        }
        const cachePrefix = o.cachePrefix ?? true;
        if (control && controlnext && path === 'ours' && cachePrefix) {
          for (const win of windows) {
            const frames = windowFrames(win.start);
            const p = controlnext.prepare(frames);
            frames.dispose();
            keep(p.first.h);
            keep(p.first.skip);
            prepared.push(p);
          }
        }

        const g = linspaceF32(gMin, gMax, fpb);
        const guidance = backend.fromRaw(g, [1, fpb, 1, 1, 1]);
        await trace?.('guidance_scale', guidance);

        // 6. Denoising: steps x windows.
        for (const [i, t] of timesteps.entries()) {
          const next = await scopeAsync(async () => {
            const results: Tensor[] = [];
            for (const [k, win] of windows.entries()) {
              scheduler.forgetStepIndex();
              const lat = latents.slice(1, win.start, win.start + fpb).contiguous(); // [1, fpb, L, h, w]
              const scaled = scheduler.scaleModelInput(lat, t);
              const doubled = cfg ? ops.concat([scaled, scaled], 0) : scaled;
              const unetIn = ops.concat([doubled, imageLatentsWindow], 2); // [N, fpb, 2L, h, w]
              const tT = backend.fromRaw(Float32Array.of(t), [1]);
              if (trace) {
                await trace('window_start', backend.fromRaw(Float32Array.of(win.start), [1]));
                await trace('timestep', tT);
                await trace('unet_input', unetIn);
              }
              let hooks: { hooks: Record<string, (x: Tensor) => Tensor>; dispose(): void } | undefined;
              if (controlnext && control) {
                if (path === 'ours') {
                  let p = prepared[k];
                  if (!cachePrefix) {
                    const frames = windowFrames(win.start);
                    p = controlnext.prepare(frames);
                    frames.dispose();
                  }
                  const ctrl = controlnext.control(p!, tT);
                  if (!cachePrefix) p!.dispose();
                  hooks = controlnext.hooks(ctrl, { frames: fpb, cfg });
                  if (trace) {
                    await trace('control', cfg ? ops.concat([ctrl.out, ctrl.out], 0) : ctrl.out);
                    await trace('control_scale', controlnext.pipelineScale(ctrl.scale, fpb, cfg));
                  }
                } else {
                  const frames = windowFrames(win.start);
                  const video = frames.reshape([1, fpb, 3, H, W]);
                  const v2 = cfg ? ops.concat([video, video], 0) : video;
                  const ctrl = controlnext.module.forwardVideo(v2, tT);
                  hooks = controlnext.referenceHooks(ctrl, { frames: fpb, cfg });
                  if (trace) {
                    await trace('control', ctrl.out);
                    await trace('control_scale', controlnext.pipelineScale(ctrl.scale, fpb, cfg));
                  }
                }
              }
              let out: Tensor;
              try {
                out = unet.forward(unetIn, tT, ctx, idsN, { hooks: hooks?.hooks });
              } finally {
                hooks?.dispose();
              }
              await trace?.('unet_output', out);
              let noisePred = out;
              if (cfg) {
                const [u, c] = out.chunk(2, 0);
                const diff = ops.sub(c!, u!);
                const gd = ops.mul(diff, guidance);
                noisePred = ops.add(u!, gd);
              }
              await trace?.('noise_pred', noisePred);
              const { prevSample } = scheduler.step(noisePred, t, lat);
              await trace?.('window_latents', prevSample);
              results.push(prevSample);
              if (o.onProgress) {
                await backend.sync(); // on WebGPU the window's work is queued: report it when it has run
                o.onProgress({ phase: 'denoise', done: i + 1, total: timesteps.length, window: k + 1, windows: windows.length });
              }
              // A macrotask turn per window: CPU ops are synchronous, and a long run must not starve timers and I/O.
              await new Promise((r) => setTimeout(r, 0));
            }
            return averageWindows(results, windows, fpb, F);
          });
          latents.dispose();
          latents = next;
          await trace?.('step_latents', latents);
        }

        // 7. Decode.
        if (o.decode === false) return { latents, timesteps, sigmas: [...scheduler.sigmas] };
        const decoded = vae.decodeVideo(latents, chunk, (done, total) => o.onProgress?.({ phase: 'decode', done, total }));
        const half = ops.affine(decoded, 0.5, 0.5);
        const clamped = clamp(half, 0, 1);
        const frames = clamped.reshape([F, 3, H, W]);
        return { frames, decoded, latents, timesteps, sigmas: [...scheduler.sigmas] };
      });
    } finally {
      prepared.forEach((p) => p.dispose());
      scheduler.dispose();
    }
  }

  /** Free the models once the calls made before this have returned; later calls are refused. */
  dispose(): void {
    this.calls.close('the pipeline was disposed', () => this.disposeModels());
  }

  private disposeModels(): void {
    const { unet, vae, imageEncoder, controlnext } = this.components;
    controlnext?.dispose();
    imageEncoder?.dispose();
    unet.dispose();
    vae.dispose();
  }
}

/**
 * The released pipelines' accumulation: per frame, the sum (in window order) of the windows' results
 * that add it, divided by their count. Frames with the same contributing windows are handled together.
 */
function averageWindows(results: readonly Tensor[], windows: readonly FrameWindow[], fpb: number, F: number): Tensor {
  const contributors = (f: number) => windows.flatMap((w, k) => (f >= w.firstAdded && f < w.start + fpb ? [k] : []));
  const segments: { from: number; to: number; ks: number[] }[] = [];
  for (let f = 0; f < F; f++) {
    const ks = contributors(f);
    const last = segments[segments.length - 1];
    if (last && last.ks.join() === ks.join()) last.to = f + 1;
    else segments.push({ from: f, to: f + 1, ks });
  }
  const backend = results[0]!.backend;
  const parts = segments.map(({ from, to, ks }) => {
    const pieces = ks.map((k) => results[k]!.slice(1, from - windows[k]!.start, to - windows[k]!.start));
    let sum = pieces[0]!.contiguous();
    for (const p of pieces.slice(1)) {
      const s = ops.add(sum, p);
      sum.dispose();
      sum = s;
    }
    pieces.forEach((p) => p.dispose());
    if (ks.length === 1) return sum;
    const n = backend.fromRaw(Float32Array.of(ks.length), [1]);
    const avg = ops.div(sum, n);
    [sum, n].forEach((t) => t.dispose());
    return avg;
  });
  if (parts.length === 1) return parts[0]!;
  const out = ops.concat(parts, 1);
  parts.forEach((p) => p.dispose());
  return out;
}
