// The machine-readable record of one `npm run bench` run (bench/results/<backend>-<res>.json).

import type { RunEnvironment } from './environment.js';
import type { MachineLoad } from './machine_load.js';
import type { SampleStats } from './stats.js';

export interface VariantResult {
  /** A configuration id of the model (variants.ts for SD1.5, sdxl_variants.ts for SDXL). */
  id: string;
  label: string;
  /** Per-step wall time in ms (after backend.sync()), over the timed steps. */
  latencyMs: SampleStats;
  /** Raw per-step samples in ms. */
  samplesMs: number[];
  /** Once-per-generation work of the optimised path (prepare), ms; absent elsewhere. */
  prefixMs?: number;
  /** (median - base median) / base median, in %. */
  overheadPct: number;
  /**
   * Per-step GPU time in ms: the summed execution time of the step's compute passes from timestamp
   * queries (WebGPU where the device has 'timestamp-query'; absent elsewhere). Copies, clears, uploads
   * and the gaps between passes are not in it.
   */
  gpuMs?: SampleStats;
  /** Raw per-step GPU times in ms, in the order of samplesMs. */
  gpuSamplesMs?: number[];
  /** (GPU median - base GPU median) / base GPU median, in %. */
  gpuOverheadPct?: number;
  /** GPU time of the prefix (prepare), ms, where prefixMs and GPU times are both there. */
  prefixGpuMs?: number;
  /** Matmul-class FLOPs (conv + linear + attention) per step, analytic (bench/src/flops.ts). */
  stepFlops: number;
  controlFlops: number;
  prefixFlops: number;
  otherFlops: number;
  flopOverheadPct: number;
  /** stepFlops / median latency. */
  achievedGflops: number;
  addedParams: number;
  trainableParams: number;
  memory: {
    /** Backend bytes live when the timed steps began (weights of every model held). */
    liveAtStartBytes: number;
    /** Backend high-water mark during the timed steps (resetPeak before them). */
    backendPeakBytes: number;
    /** backendPeakBytes - liveAtStartBytes: activations and temporaries of one step. */
    stepWorkingBytes: number;
    /** Weights of this configuration's control network. */
    controlWeightBytes: number;
    hostPeakRssBytes: number;
    hostPeakHeapBytes: number;
  };
}

/** What every bench record starts with: where it ran, on which backend, at which size, how many steps. */
export interface RunHeader {
  environment: RunEnvironment;
  backend: { name: string; description: string; adapter?: string; timing: string };
  resolution: [number, number];
  latent: [number, number];
  steps: number;
  warmup: number;
  seed: number;
}

export interface BenchRecord extends RunHeader {
  tool: 'controlnext-ts bench';
  model: string;
  /** The architecture (--model): 'SD1.5' or 'SDXL'; absent in records before --model (SD1.5). */
  architecture?: string;
  images: number;
  unetBatch: number;
  dtype: string;
  /**
   * What --dtype gave (absent in records before issue 16): the weight storage dtype, the compute in
   * effect ('f16' only on a WebGPU device with shader-f16; the CPU reference computes in float64), why
   * f16 compute did not run, and the device's features.
   */
  precision?: { weightDtype: string; compute: string; note?: string; features?: string[]; adapterFeatures?: string[]; instanceOptions?: string[] };
  /** UNet build time (random weights), s. */
  buildSeconds: number;
  variants: VariantResult[];
  notes: string[];
  /** CPU model, core count, load averages before and after the run (machine_load.ts). */
  machine?: MachineLoad;
  /** Why some numbers should not be trusted: samples spread over the overhead, a busy machine (spread_warnings.ts, machine_load.ts). */
  warnings?: string[];
}

/** The record of one `npm run bench -- --train` run (bench/results/train-<backend>-<res>.json): one training step, timed by phase. */
export interface TrainBenchRecord extends RunHeader {
  tool: 'controlnext-ts bench --train';
  /** What a step is: the models, the trainable set, the loss. */
  model: string;
  /** Training samples per step (no CFG in training). */
  batch: number;
  /** UNet + module + optimizer build time (random weights), s. */
  buildSeconds: number;
  optimizer: { name: 'AdamW'; fused: boolean; betas: [number, number]; eps: number; weightDecay: number; groups: { what: string; lr: number; params: number }[] };
  /** Trainable parameters as built (counted from the models' tensors) and as the cost model counts them. */
  trainableParams: { module: number; unetToOut: number; total: number; costModel: number };
  /** Per-step wall time of the whole step and of each phase, ms (each phase up to the queue drain). */
  stepMs: SampleStats;
  forwardMs: SampleStats;
  backwardMs: SampleStats;
  optimizerMs: SampleStats;
  /** Raw per-step samples, ms, in step order. */
  samplesMs: { step: number[]; forward: number[]; backward: number[]; optimizer: number[] };
  /** Summed GPU pass time per phase, medians in ms (timestamp queries; WebGPU with 'timestamp-query' only). */
  gpuMs?: { forward: number; backward: number; optimizer: number };
  /** Analytic FLOPs per step (bench/src/training_cost.ts): matmul-class and other, per pass. */
  flops: { forward: { matmul: number; other: number }; backward: { matmul: number; other: number }; optimizer: number };
  /** Matmul-class FLOPs / median wall time of the pass (step: forward + backward matmul over the step median). */
  achievedGflops: { step: number; forward: number; backward: number };
  memory: {
    /** Backend bytes live at the start of a step: weights, the optimizer's flat parameters and moments. */
    liveAtStartBytes: number;
    /** Backend high-water mark over the timed steps (resetPeak before each). */
    backendPeakBytes: number;
    /** backendPeakBytes - liveAtStartBytes: the tape, gradients and temporaries of one step. */
    stepWorkingBytes: number;
    /** exp_avg + exp_avg_sq, f32. */
    optimizerStateBytes: number;
    hostPeakRssBytes: number;
    hostPeakHeapBytes: number;
  };
  notes: string[];
  machine: MachineLoad;
  warnings: string[];
}
