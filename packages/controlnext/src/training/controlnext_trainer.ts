// The ControlNeXt training recipe (issue 12), statement for statement as
// ControlNeXt-SD1.5-Training/train_controlnext.py runs its loop (spec section 4; the train_controlnext_step
// golden case's notes):
//
//   noisy  = add_noise(latents, noise, t)                  DDPM, t ~ U{0..T-1} per sample
//   ctrl   = controlnext(control_image, t)                 the light module, trainable
//   pred   = unet(noisy, t, text, conditional_controls=ctrl)   cross-normalised injection after down_blocks[0]
//   loss   = mse(pred, noise)                              (v-prediction: mse(pred, velocity))
//   loss.backward(); optimizer.step(); optimizer.zero_grad(set_to_none=False)
//
// Trainable set: every control-module parameter (one AdamW group at lr * 10) and every UNet parameter whose
// name matches `unetTrainable` (default 'to_out'; SDXL-Training uses 'attn2.*to_out'), each its own group at
// lr, in named-parameter order. The rest of the UNet is frozen but passes gradients through to the module.
// AdamW betas (0.9, 0.999), eps 1e-8, weight decay 1e-2 on every group, constant lr, no gradient clipping
// unless maxGradNorm is given (the script's clip_grad_norm_ is commented out).
//
// `injection: 'zero_conv'` is OUR ablation baseline (train_zero_conv_step): instead of cross normalisation,
// a zero-initialised 1x1 conv of the pooled control is added at the same site, trained with the module.
//
// Randomness: the noise and timesteps of step k are a pure function of (seed, k) (training_batches.ts
// mixSeed, stream 3), like the batches, so a resumed run draws exactly what an uninterrupted one would and
// the checkpoint needs no generator state. A caller may pass its own noise and timesteps (the golden runner).
//
// Checkpoints (checkpointFiles / ControlNeXtTrainer.create({ resume })): the files the script's checkpointing
// block writes, as safetensors with the repo's key names, plus what exact resume needs:
//   controlnext.safetensors                 controlnext.state_dict()          (the script's controlnext.bin)
//   unet.safetensors                        {name: trained value} of the trained UNet tensors (unet.bin)
//   unet_weight_increasements.safetensors   {name: trained - pretrained}     (--save_load_weights_increaments)
//   zero_conv.safetensors                   the zero conv (zero_conv injection only)
//   optimizer.safetensors                   AdamW moments and step counts (@cnx/tensor AdamW.saveState)
//   trainer_state.json                      step, seed, recipe: checked on resume
// Browser-safe: the files are bytes here; node/training_checkpoint_files.ts writes and reads folders.

import {
  AdamW, SafetensorsFile, backward, encodeSafetensors, keep, noGrad, ops, scope,
  type Backend, type NamedParameter, type SafetensorsEntry, type Tensor, type WeightSource,
} from '@cnx/tensor';
import {
  ConfigReader, Conv2d, Module, RandomGenerator, cumprodAlphas, enableGradientCheckpointing, makeBetas, readNoiseScheduleConfig,
  type Hooks, type PredictionType, type UNet2DConditionModel,
} from '@cnx/unet';
import type { ControlNeXt } from '../controlnext/controlnext.js';
import { mixSeed } from './training_batches.js';

export type TrainingInjection = 'cross_norm' | 'zero_conv';

/** The DDPM training schedule: alphas_cumprod [T] and the prediction target. */
export interface TrainingNoiseSchedule {
  alphasCumprod: Float64Array;
  predictionType: PredictionType;
}

/**
 * The schedule from a diffusers scheduler_config.json (DDPMScheduler.from_config: betas, cumprod). torch
 * computes alphas_cumprod in float32; this keeps float64 and rounds where a float32 value is used (the
 * difference, ~1e-7 relative, is inside every golden tolerance).
 */
export function trainingNoiseSchedule(config: Record<string, unknown>): TrainingNoiseSchedule {
  const r = new ConfigReader(config as never, 'DDPMScheduler');
  const betas = makeBetas(readNoiseScheduleConfig(r, { rescale: true }), 'DDPMScheduler');
  const predictionType = r.oneOf('prediction_type', ['epsilon', 'v_prediction', 'sample'] as const, 'epsilon');
  if (predictionType === 'sample') throw new Error('training: prediction_type "sample" is not supported by the recipe (epsilon or v_prediction)');
  return { alphasCumprod: cumprodAlphas(betas), predictionType };
}

export interface ControlNeXtTrainerOptions {
  unet: UNet2DConditionModel;
  /** A ControlNeXt with a light module (sd15_training, sdxl): the trainable control module. */
  controlnext: ControlNeXt;
  schedule: TrainingNoiseSchedule;
  /** Base learning rate (scripts.sh: 1e-5); the control module gets controlLrMultiplier times it. */
  learningRate: number;
  /** Default 10 (the script's param group). */
  controlLrMultiplier?: number;
  betas?: readonly [number, number];
  eps?: number;
  weightDecay?: number;
  /** clip_grad_norm_ over every trained tensor; default none (the script's call is commented out). */
  maxGradNorm?: number;
  /** UNet parameters trained: names containing this string, or matching this pattern. Default 'to_out'. */
  unetTrainable?: string | RegExp;
  /** Default 'cross_norm' (the recipe); 'zero_conv' is the ablation baseline. */
  injection?: TrainingInjection;
  /** The zero conv's initial weights ('weight' [C, C, 1, 1], 'bias' [C]); default zeros. */
  zeroConvInit?: WeightSource;
  /** Recompute every resnet / transformer block in backward (less memory, ~1.3x the time). */
  gradientCheckpointing?: boolean;
  /** Seed of the per-step noise and timesteps (default 0). */
  seed?: number;
  /** Resume: the files of checkpointFiles() (the trainer state is checked against these options). */
  resume?: Readonly<Record<string, Uint8Array>>;
}

/** One step's data. latents, encoderHiddenStates, controlImage as TrainingDataCache.batch gives them. */
export interface TrainingStepBatch {
  /** [B, C, h, w] (already scaled by the VAE's scaling factor) */
  latents: Tensor;
  /** [B, L, D] */
  encoderHiddenStates: Tensor;
  /** [B, 3, 8h, 8w] in [0, 1] */
  controlImage: Tensor;
  /** [B, C, h, w]; default drawn from (seed, step) */
  noise?: Tensor;
  /** One integer timestep per sample; default drawn from (seed, step) */
  timesteps?: readonly number[];
}

export interface TrainingStepOptions {
  /** Keep the step's noisy latents, control map and prediction (the caller disposes them). */
  keep?: boolean;
}

export interface TrainingStepResult {
  /** The 0-based step this was (the trainer's step count before it). */
  step: number;
  loss: number;
  timesteps: number[];
  kept?: { noisyLatents: Tensor; control: Tensor; modelPred: Tensor };
}

/** A trained tensor: who owns it ('controlnext', 'unet', 'zero_conv') and its state-dict name there. */
export interface TrainedParameter {
  owner: 'controlnext' | 'unet' | 'zero_conv';
  key: string;
  tensor: Tensor;
}

const STREAM_NOISE = 3;
export const TRAINER_STATE_FORMAT = 'cnx.controlnext_trainer.v1';
export const CHECKPOINT_FILES = {
  controlnext: 'controlnext.safetensors',
  unet: 'unet.safetensors',
  unetIncrements: 'unet_weight_increasements.safetensors',
  zeroConv: 'zero_conv.safetensors',
  optimizer: 'optimizer.safetensors',
  state: 'trainer_state.json',
} as const;

/** Zeros for every parameter asked (the zero conv's default initialisation). */
class ZeroWeights implements WeightSource {
  get(_path: string, shape: readonly number[], backend: Backend): Tensor { return backend.zeros([...shape]); }
  has(): boolean { return true; }
  sub(): WeightSource { return this; }
}

/** The ablation's zero convolution: nn.Conv2d(C, C, 1) as a module whose state dict is {weight, bias}. */
class ZeroConv extends Module {
  conv: Conv2d;
  constructor(ws: WeightSource, backend: Backend, channels: number) {
    super();
    this.conv = new Conv2d(ws, backend, { inC: channels, outC: channels, k: 1 });
  }
  /** The state-dict names are the torch module's own (weight, bias), not conv.weight. */
  static key(path: string): string { return path.replace(/^conv\./, ''); }
}

interface TrainerState {
  format: string;
  step: number;
  seed: number;
  injection: TrainingInjection;
  learningRate: number;
  controlLrMultiplier: number;
  unetTrainable: string;
  predictionType: PredictionType;
}

function read(files: Readonly<Record<string, Uint8Array>>, name: string, what: string): Uint8Array {
  const b = files[name];
  if (!b) throw new Error(`${what}: the checkpoint has no ${name} (found: ${Object.keys(files).sort().join(', ') || 'nothing'})`);
  return b;
}

export class ControlNeXtTrainer {
  readonly optimizer: AdamW;
  readonly injection: TrainingInjection;
  /** Steps done (optimizer steps). */
  step = 0;
  private readonly trained: TrainedParameter[];
  private readonly zeroConv?: ZeroConv;
  private readonly undoCheckpointing: (() => void)[] = [];
  private readonly seed: number;
  private readonly unetPattern: string | RegExp;

  private constructor(
    private readonly opts: ControlNeXtTrainerOptions,
    /** Host copies of the trained UNet tensors before training (for the increments file). */
    private readonly pretrained: ReadonlyMap<string, Float32Array>,
    readonly backend: Backend,
  ) {
    const { unet, controlnext } = opts;
    this.injection = opts.injection ?? 'cross_norm';
    this.seed = opts.seed ?? 0;
    this.unetPattern = opts.unetTrainable ?? 'to_out';
    const module = controlnext.module;
    if (!(module instanceof Module)) throw new Error('ControlNeXtTrainer: the control module is not a trainable Module');
    if (module.arch !== 'light') {
      throw new Error(`ControlNeXtTrainer: the recipe trains the light module (SD1.5-Training / SDXL), found a ${module.arch} module (variant ${controlnext.variant.name})`);
    }
    if (this.injection === 'zero_conv') {
      this.zeroConv = new ZeroConv(opts.zeroConvInit ?? new ZeroWeights(), this.backend, module.outChannels);
    }
    if (!unet.namedParameters().some(([k]) => this.matchesUnet(k))) {
      throw new Error(`ControlNeXtTrainer: no UNet parameter matches ${String(this.unetPattern)} (e.g. ${unet.namedParameters()[0]?.[0]})`);
    }
    // Resume: weights first, then the optimizer (it re-homes the parameters), then its state.
    if (opts.resume) {
      read(opts.resume, CHECKPOINT_FILES.optimizer, 'resume'); // every file present before anything changes
      this.loadWeights(opts.resume);
    }
    // Trained parameters are f32 master weights even where the model stores its weights in f16 (the
    // frozen rest stays 16-bit): AdamW needs f32, as diffusers' mixed precision keeps trained modules fp32.
    for (const [k] of module.namedParameters()) module.widenParameter(k);
    for (const [k] of this.zeroConv?.namedParameters() ?? []) this.zeroConv!.widenParameter(k);
    const unetTrained = unet.namedParameters().filter(([k]) => this.matchesUnet(k))
      .map(([k]) => [k, unet.widenParameter(k)] as [string, Tensor]);

    const named = (owner: TrainedParameter['owner'], list: [string, Tensor][]): NamedParameter[] =>
      list.map(([k, t]) => { t.requiresGrad = true; return [`${owner}:${k}`, t] as const; });
    const controlParams = [
      ...named('controlnext', module.namedParameters()),
      ...(this.zeroConv ? named('zero_conv', this.zeroConv.namedParameters()) : []),
    ];
    const lr = opts.learningRate;
    if (!(lr > 0)) throw new Error(`ControlNeXtTrainer: learningRate must be > 0, found ${lr}`);
    const mult = opts.controlLrMultiplier ?? 10;
    const owners = { controlnext: module, unet, zero_conv: this.zeroConv } as const;
    this.optimizer = new AdamW(
      [{ params: controlParams, lr: lr * mult }, ...named('unet', unetTrained).map((p) => ({ params: [p] }))],
      {
        lr, betas: opts.betas ?? [0.9, 0.999], eps: opts.eps ?? 1e-8, weightDecay: opts.weightDecay ?? 1e-2,
        place: (name, view) => {
          const [owner, key] = splitName(name);
          owners[owner]!.setParameter(key, view);
        },
      },
    );
    this.trained = this.optimizer.parameters().map(([name, tensor]) => {
      const [owner, key] = splitName(name);
      return { owner, key: owner === 'zero_conv' ? ZeroConv.key(key) : key, tensor };
    });
    if (opts.resume) this.loadOptimizer(opts.resume);
    if (opts.gradientCheckpointing) {
      this.undoCheckpointing.push(enableGradientCheckpointing(unet), enableGradientCheckpointing(module));
    }
  }

  /**
   * A trainer for `opts` (async: it reads the pretrained values of the trained UNet tensors, for the
   * increments file). With `resume`, the checkpoint's weights, optimizer state and step are restored.
   */
  static async create(opts: ControlNeXtTrainerOptions): Promise<ControlNeXtTrainer> {
    const pattern = opts.unetTrainable ?? 'to_out';
    const pretrained = new Map<string, Float32Array>();
    for (const [k, t] of opts.unet.namedParameters()) {
      if (matches(pattern, k)) pretrained.set(k, await t.data());
    }
    return new ControlNeXtTrainer(opts, pretrained, opts.unet.backend);
  }

  /** Every trained tensor (views into the optimizer's flat storages), control group first. */
  parameters(): readonly TrainedParameter[] { return this.trained; }

  /** Number of trained values: [control module (+ zero conv), UNet]. */
  parameterCounts(): { control: number; unet: number } {
    let control = 0, unetN = 0;
    for (const p of this.trained) if (p.owner === 'unet') unetN += p.tensor.size; else control += p.tensor.size;
    return { control, unet: unetN };
  }

  /** The noise [B, C, h, w] and timesteps of step `step`: a pure function of (seed, step). */
  drawNoise(step: number, shape: readonly number[]): { noise: Float32Array; timesteps: number[] } {
    const rng = new RandomGenerator(mixSeed(this.seed, STREAM_NOISE, step));
    const T = this.opts.schedule.alphasCumprod.length;
    const timesteps = Array.from({ length: shape[0]! }, () => Math.min(T - 1, Math.floor(rng.uniform() * T)));
    return { noise: rng.normal(shape.reduce((a, b) => a * b, 1)), timesteps };
  }

  /** Forward and backward of one step: the gradients land in the trained tensors' `.grad`. */
  async forwardBackward(batch: TrainingStepBatch, opts: TrainingStepOptions = {}): Promise<TrainingStepResult> {
    const { latents } = batch;
    const B = latents.shape[0]!;
    const step = this.step;
    let noise = batch.noise, timesteps = batch.timesteps ? [...batch.timesteps] : undefined;
    let drawnNoise: Tensor | undefined;
    if (!noise || !timesteps) {
      const d = this.drawNoise(step, latents.shape);
      if (!noise) noise = drawnNoise = this.backend.fromRaw(d.noise, [...latents.shape]);
      timesteps ??= d.timesteps;
    }
    checkBatch(batch, noise, timesteps);
    const ac = this.opts.schedule.alphasCumprod;
    for (const t of timesteps) {
      if (!Number.isInteger(t) || t < 0 || t >= ac.length) throw new Error(`training: timestep ${t} outside 0..${ac.length - 1}`);
    }
    // add_noise in float32: sqrt(ac[t]) and sqrt(1 - ac[t]) per sample, broadcast over [C, h, w].
    const sqrtAc = timesteps.map((t) => Math.fround(Math.sqrt(Math.fround(ac[t]!))));
    const sqrtOneMinus = timesteps.map((t) => Math.fround(Math.sqrt(Math.fround(1 - Math.fround(ac[t]!)))));
    const tTensor = this.backend.fromRaw(Float32Array.from(timesteps), [B]);
    let kept: TrainingStepResult['kept'];
    try {
      const loss = scope(() => {
        const { noisy, target } = noGrad(() => {
          const a = this.backend.fromRaw(Float32Array.from(sqrtAc), [B, 1, 1, 1]);
          const s = this.backend.fromRaw(Float32Array.from(sqrtOneMinus), [B, 1, 1, 1]);
          const noisyT = ops.add(ops.mul(latents, a), ops.mul(noise!, s));
          // v-prediction target (DDPMScheduler.get_velocity): sqrt(ac) noise - sqrt(1 - ac) x0
          const targetT = this.opts.schedule.predictionType === 'v_prediction' ? ops.sub(ops.mul(noise!, a), ops.mul(latents, s)) : noise!;
          return { noisy: noisyT, target: targetT };
        });
        const ctrl = this.opts.controlnext.control(batch.controlImage, tTensor);
        const injected = this.hooksFor(ctrl.out, ctrl.scale, B);
        let pred: Tensor;
        try {
          pred = this.opts.unet.forward(noisy, tTensor, batch.encoderHiddenStates, { hooks: injected.hooks });
        } finally {
          injected.dispose();
        }
        if (opts.keep) kept = noGrad(() => ({ noisyLatents: keepCopy(noisy), control: keepCopy(ctrl.out), modelPred: keepCopy(pred) }));
        return ops.mseLoss(pred, target);
      });
      backward(loss);
      const value = (await loss.data())[0]!;
      loss.dispose();
      if (!Number.isFinite(value)) throw new Error(`training step ${step}: the loss is ${value} (check the learning rate and the data)`);
      return { step, loss: value, timesteps, kept };
    } catch (e) {
      if (kept) Object.values(kept).forEach((t) => t.dispose());
      throw e;
    } finally {
      tTensor.dispose();
      drawnNoise?.dispose();
    }
  }

  /** clip_grad_norm_ (when maxGradNorm is set), optimizer.step(), zero_grad(set_to_none=False). */
  optimizerStep(): void {
    if (this.opts.maxGradNorm !== undefined) this.optimizer.clipGradNorm(this.opts.maxGradNorm).dispose();
    this.optimizer.step();
    this.optimizer.zeroGrad({ setToNone: false });
    this.step++;
  }

  /** One training step: forwardBackward then optimizerStep. */
  async trainStep(batch: TrainingStepBatch, opts: TrainingStepOptions = {}): Promise<TrainingStepResult> {
    const r = await this.forwardBackward(batch, opts);
    this.optimizerStep();
    return r;
  }

  /** The injection hooks of one forward: the variant's cross normalisation, or the zero conv. */
  private hooksFor(control: Tensor, scale: Tensor | number, batch: number): { hooks: Hooks; dispose(): void } {
    const cnx = this.opts.controlnext;
    if (this.injection === 'cross_norm') return cnx.hooks({ out: control, scale }, batch);
    const zc = this.zeroConv!;
    let fired = false;
    return {
      hooks: {
        // h + zero_conv(adaptive_avg_pool2d(control, h.shape[-2:])): no normalisation, no scale.
        [cnx.variant.site]: (h: Tensor): Tensor => {
          if (fired) throw new Error(`zero_conv injection at '${cnx.variant.site}' fired twice in one forward`);
          fired = true;
          return scope(() => ops.add(h, zc.conv.forward(ops.adaptiveAvgPool2d(control, [h.shape[2]!, h.shape[3]!]))));
        },
      },
      dispose() {},
    };
  }

  private matchesUnet(key: string): boolean { return matches(this.unetPattern, key); }

  // ------------------------------------------------------------------ checkpoints

  /** The checkpoint's files (see the header), as bytes. */
  async checkpointFiles(): Promise<Record<string, Uint8Array>> {
    const entries = { controlnext: {} as Record<string, SafetensorsEntry>, unet: {} as Record<string, SafetensorsEntry>, inc: {} as Record<string, SafetensorsEntry>, zero: {} as Record<string, SafetensorsEntry> };
    for (const p of this.trained) {
      const data = await p.tensor.data();
      const e: SafetensorsEntry = { dtype: 'F32', shape: p.tensor.shape, data };
      if (p.owner === 'controlnext') entries.controlnext[p.key] = e;
      else if (p.owner === 'zero_conv') entries.zero[p.key] = e;
      else {
        entries.unet[p.key] = e;
        const before = this.pretrained.get(p.key)!;
        entries.inc[p.key] = { dtype: 'F32', shape: p.tensor.shape, data: Float32Array.from(data, (v, i) => v - before[i]!) };
      }
    }
    const state: TrainerState = {
      format: TRAINER_STATE_FORMAT, step: this.step, seed: this.seed, injection: this.injection,
      learningRate: this.opts.learningRate, controlLrMultiplier: this.opts.controlLrMultiplier ?? 10,
      unetTrainable: String(this.unetPattern), predictionType: this.opts.schedule.predictionType,
    };
    const files: Record<string, Uint8Array> = {
      [CHECKPOINT_FILES.controlnext]: encodeSafetensors(entries.controlnext),
      [CHECKPOINT_FILES.unet]: encodeSafetensors(entries.unet),
      [CHECKPOINT_FILES.unetIncrements]: encodeSafetensors(entries.inc),
      [CHECKPOINT_FILES.optimizer]: await this.optimizer.saveState(),
      [CHECKPOINT_FILES.state]: new TextEncoder().encode(JSON.stringify(state, null, 1) + '\n'),
    };
    if (this.zeroConv) files[CHECKPOINT_FILES.zeroConv] = encodeSafetensors(entries.zero);
    return files;
  }

  /** Checks the trainer state and loads the trained weights (before the optimizer exists). */
  private loadWeights(files: Readonly<Record<string, Uint8Array>>): void {
    const what = 'resume';
    let state: TrainerState;
    try {
      state = JSON.parse(new TextDecoder().decode(read(files, CHECKPOINT_FILES.state, what))) as TrainerState;
    } catch (e) {
      throw new Error(`${what}: ${CHECKPOINT_FILES.state} is not valid JSON (${(e as Error).message})`);
    }
    if (state.format !== TRAINER_STATE_FORMAT) throw new Error(`${what}: ${CHECKPOINT_FILES.state} has format ${JSON.stringify(state.format)}, expected '${TRAINER_STATE_FORMAT}'`);
    const mismatch = (k: string, saved: unknown, now: unknown) => {
      if (saved !== now) throw new Error(`${what}: the checkpoint was trained with ${k} ${JSON.stringify(saved)}, this run has ${JSON.stringify(now)}`);
    };
    mismatch('injection', state.injection, this.injection);
    mismatch('seed', state.seed, this.seed);
    mismatch('the trained UNet parameters', state.unetTrainable, String(this.unetPattern));
    if (!Number.isInteger(state.step) || state.step < 0) throw new Error(`${what}: ${CHECKPOINT_FILES.state} has step ${state.step}, expected an integer >= 0`);
    const module = this.opts.controlnext.module as unknown as Module;
    const sources: [string, Module, (k: string) => string, ((k: string) => boolean) | undefined][] = [
      [CHECKPOINT_FILES.controlnext, module, (k) => k, undefined],
      [CHECKPOINT_FILES.unet, this.opts.unet, (k) => k, (k) => this.matchesUnet(k)],
    ];
    if (this.zeroConv) sources.push([CHECKPOINT_FILES.zeroConv, this.zeroConv, (k) => `conv.${k}`, undefined]);
    for (const [file, owner, toPath, filter] of sources) {
      const st = SafetensorsFile.fromBytes(read(files, file, what), file);
      const want = owner.namedParameters().filter(([k]) => !filter || filter(k));
      const have = new Set(st.keys().map(toPath));
      const missing = want.filter(([k]) => !have.has(k)).map(([k]) => k);
      if (missing.length) throw new Error(`${what}: ${file} lacks ${missing.length} trained tensor(s), e.g. '${missing[0]}'`);
      const extra = [...have].filter((k) => !want.some(([w]) => w === k));
      if (extra.length) throw new Error(`${what}: ${file} has tensor(s) this model does not train, e.g. '${extra[0]}'`);
      for (const [k, t] of want) {
        const key = st.keys().find((s) => toPath(s) === k)!;
        const { shape, data } = st.readFloat32(key);
        if (shape.length !== t.shape.length || shape.some((d, i) => d !== t.shape[i])) {
          throw new Error(`${what}: ${file} '${key}' is [${shape.join(', ')}], the model's [${t.shape.join(', ')}]`);
        }
        owner.setParameter(k, this.backend.fromRaw(data, shape));
      }
    }
    this.step = state.step;
  }

  private loadOptimizer(files: Readonly<Record<string, Uint8Array>>): void {
    this.optimizer.loadState(read(files, CHECKPOINT_FILES.optimizer, 'resume'));
  }

  /** Free the optimizer state and the zero conv; the UNet and the module stay with their owner. */
  dispose(): void {
    this.undoCheckpointing.forEach((u) => u());
    this.optimizer.zeroGrad();
    this.optimizer.dispose();
    for (const p of this.trained) p.tensor.requiresGrad = false;
    this.zeroConv?.dispose();
  }
}

function matches(pattern: string | RegExp, key: string): boolean {
  return typeof pattern === 'string' ? key.includes(pattern) : pattern.test(key);
}

function splitName(name: string): [TrainedParameter['owner'], string] {
  const i = name.indexOf(':');
  return [name.slice(0, i) as TrainedParameter['owner'], name.slice(i + 1)];
}

/** A copy that outlives the step's scope (the caller disposes it). */
function keepCopy(t: Tensor): Tensor {
  return keep(ops.scale(t, 1));
}

function checkBatch(b: TrainingStepBatch, noise: Tensor, timesteps: readonly number[]): void {
  const s = b.latents.shape;
  const f = (t: Tensor) => `[${t.shape.join(', ')}]`;
  if (s.length !== 4) throw new Error(`training batch: expected latents [B, C, h, w], found ${f(b.latents)}`);
  const B = s[0]!;
  if (noise.shape.some((d, i) => d !== s[i]) || noise.rank !== 4) throw new Error(`training batch: noise ${f(noise)} must have the latents' shape ${f(b.latents)}`);
  if (timesteps.length !== B) throw new Error(`training batch: ${timesteps.length} timesteps for a batch of ${B}`);
  if (b.encoderHiddenStates.shape[0] !== B) throw new Error(`training batch: encoderHiddenStates ${f(b.encoderHiddenStates)} for a batch of ${B}`);
  const c = b.controlImage.shape;
  if (c.length !== 4 || c[0] !== B || c[1] !== 3) throw new Error(`training batch: expected controlImage [${B}, 3, H, W], found ${f(b.controlImage)}`);
}
