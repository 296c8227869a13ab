// The models `npm run bench` can measure (--model): what main.ts needs of each, so that the timing,
// pre-flight, record and report code is the same for SD1.5 (sd15_step.ts, variants.ts) and SDXL
// (sdxl_step.ts, sdxl_variants.ts).

import type { Backend } from '@cnx/tensor';
import { buildRunner, buildUnet, disposeInputs, makeInputs, unavailableReason, type StepRunner } from './sd15_step.js';
import { buildSdxlRunner, buildSdxlUnet, disposeSdxlInputs, makeSdxlInputs } from './sdxl_step.js';
import { SDXL_VARIANT_IDS, SDXL_VARIANTS, sdxlStepCost, type SdxlVariantId } from './sdxl_variants.js';
import { stepCost, VARIANT_IDS, VARIANTS, type Geometry, type StepCost, type VariantId } from './variants.js';

export const BENCH_MODEL_NAMES = ['sd15', 'sdxl'] as const;
export type BenchModelName = (typeof BENCH_MODEL_NAMES)[number];

/** One model's UNet (random weights) and inputs, built once per run; runners share them. */
export interface BenchSetUp {
  unetParams(): number;
  runner(id: string): Promise<StepRunner>;
  dispose(): void;
}

export interface BenchModel {
  readonly name: BenchModelName;
  /** For progress lines ('SD1.5', 'SDXL'). */
  readonly title: string;
  /** The record's `model`. */
  readonly description: string;
  /** Configuration ids; 'base' first. */
  readonly variantIds: readonly string[];
  /** Parameters of the UNet (pre-flight memory check; checked against the config in bench/test/flops.test.ts). */
  readonly unetParams: number;
  /** Pixel sizes must be multiples of this (8 x 2^(downsamplings)). */
  readonly resolutionMultiple: number;
  /** Prefix of the result file names ('' for SD1.5, whose files predate --model). */
  readonly filePrefix: string;
  label(id: string): string;
  stepCost(id: string, g: Geometry): StepCost;
  unavailableReason(id: string): Promise<string | undefined>;
  setUp(backend: Backend, g: Geometry, seed: number): BenchSetUp;
}

export const BENCH_MODELS: Readonly<Record<BenchModelName, BenchModel>> = {
  sd15: {
    name: 'sd15', title: 'SD1.5', description: 'UNet2DConditionModel (runwayml/stable-diffusion-v1-5 config), random weights',
    variantIds: VARIANT_IDS, unetParams: 859_520_964, resolutionMultiple: 64, filePrefix: '',
    label: (id) => VARIANTS[id as VariantId].label,
    stepCost: (id, g) => stepCost(id as VariantId, g),
    unavailableReason: (id) => unavailableReason(id as VariantId),
    setUp(backend, g, seed) {
      const unet = buildUnet(backend, seed);
      const inputs = makeInputs(backend, g, seed);
      return {
        unetParams: () => unet.numParameters(),
        runner: (id) => buildRunner(id as VariantId, backend, unet, inputs, g, seed),
        dispose() { disposeInputs(inputs); unet.dispose(); },
      };
    },
  },
  sdxl: {
    name: 'sdxl', title: 'SDXL',
    description: 'UNet2DConditionModel (stabilityai/stable-diffusion-xl-base-1.0 config) + ControlNeXt-SDXL ControlNetModel, random weights',
    variantIds: SDXL_VARIANT_IDS, unetParams: 2_567_463_684, resolutionMultiple: 32, filePrefix: 'sdxl-',
    label: (id) => SDXL_VARIANTS[id as SdxlVariantId].label,
    stepCost: (id, g) => sdxlStepCost(id as SdxlVariantId, g),
    unavailableReason: async () => undefined,
    setUp(backend, g, seed) {
      const unet = buildSdxlUnet(backend, seed);
      const inputs = makeSdxlInputs(backend, g, seed);
      return {
        unetParams: () => unet.numParameters(),
        runner: async (id) => buildSdxlRunner(id as SdxlVariantId, backend, unet, inputs, g, seed),
        dispose() { disposeSdxlInputs(inputs); unet.dispose(); },
      };
    },
  },
};
