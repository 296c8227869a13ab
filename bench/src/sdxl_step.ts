// One denoising step with classifier-free guidance per SDXL configuration (sdxl_variants.ts), on the
// real SDXL architecture with random weights (latency does not depend on weight values): the control
// module's work for this timestep, the UNet forward on [uncond; cond] (batch 2 * images) with SDXL's
// added conditioning (pooled text embeddings + 6 micro-conditioning time ids), and the CFG combination.
//  - sdxl-ref: ControlNeXt-SDXL's module on the CFG batch ([img, img]), everything every step, as
//    StableDiffusionXLControlNeXtPipeline runs it (spec §5.3);
//  - sdxl-opt: the module on one control image per prompt image; prepare() once per generation computes
//    the timestep-independent prefix, each step runs only forwardPrepared() (packages/controlnext).
// The injection is the variant's own (after conv_in, normalise-then-pool), through the same hooks the
// pipeline uses.

import { ops, RandomWeights, scope, type Backend, type Tensor } from '@cnx/tensor';
import { UNet2DConditionModel, type Hooks } from '@cnx/unet';
import { ControlNeXt, ControlNeXtLightModule, lightReleasedStructure, type ControlOutput, type PreparedControl } from '@cnx/controlnext';
import type { StepRunner } from './sd15_step.js';
import { SDXL_CONTEXT_DIM, SDXL_POOLED_DIM, SDXL_SEQ_LEN, SDXL_UNET_CONFIG } from './sdxl_configs.js';
import { SDXL_VARIANTS, type SdxlVariantId } from './sdxl_variants.js';
import type { Geometry } from './variants.js';

/** The SDXL pipelines' default guidance scale (the value does not change the cost). */
const GUIDANCE = 5.0;

export interface SdxlStepInputs {
  latents: Tensor; // [2B, 4, h, w]
  context: Tensor; // [2B, 77, 2048]
  textEmbeds: Tensor; // [2B, 1280]
  timeIds: Tensor; // [2B, 6]
  /** Control image at the CFG batch [2B, 3, H, W] (the reference path duplicates it). */
  imageCfg: Tensor;
  /** One control image per prompt image [B, 3, H, W] (our path). */
  image: Tensor;
}

function seeded(backend: Backend, shape: number[], seed: number, lo: number, hi: number): Tensor {
  let a = seed >>> 0;
  const n = shape.reduce((p, d) => p * d, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    data[i] = lo + ((hi - lo) * a) / 4294967296;
  }
  return backend.fromRaw(data, shape);
}

export function makeSdxlInputs(backend: Backend, g: Geometry, seed: number): SdxlStepInputs {
  const [H, W] = g.resolution, B = g.images, N = 2 * B;
  const image = seeded(backend, [B, 3, H, W], seed + 11, 0, 1); // control images are RGB in [0, 1]
  // time ids: original size, crop (0, 0), target size, as the ControlNeXt-SDXL pipeline builds them.
  const ids = Float32Array.from({ length: N * 6 }, (_, i) => [H, W, 0, 0, H, W][i % 6]!);
  return {
    latents: seeded(backend, [N, 4, H / 8, W / 8], seed + 12, -1, 1),
    context: seeded(backend, [N, SDXL_SEQ_LEN, SDXL_CONTEXT_DIM], seed + 13, -1, 1),
    textEmbeds: seeded(backend, [N, SDXL_POOLED_DIM], seed + 14, -1, 1),
    timeIds: backend.fromRaw(ids, [N, 6]),
    imageCfg: ops.concat([image, image], 0),
    image,
  };
}

export function disposeSdxlInputs(i: SdxlStepInputs): void {
  [i.latents, i.context, i.textEmbeds, i.timeIds, i.imageCfg, i.image].forEach((t) => t.dispose());
}

export function buildSdxlUnet(backend: Backend, seed: number): UNet2DConditionModel {
  return new UNet2DConditionModel(SDXL_UNET_CONFIG as unknown as Record<string, unknown>, new RandomWeights({ seed }), backend);
}

export function buildSdxlRunner(id: SdxlVariantId, backend: Backend, unet: UNet2DConditionModel, inputs: SdxlStepInputs, g: Geometry, seed: number): StepRunner {
  const N = 2 * g.images;
  const addedCond = { textEmbeds: inputs.textEmbeds, timeIds: inputs.timeIds };
  const unetStep = (t: number, hooks?: Hooks) => {
    const tt = backend.fromRaw(new Float32Array(N).fill(t), [N]);
    const eps = unet.forward(inputs.latents, tt, inputs.context, { addedCond, hooks });
    const [u, c] = eps.chunk(2, 0) as [Tensor, Tensor];
    return ops.linearCombination([[u, 1 - GUIDANCE], [c, GUIDANCE]]);
  };
  const v = SDXL_VARIANTS[id];
  if (!v.control) return { controlParams: 0, step: (t) => { scope(() => unetStep(t)).dispose(); }, dispose() {} };

  const module = new ControlNeXtLightModule(new RandomWeights({ seed: seed + 2 }), backend, lightReleasedStructure(SDXL_UNET_CONFIG.block_out_channels[0], 1));
  const cnx = new ControlNeXt('sdxl', module, backend);
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
        const h = cnx.hooks(controlStep(t), N, { cfg: true });
        const out = unetStep(t, h.hooks);
        h.dispose();
        return out;
      }).dispose();
    },
    dispose: () => { prepared?.dispose(); cnx.dispose(); },
  };
}
