// The SDXL configurations of `npm run bench -- --model sdxl`, and their analytic cost per denoising step
// (flops.ts). One step with classifier-free guidance for `images` images: the SDXL UNet on the CFG batch
// (2 * images samples, with SDXL's text_time added conditioning); ControlNeXt-SDXL's module
//  - sdxl-ref: as the repo's StableDiffusionXLControlNeXtPipeline runs it (spec §5.3): on the CFG batch
//    (the control image duplicated), the whole module every step;
//  - sdxl-opt: our path (packages/controlnext): once per image (the [1, 320, h, w] map broadcast over the
//    CFG halves by the cross normalisation, exact), the timestep-independent prefix (stride-2 stem, the
//    first ResNet block's conv1 / shortcut) computed once per generation;
// injected after conv_in, normalise-then-pool (spec §5.2).

import { controlnextTrainingCost, summarize, unetCost, type CostLedger, type CostSummary } from './flops.js';
import { SDXL_CONTROLNEXT_STRUCTURE, SDXL_SEQ_LEN, SDXL_UNET_CONFIG } from './sdxl_configs.js';
import { latentOf, type Geometry, type StepCost } from './variants.js';

export const SDXL_VARIANT_IDS = ['base', 'sdxl-ref', 'sdxl-opt'] as const;
export type SdxlVariantId = (typeof SDXL_VARIANT_IDS)[number];

export const SDXL_VARIANTS: Readonly<Record<SdxlVariantId, { label: string; path: 'reference' | 'optimised'; control: boolean }>> = {
  'base': { label: 'SDXL UNet (base)', path: 'reference', control: false },
  'sdxl-ref': { label: '+ ControlNeXt-SDXL, reference (CFG batch, every step)', path: 'reference', control: true },
  'sdxl-opt': { label: '+ ControlNeXt-SDXL, ours (batch 1/image, prefix cached)', path: 'optimised', control: true },
};

export function sdxlUnetLedger(g: Geometry): CostLedger {
  return unetCost(SDXL_UNET_CONFIG, { batch: 2 * g.images, latent: latentOf(g), seqLen: SDXL_SEQ_LEN });
}

export function sdxlControlLedger(id: SdxlVariantId, g: Geometry): CostLedger | undefined {
  const v = SDXL_VARIANTS[id];
  if (!v.control) return undefined;
  const cfgBatch = 2 * g.images;
  const [h, w] = latentOf(g);
  return controlnextTrainingCost(SDXL_CONTROLNEXT_STRUCTURE, {
    batch: v.path === 'optimised' ? g.images : cfgBatch, featureBatch: cfgBatch, image: g.resolution,
    feature: [SDXL_UNET_CONFIG.block_out_channels[0], h, w], injectionPath: 'unet.conv_in_injection',
  });
}

/** UNet parameters matching re.match('.*attn2.*to_out.*'): what ControlNeXt-SDXL trains (spec §5.4, §10). */
function attn2ToOutParams(unet: CostLedger): number {
  return unet.entries.filter((e) => /attn2.*to_out/.test(e.path)).reduce((s, e) => s + e.params, 0);
}

export function sdxlStepCost(id: SdxlVariantId, g: Geometry): StepCost {
  const v = SDXL_VARIANTS[id];
  const unet = sdxlUnetLedger(g);
  const u = summarize(unet);
  const ctl = sdxlControlLedger(id, g);
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
    trainableParams: v.control ? addedParams + attn2ToOutParams(unet) : 0,
    largestTensorBytes: largest.largestTensorBytes,
    largestTensorName: largest.largestTensorName,
  };
}

/** A markdown table of the analytic SDXL costs (bench/README.md). */
export function sdxlFlopTableMarkdown(g: Geometry): string {
  const base = sdxlStepCost('base', g);
  const G = (f: number) => (f / 1e9).toFixed(1);
  const M = (p: number) => (p / 1e6).toFixed(2);
  const lines = [
    `| configuration | GFLOP/step (matmul-class) | control GFLOP/step | FLOP overhead | once per generation GFLOP | other GFLOP/step | added params (M) | trainable params (M) |`,
    `|---|---:|---:|---:|---:|---:|---:|---:|`,
  ];
  for (const id of SDXL_VARIANT_IDS) {
    const c = sdxlStepCost(id, g);
    const ov = id === 'base' ? '-' : `+${((100 * c.controlFlops) / base.stepFlops).toFixed(2)} %`;
    lines.push(`| ${SDXL_VARIANTS[id].label} | ${G(c.stepFlops)} | ${G(c.controlFlops)} | ${ov} | ${c.prefixFlops ? G(c.prefixFlops) : '-'} | ${G(c.otherFlops)} | ${M(c.addedParams)} | ${M(c.trainableParams)} |`);
  }
  return lines.join('\n');
}
