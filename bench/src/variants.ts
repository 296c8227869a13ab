// The configurations the benchmark compares, and their analytic cost per denoising step.
//
// Every configuration is one denoising step with classifier-free guidance for `images` images: the
// UNet runs on 2*images samples (uncond + cond halves). The control networks run:
//  - reference: as the reference code runs them: on the doubled CFG batch, everything every step
//    (diffusers StableDiffusionControlNetPipeline; ControlNeXt-SD1.5 pipeline_controlnext.py, spec §3.3);
//  - optimised ("ours"): ControlNeXt's control image is identical in both CFG halves, so the module runs
//    on `images` samples and cross normalisation broadcasts it (Backend.crossNorm with Nc = 1 per image);
//    the timestep-independent prefix is computed once per generation and excluded from the per-step cost.

import {
  controlNetCost, controlnextReleaseCost, controlnextTrainingCost, SD15_RELEASE_STRUCTURE, SD15_TRAINING_STRUCTURE,
  summarize, unetCost, type CostLedger, type CostSummary,
} from './flops.js';
import { SD15_CONTROLNET_CONFIG, SD15_SEQ_LEN, SD15_UNET_CONFIG } from './sd15_configs.js';

export const VARIANT_IDS = ['base', 'controlnet', 'release-ref', 'release-opt', 'light-ref', 'light-opt'] as const;
export type VariantId = (typeof VARIANT_IDS)[number];

export interface VariantInfo {
  id: VariantId;
  label: string;
  /** Which control network, if any. */
  control: 'none' | 'controlnet' | 'controlnext-release' | 'controlnext-light';
  /** Batch of the control network: the CFG batch (reference) or the image batch (optimised). */
  path: 'reference' | 'optimised';
}

export const VARIANTS: Record<VariantId, VariantInfo> = {
  'base': { id: 'base', label: 'UNet (base)', control: 'none', path: 'reference' },
  'controlnet': { id: 'controlnet', label: '+ ControlNet (diffusers)', control: 'controlnet', path: 'reference' },
  'release-ref': { id: 'release-ref', label: '+ ControlNeXt SD1.5 release, reference (CFG batch, every step)', control: 'controlnext-release', path: 'reference' },
  'release-opt': { id: 'release-opt', label: '+ ControlNeXt SD1.5 release, ours (batch 1/image, prefix cached)', control: 'controlnext-release', path: 'optimised' },
  'light-ref': { id: 'light-ref', label: '+ ControlNeXt light (SD1.5-Training), reference', control: 'controlnext-light', path: 'reference' },
  'light-opt': { id: 'light-opt', label: '+ ControlNeXt light (SD1.5-Training), ours (batch 1/image, prefix cached)', control: 'controlnext-light', path: 'optimised' },
};

export interface StepCost {
  /** A configuration id of the model benchmarked (this file's VariantId for SD1.5, sdxl_variants.ts for SDXL). */
  id: string;
  /** Matmul-class FLOPs (conv + linear + attention) per denoising step, UNet + control. */
  stepFlops: number;
  /** Norm/softmax/elementwise FLOPs per step. */
  otherFlops: number;
  /** FLOPs of the control network per step (0 for the base). */
  controlFlops: number;
  /** Computed once per generation on the optimised path (0 otherwise). */
  prefixFlops: number;
  /** Parameters the control network adds to the pipeline. */
  addedParams: number;
  /** Parameters trained for this control (module + the UNet tensors the method fine-tunes). */
  trainableParams: number;
  /** Largest single tensor in f32 bytes, and its name (for the binding-size check). */
  largestTensorBytes: number;
  largestTensorName: string;
}

export interface Geometry {
  /** Pixel height and width (multiples of 64 for SD1.5's 3 downsamplings of the latent). */
  resolution: readonly [number, number];
  /** Images per prompt; the UNet runs on 2*images under CFG. */
  images: number;
}

export function latentOf(g: Geometry): [number, number] {
  return [g.resolution[0] / 8, g.resolution[1] / 8];
}

/** UNet parameters whose names contain `to_out`: the tensors both ControlNeXt SD1.5 recipes fine-tune (spec §4.3). */
export function toOutParams(unet: CostLedger): number {
  return unet.entries.filter((e) => e.path.includes('.to_out')).reduce((s, e) => s + e.params, 0);
}

export function unetLedger(g: Geometry): CostLedger {
  return unetCost(SD15_UNET_CONFIG, { batch: 2 * g.images, latent: latentOf(g), seqLen: SD15_SEQ_LEN });
}

/**
 * The control network's forward ledger in a denoising step; `batches` overrides the batches (training:
 * no CFG, the module and the UNet both on the image batch).
 */
export function controlLedger(v: VariantInfo, g: Geometry, batches?: { batch: number; featureBatch: number }): CostLedger | undefined {
  const cfgBatch = batches?.featureBatch ?? 2 * g.images, batch = batches?.batch ?? (v.path === 'optimised' ? g.images : cfgBatch);
  const [h, w] = latentOf(g);
  const ch = SD15_UNET_CONFIG.block_out_channels;
  switch (v.control) {
    case 'none': return undefined;
    case 'controlnet':
      return controlNetCost(SD15_CONTROLNET_CONFIG, { batch, image: g.resolution, latent: [h, w], seqLen: SD15_SEQ_LEN });
    case 'controlnext-release':
      // Injected after the mid block: [1280, h/8, w/8] (spec §3.2).
      return controlnextReleaseCost(SD15_RELEASE_STRUCTURE, { batch, featureBatch: cfgBatch, image: g.resolution, feature: [ch[3], h / 8, w / 8] });
    case 'controlnext-light':
      // Injected after down_blocks[0]: [320, h/2, w/2] (spec §4.2).
      return controlnextTrainingCost(SD15_TRAINING_STRUCTURE, { batch, featureBatch: cfgBatch, image: g.resolution, feature: [ch[0], h / 2, w / 2] });
  }
}

export function stepCost(id: VariantId, g: Geometry): StepCost {
  const v = VARIANTS[id];
  const unet = unetLedger(g);
  const u = summarize(unet);
  const ctl = controlLedger(v, g);
  const step: CostSummary = ctl ? summarize(ctl, v.path === 'optimised' ? 'step' : undefined) : { matmulFlops: 0, otherFlops: 0, params: 0 };
  const prefix = ctl && v.path === 'optimised' ? summarize(ctl, 'prefix') : undefined;
  const largest = ctl && ctl.largestTensorBytes > unet.largestTensorBytes ? ctl : unet;
  const addedParams = ctl ? summarize(ctl).params : 0;
  return {
    id,
    stepFlops: u.matmulFlops + step.matmulFlops,
    otherFlops: u.otherFlops + step.otherFlops,
    controlFlops: step.matmulFlops,
    prefixFlops: prefix ? prefix.matmulFlops : 0,
    addedParams,
    trainableParams: v.control === 'none' ? 0 : v.control === 'controlnet' ? addedParams : addedParams + toOutParams(unet),
    largestTensorBytes: largest.largestTensorBytes,
    largestTensorName: largest.largestTensorName,
  };
}

/** A markdown table of the analytic costs (the README's FLOP table). */
export function flopTableMarkdown(g: Geometry, ids: readonly VariantId[] = VARIANT_IDS): string {
  const base = stepCost('base', g);
  const G = (f: number) => (f / 1e9).toFixed(1);
  const M = (p: number) => (p / 1e6).toFixed(2);
  const lines = [
    `| configuration | GFLOP/step (matmul-class) | control GFLOP/step | FLOP overhead | once per generation GFLOP | other GFLOP/step | added params (M) | trainable params (M) |`,
    `|---|---:|---:|---:|---:|---:|---:|---:|`,
  ];
  for (const id of ids) {
    const c = stepCost(id, g);
    const ov = id === 'base' ? '-' : `+${((100 * c.controlFlops) / base.stepFlops).toFixed(1)} %`;
    lines.push(`| ${VARIANTS[id].label} | ${G(c.stepFlops)} | ${G(c.controlFlops)} | ${ov} | ${c.prefixFlops ? G(c.prefixFlops) : '-'} | ${G(c.otherFlops)} | ${M(c.addedParams)} | ${M(c.trainableParams)} |`);
  }
  return lines.join('\n');
}
