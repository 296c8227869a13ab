// One denoising step with classifier-free guidance, per benchmark configuration, on the real SD1.5
// architecture with random weights (latency does not depend on weight values).
//
// What a step is, for every configuration: the control network's work for this timestep (if any), the
// UNet forward on [uncond; cond] (batch 2 * images), and the CFG combination u + g (c - u). The
// scheduler update is left out (a few elementwise ops, the same for every configuration).
//  - controlnet: diffusers ControlNetModel on the CFG batch, its residuals added by the UNet
//    (diffusers StableDiffusionControlNetPipeline without guess mode);
//  - *-ref: the ControlNeXt module on the CFG batch ([img, img]), everything every step, as
//    ControlNeXt-SD1.5/models/pipeline_controlnext.py runs it (spec §3.3);
//  - *-opt: the module on one control image per prompt image; prepare() once per generation computes
//    the timestep-independent prefix, each step runs only forwardPrepared() (packages/controlnext).

import { ops, RandomWeights, scope, type Backend, type Tensor } from '@cnx/tensor';
import { UNet2DConditionModel } from '@cnx/unet';
import {
  ControlNeXt, ControlNeXtLightModule, ControlNeXtSD15Module, ControlNetModel, lightReleasedStructure, parseControlNetConfig,
  RELEASE_SD15_STRUCTURE,
  type ControlOutput, type PreparedControl,
} from '@cnx/controlnext';
import { SD15_CONTROLNET_CONFIG, SD15_SEQ_LEN, SD15_UNET_CONFIG } from './sd15_configs.js';
import { VARIANTS, type Geometry, type VariantId } from './variants.js';

/** CFG guidance scale of the SD1.5 pipelines (the value does not change the cost). */
const GUIDANCE = 7.5;

export interface StepRunner {
  /** Once per generation, untimed per step (the optimised path's prefix); reported separately. */
  prepare?(): void;
  /** One denoising step at timestep t. Synchronous op submission; the caller syncs the backend. */
  step(t: number): void;
  /** Parameters of this configuration's control network. */
  readonly controlParams: number;
  dispose(): void;
}

/** Shared inputs: latents, text context and control image, seeded. */
export interface StepInputs {
  latents: Tensor; // [2B, 4, h, w]
  context: Tensor; // [2B, 77, 768]
  /** Control image at the CFG batch [2B, 3, H, W] (the reference path duplicates it). */
  imageCfg: Tensor;
  /** One control image per prompt image [B, 3, H, W] (our path). */
  image: Tensor;
}

/** A seeded uniform [0, 1) generator (mulberry32): the bench's inputs are a pure function of --seed. */
export function mulberry(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A tensor of `shape` uniform in [lo, hi) from `rnd`. */
export function randomTensor(backend: Backend, shape: number[], rnd: () => number, lo: number, hi: number): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = lo + (hi - lo) * rnd();
  return backend.fromRaw(data, shape);
}

export function makeInputs(backend: Backend, g: Geometry, seed: number): StepInputs {
  const rnd = mulberry(seed + 1);
  const [H, W] = g.resolution, B = g.images;
  const image = randomTensor(backend, [B, 3, H, W], rnd, 0, 1); // control images are RGB in [0, 1]
  return {
    latents: randomTensor(backend, [2 * B, 4, H / 8, W / 8], rnd, -1, 1),
    context: randomTensor(backend, [2 * B, SD15_SEQ_LEN, 768], rnd, -1, 1),
    imageCfg: ops.concat([image, image], 0),
    image,
  };
}

export function disposeInputs(i: StepInputs): void {
  [i.latents, i.context, i.imageCfg, i.image].forEach((t) => t.dispose());
}

/** The light (SD1.5-Training) module at the released widths, injected after down_blocks[0] (320 channels). */
export function buildLightModule(backend: Backend, seed: number): ControlNeXtLightModule {
  return new ControlNeXtLightModule(new RandomWeights({ seed }), backend, lightReleasedStructure(SD15_UNET_CONFIG.block_out_channels[0], 0.35));
}

export function buildUnet(backend: Backend, seed: number): UNet2DConditionModel {
  return new UNet2DConditionModel(SD15_UNET_CONFIG as unknown as Record<string, unknown>, new RandomWeights({ seed }), backend);
}

/** u + g (c - u) over the [uncond; cond] halves of the UNet output. */
function guide(eps: Tensor): Tensor {
  const [u, c] = eps.chunk(2, 0) as [Tensor, Tensor];
  return ops.linearCombination([[u, 1 - GUIDANCE], [c, GUIDANCE]]);
}

function timestepTensor(backend: Backend, t: number, batch: number): Tensor {
  return backend.fromRaw(new Float32Array(batch).fill(t), [batch]);
}

/** Why a configuration cannot run in this build, or undefined (every configuration runs today). */
export async function unavailableReason(id: VariantId): Promise<string | undefined> {
  void id;
  return undefined;
}

export async function buildRunner(id: VariantId, backend: Backend, unet: UNet2DConditionModel, inputs: StepInputs, g: Geometry, seed: number): Promise<StepRunner> {
  const v = VARIANTS[id];
  const N = 2 * g.images;
  const unetStep = (t: number, opts: Parameters<UNet2DConditionModel['forward']>[3] = {}) => {
    const tt = timestepTensor(backend, t, N);
    const eps = unet.forward(inputs.latents, tt, inputs.context, opts);
    return guide(eps);
  };

  switch (v.control) {
    case 'none':
      return { controlParams: 0, step: (t) => { scope(() => unetStep(t)).dispose(); }, dispose() {} };

    case 'controlnet': {
      const cfg = parseControlNetConfig(SD15_CONTROLNET_CONFIG as unknown as Record<string, unknown>, 'SD15_CONTROLNET_CONFIG');
      const cn = new ControlNetModel(cfg, new RandomWeights({ seed: seed + 1 }), backend);
      return {
        controlParams: cn.numParameters(),
        step: (t) => {
          scope(() => {
            const tt = timestepTensor(backend, t, N);
            const r = cn.forward(inputs.latents, tt, inputs.context, inputs.imageCfg, { conditioningScale: 1 });
            return unetStep(t, { downBlockAdditionalResiduals: r.down, midBlockAdditionalResidual: r.mid });
          }).dispose();
        },
        dispose: () => cn.dispose(),
      };
    }

    case 'controlnext-release':
    case 'controlnext-light': {
      const module = v.control === 'controlnext-release'
        ? new ControlNeXtSD15Module(new RandomWeights({ seed: seed + 2 }), backend, RELEASE_SD15_STRUCTURE)
        : buildLightModule(backend, seed + 2);
      const cnx = new ControlNeXt(v.control === 'controlnext-release' ? 'sd15' : 'sd15_training', module, backend);
      let prepared: PreparedControl | undefined;
      /** Our path runs the module per prompt image; a CFG batch of 2B needs the [B] map twice (B > 1). */
      const widen = (c: ControlOutput): ControlOutput => (g.images === 1 ? c : { ...c, out: ops.concat([c.out, c.out], 0) });
      const controlStep = (t: number): ControlOutput => {
        if (v.path === 'reference') return cnx.control(inputs.imageCfg, t);
        if (!prepared) throw new Error(`bench ${id}: prepare() must run before the steps`);
        return widen(cnx.control(prepared, t));
      };
      return {
        controlParams: cnx.numParameters(),
        ...(v.path === 'optimised' ? { prepare: () => { prepared?.dispose(); prepared = cnx.prepare(inputs.image); } } : {}),
        step: (t) => {
          scope(() => {
            const ctrl = controlStep(t);
            const h = cnx.hooks(ctrl, N, { cfg: true });
            const out = unetStep(t, { hooks: h.hooks });
            h.dispose();
            return out;
          }).dispose();
        },
        dispose: () => { prepared?.dispose(); cnx.dispose(); },
      };
    }
  }
}
