// Analytic cost of one ControlNeXt training step (`npm run bench -- --train`): the forward of the SD1.5
// UNet with the light module (SD1.5-Training) injected after down_blocks[0], the backward the autograd
// tape needs for the recipe's trainable set (every module parameter, every UNet parameter whose name
// holds `to_out`), and the AdamW update. Built on the forward ledgers of flops.ts, walked in forward order.
//
// Backward conventions (what the gradients need, counted from the forward entries' shapes):
//  - conv / linear, matmul part M = flops - biasFlops: the input gradient dX costs M (the transposed
//    product) where the gradient flows back to the input; the weight gradient dW costs M where the
//    weight is trained, plus biasFlops for the bias gradient (a sum over the same outputs).
//  - attention, forward 2 S (D + Dv) for S scores: dV = P^T dO and dK = dS^T Q cost 2 S Dv and 2 S D,
//    dP = dO V^T and dQ = dS K another 2 S Dv and 2 S D: 2x the forward where K and V need gradients
//    (self-attention: they come from the trained path), 1x where only Q does (cross-attention: K and V
//    are frozen projections of the text, which has no gradient).
//  - norms, softmax, elementwise: as many FLOPs as their forward where the gradient passes (an
//    approximation, as the forward counts of these memory-bound ops are; reported apart as "other").
//  - no backward at all where nothing upstream is trained: the UNet before its first `to_out`
//    (conv_in, the time embedding, down_blocks.0.resnets.0, the first self-attention), the timestep
//    embedding inputs, the text projections to_k / to_v of cross-attention, and the input gradient of
//    the module's first conv (its input is the control image) and of its time_embedding.linear_1.
// AdamW (torch.optim.AdamW, fused per group): ADAMW_FLOPS_PER_PARAM per trained parameter.

import { summarize, unetCost, type CostEntry, type CostLedger } from './flops.js';
import { controlLedger, latentOf, toOutParams, VARIANTS, type Geometry } from './variants.js';
import { SD15_SEQ_LEN, SD15_UNET_CONFIG } from './sd15_configs.js';

/**
 * AdamW per parameter (@cnx/tensor cpu/adamw.ts, the scalars precomputed per step): decay p *= 1 - lr wd
 * (1), m = b1 m + (1 - b1) g (3), v = b2 v + (1 - b2) g^2 (4), p -= step_size m / (sqrt(v) / bc2 + eps)
 * (sqrt, div, add, div, mul, sub: 6).
 */
export const ADAMW_FLOPS_PER_PARAM = 14;

export interface BackwardRules {
  /** The entry's parameters are trained: its weight (and bias) gradient is computed. */
  trainable(e: CostEntry): boolean;
  /** The gradient flows back through the entry to its input (the input depends on a trained parameter). */
  inputGrad(e: CostEntry, index: number): boolean;
  /** An attention entry whose K and V need gradients too (else only Q does). */
  keysNeedGrad(e: CostEntry): boolean;
}

export interface PassCost {
  /** conv + linear + attention FLOPs. */
  matmulFlops: number;
  /** norm + softmax + elementwise FLOPs. */
  otherFlops: number;
}

/** Backward FLOPs of a forward ledger under `rules` (conventions at the top of the file). */
export function backwardCost(L: CostLedger, rules: BackwardRules): PassCost {
  let matmulFlops = 0, otherFlops = 0;
  L.entries.forEach((e, i) => {
    const dx = rules.inputGrad(e, i), dw = e.params > 0 && rules.trainable(e);
    if (e.kind === 'conv' || e.kind === 'linear') {
      const bias = e.biasFlops ?? 0, mm = e.flops - bias;
      matmulFlops += (dx ? mm : 0) + (dw ? mm : 0);
      otherFlops += dw ? bias : 0;
    } else if (e.kind === 'attention') {
      if (dx) matmulFlops += (rules.keysNeedGrad(e) ? 2 : 1) * e.flops;
    } else if (dx || dw) {
      otherFlops += e.flops;
    }
  });
  return { matmulFlops, otherFlops };
}

/** Parameters of the entries `trainable` picks. */
export function trainableParamsOf(L: CostLedger, trainable: (e: CostEntry) => boolean): number {
  return L.entries.filter((e) => e.params > 0 && trainable(e)).reduce((s, e) => s + e.params, 0);
}

/** The UNet side under SD1.5-Training: `to_out` trained, the gradient flowing from the first of them on. */
export function unetTrainingRules(L: CostLedger): BackwardRules {
  const isToOut = (e: CostEntry) => e.path.includes('.to_out');
  const first = L.entries.findIndex(isToOut);
  if (first < 0) throw new Error('unetTrainingRules: the UNet ledger has no to_out entry (no attention blocks?)');
  // Inputs that never depend on a trained parameter: the timestep embedding (UNet time_proj,
  // time_embedding.*, each resnet's time_emb_silu / time_emb_proj) and the text (cross-attention to_k, to_v).
  const side = (p: string) => p.startsWith('time_') || /\.time_emb_(silu|proj)$/.test(p) || /\.attn2\.to_[kv]$/.test(p);
  return {
    trainable: isToOut,
    inputGrad: (e, i) => i > first && !side(e.path),
    keysNeedGrad: (e) => !/\.attn2$/.test(e.path),
  };
}

/** The light module: every parameter trained; no input gradient where the input is the image or the timestep. */
export const MODULE_TRAINING_RULES: BackwardRules = {
  trainable: () => true,
  inputGrad: (e) => !['time_proj', 'time_embedding.linear_1', 'embedding.0'].includes(e.path),
  keysNeedGrad: () => true,
};

export interface TrainingStepCost {
  forward: PassCost;
  backward: PassCost;
  optimizerFlops: number;
  /** Module parameters + UNet `to_out` parameters, from the cost model. */
  trainableParams: number;
  moduleParams: number;
  unetToOutParams: number;
}

/**
 * One training step of SD1.5 + the light module (SD1.5-Training) on `g.images` samples (no CFG in
 * training): the module runs on the batch in full every step (no prefix caching: its weights change).
 */
export function trainingStepCost(g: Geometry): TrainingStepCost {
  const unet = unetCost(SD15_UNET_CONFIG, { batch: g.images, latent: latentOf(g), seqLen: SD15_SEQ_LEN });
  const module = controlLedger(VARIANTS['light-ref'], g, { batch: g.images, featureBatch: g.images })!;
  const u = summarize(unet), m = summarize(module);
  const ub = backwardCost(unet, unetTrainingRules(unet)), mb = backwardCost(module, MODULE_TRAINING_RULES);
  const moduleParams = m.params, unetToOutParams = toOutParams(unet);
  const sum = (a: PassCost, b: PassCost): PassCost => ({ matmulFlops: a.matmulFlops + b.matmulFlops, otherFlops: a.otherFlops + b.otherFlops });
  return {
    forward: sum({ matmulFlops: u.matmulFlops, otherFlops: u.otherFlops }, { matmulFlops: m.matmulFlops, otherFlops: m.otherFlops }),
    backward: sum(ub, mb),
    optimizerFlops: ADAMW_FLOPS_PER_PARAM * (moduleParams + unetToOutParams),
    trainableParams: moduleParams + unetToOutParams,
    moduleParams,
    unetToOutParams,
  };
}
