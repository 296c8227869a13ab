// The tiny pipeline run of the browser test, shared by the page (page_entry.ts) and Node (browser.test.ts):
// the tiny random SD1.5 + ControlNeXt (tinyModelFiles, seed modelSeed) built from its files, one
// generation with classifier-free guidance and a deterministic control image.

export interface PipelineRun { seed: number; steps: number; size: number; prompt: string; modelSeed: number }

export const PIPELINE_RUN: PipelineRun = { seed: 11, steps: 2, size: 32, prompt: 'a red cube', modelSeed: 3 };

/** The control image of a pipeline run, [1, 3, size, size] in [0, 1]: deterministic, the same in Node. */
export function controlData(size: number): Float32Array {
  return Float32Array.from({ length: 3 * size * size }, (_, i) => ((i * 37) % 11) / 10);
}
