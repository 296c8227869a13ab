// The analytic cost model (bench/src/flops.ts) against hand-computed counts on tiny layers, the
// published SD1.5 parameter counts, and the parameter counts of the golden cases' real weight files
// (the configs there are other sizes than SD1.5, so a model walk that only fits SD1.5 would fail).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CostLedger, controlNetCost, controlnextReleaseCost, controlnextTrainingCost, SD15_RELEASE_STRUCTURE,
  SD15_TRAINING_STRUCTURE, summarize, unetCost, type UNetLikeConfig,
} from '../src/flops.js';
import { SD15_UNET_CONFIG } from '../src/sd15_configs.js';
import { stepCost } from '../src/variants.js';
import { CpuBackend, ShapeRecorder } from '@cnx/tensor';
import { UNet2DConditionModel } from '@cnx/unet';
import { SDXL_CONTROLNEXT_STRUCTURE, SDXL_UNET_CONFIG } from '../src/sdxl_configs.js';
import { sdxlStepCost } from '../src/sdxl_variants.js';
import { BENCH_MODELS } from '../src/bench_model.js';
import { GOLDEN_ROOT } from '../../test/harness/golden_root.js';

const GOLDEN = GOLDEN_ROOT;

/** Total element count of every tensor in a safetensors file (header only). */
function safetensorsParams(file: string): number {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { shape?: number[] }>;
  return Object.entries(header).filter(([k]) => k !== '__metadata__')
    .reduce((s, [, v]) => s + (v.shape ?? []).reduce((p, d) => p * d, 1), 0);
}

const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;

describe('cost model primitives', () => {
  it('conv2d: 2*N*O*Ho*Wo*C/g*kh*kw plus the bias, output shape with stride and asymmetric padding', () => {
    const L = new CostLedger(3);
    const out = L.conv2d('c', [4, 7, 9], 6, 3, { stride: 2, padding: [0, 1, 0, 1], groups: 2 });
    // Ho = floor((7+1-3)/2)+1 = 3, Wo = floor((9+1-3)/2)+1 = 4
    expect(out).toEqual([6, 3, 4]);
    const outEl = 3 * 6 * 3 * 4;
    expect(L.entries[0]!.flops).toBe(2 * outEl * 2 * 9 + outEl);
    expect(L.entries[0]!.params).toBe(6 * 2 * 9 + 6);
  });
  it('linear: 2*M*K*N (+ M*N bias)', () => {
    const L = new CostLedger(1);
    L.linear('l', 5, 7, 3, false);
    L.linear('lb', 5, 7, 3);
    expect(L.entries.map((e) => [e.flops, e.params])).toEqual([[210, 21], [225, 24]]);
  });
  it('attention: 2*B*H*Lq*Lk*(D+Dv) matmul FLOPs, softmax counted apart', () => {
    const L = new CostLedger(2);
    L.attention('a', 3, 5, 7, 4, 6);
    expect(L.entries.find((e) => e.kind === 'attention')!.flops).toBe(2 * 2 * 3 * 5 * 7 * (4 + 6));
    expect(L.entries.find((e) => e.kind === 'softmax')!.flops).toBe(5 * 2 * 3 * 5 * 7);
    expect(summarize(L).matmulFlops).toBe(2 * 2 * 3 * 5 * 7 * 10);
  });
});

describe('SD1.5 parameter counts from the configs', () => {
  it('UNet2DConditionModel: 859,520,964', () => {
    expect(summarize(unetCost(SD15_UNET_CONFIG, { batch: 1, latent: [64, 64], seqLen: 77 })).params).toBe(859_520_964);
  });
  it('ControlNeXt SD1.5 release module: 5,352,327; SD1.5-Training module: 3,526,400 (spec §3.1, §4.1)', () => {
    const opts = { batch: 1, featureBatch: 1, image: [512, 512] as const };
    expect(summarize(controlnextReleaseCost(SD15_RELEASE_STRUCTURE, { ...opts, feature: [1280, 8, 8] })).params).toBe(5_352_327);
    expect(summarize(controlnextTrainingCost(SD15_TRAINING_STRUCTURE, { ...opts, feature: [320, 32, 32] })).params).toBe(3_526_400);
  });
  it('UNet MACs per image at 512x512 are the spec estimate (~402 G), per-step FLOPs scale with the CFG batch', () => {
    const perImage = summarize(unetCost(SD15_UNET_CONFIG, { batch: 1, latent: [64, 64], seqLen: 77 })).matmulFlops / 2;
    expect(perImage / 1e9).toBeGreaterThan(395);
    expect(perImage / 1e9).toBeLessThan(410);
    expect(stepCost('base', { resolution: [512, 512], images: 1 }).stepFlops).toBe(4 * perImage);
  });
  it('the optimised light path costs less per step than the reference, and its prefix is excluded', () => {
    const g = { resolution: [512, 512] as const, images: 1 };
    const ref = stepCost('light-ref', g), opt = stepCost('light-opt', g);
    // batch 1 instead of 2: every layer costs half; the prefix moves out of the per-step count.
    expect((opt.controlFlops + opt.prefixFlops) / (ref.controlFlops / 2)).toBeCloseTo(1, 12);
    expect(opt.prefixFlops).toBeGreaterThan(0);
  });
});

describe('golden weight files: counted parameters = stored parameters', () => {
  it('sd15_unet tiny UNet', () => {
    const cfg = readJson(join(GOLDEN, 'sd15_unet/unet/config.json')) as unknown as UNetLikeConfig;
    const L = unetCost(cfg, { batch: 1, latent: [16, 16], seqLen: 77 });
    expect(summarize(L).params).toBe(safetensorsParams(join(GOLDEN, 'sd15_unet/unet/diffusion_pytorch_model.safetensors')));
  });
  it('sd15_controlnet tiny ControlNet', () => {
    const cfg = readJson(join(GOLDEN, 'sd15_controlnet/controlnet/config.json')) as unknown as UNetLikeConfig;
    const L = controlNetCost(cfg, { batch: 1, image: [64, 64], latent: [8, 8], seqLen: 77 });
    expect(summarize(L).params).toBe(safetensorsParams(join(GOLDEN, 'sd15_controlnet/controlnet/diffusion_pytorch_model.safetensors')));
  });
  it('sd15_controlnext (release layout) and sd15_controlnext_training (light layout) tiny modules', () => {
    const rel = readJson(join(GOLDEN, 'sd15_controlnext/case.json')) as { models: { controlnext: { structure: typeof SD15_RELEASE_STRUCTURE } } };
    const s = rel.models.controlnext.structure;
    const r = controlnextReleaseCost(s, { batch: 1, featureBatch: 1, image: [48, 48], feature: [s.mid_out_channels, 1, 1] });
    expect(summarize(r).params).toBe(safetensorsParams(join(GOLDEN, 'sd15_controlnext/controlnext/controlnet.safetensors')));
    const tr = readJson(join(GOLDEN, 'sd15_controlnext_training/case.json')) as {
      models: { controlnext: { constructor: Omit<typeof SD15_TRAINING_STRUCTURE, 'mid_out_channels'>; structure: { mid_out_channels: number } } };
    };
    const m = tr.models.controlnext;
    const t = controlnextTrainingCost({ ...m.constructor, mid_out_channels: m.structure.mid_out_channels },
      { batch: 1, featureBatch: 1, image: [48, 48], feature: [m.structure.mid_out_channels, 3, 3] });
    expect(summarize(t).params).toBe(safetensorsParams(join(GOLDEN, 'sd15_controlnext_training/controlnext/controlnext.safetensors')));
  });
});

describe('SDXL (--model sdxl)', () => {
  it('UNet2DConditionModel (SDXL base config): the counted parameters are the built model\'s, 2,567,463,684', () => {
    const L = unetCost(SDXL_UNET_CONFIG, { batch: 1, latent: [128, 128], seqLen: 77 });
    const recorder = new ShapeRecorder();
    new UNet2DConditionModel(SDXL_UNET_CONFIG as unknown as Record<string, unknown>, recorder, new CpuBackend());
    expect(summarize(L).params).toBe(recorder.parameterCount());
    expect(summarize(L).params).toBe(2_567_463_684);
    expect(BENCH_MODELS.sdxl.unetParams).toBe(2_567_463_684);
    expect(BENCH_MODELS.sd15.unetParams).toBe(summarize(unetCost(SD15_UNET_CONFIG, { batch: 1, latent: [64, 64], seqLen: 77 })).params);
  });
  it('sdxl_unet tiny UNet (text_time, transformer_layers_per_block): counted parameters = stored parameters', () => {
    const cfg = readJson(join(GOLDEN, 'sdxl_unet/unet/config.json')) as unknown as UNetLikeConfig;
    const L = unetCost(cfg, { batch: 1, latent: [8, 8], seqLen: 77 });
    expect(summarize(L).params).toBe(safetensorsParams(join(GOLDEN, 'sdxl_unet/unet/diffusion_pytorch_model.safetensors')));
  });
  it('ControlNeXt-SDXL: 3,526,400 module parameters, 102,483,200 attn2.to_out UNet parameters trained (spec §5.1, §5.4)', () => {
    const c = sdxlStepCost('sdxl-ref', { resolution: [1024, 1024], images: 1 });
    expect(c.addedParams).toBe(3_526_400);
    expect(c.trainableParams).toBe(3_526_400 + 102_483_200);
    expect(SDXL_CONTROLNEXT_STRUCTURE.mid_out_channels).toBe(SDXL_UNET_CONFIG.block_out_channels[0]);
  });
  it('at 1024x1024: the module is ~207 GMAC per image per step (spec §5.1), ~6 % of the UNet as the reference runs it; ours is half the module minus its prefix', () => {
    const g = { resolution: [1024, 1024] as const, images: 1 };
    const base = sdxlStepCost('base', g), ref = sdxlStepCost('sdxl-ref', g), opt = sdxlStepCost('sdxl-opt', g);
    const perImageMacs = ref.controlFlops / 2 / 2;
    expect(perImageMacs / 1e9).toBeGreaterThan(200);
    expect(perImageMacs / 1e9).toBeLessThan(215);
    expect(ref.controlFlops / base.stepFlops).toBeGreaterThan(0.055);
    expect(ref.controlFlops / base.stepFlops).toBeLessThan(0.07);
    expect((opt.controlFlops + opt.prefixFlops) / (ref.controlFlops / 2)).toBeCloseTo(1, 12);
    expect(opt.prefixFlops).toBeGreaterThan(0);
    expect(opt.stepFlops).toBeLessThan(ref.stepFlops);
  });
});
