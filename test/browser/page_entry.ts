// The browser test's page (bundled by browser.test.ts with esbuild for the browser, from the packages'
// browser entries: no Node module reachable). It acquires WebGPU from navigator.gpu through
// createBackend('webgpu') and offers the test three calls on window.cnxTest:
//  - adapter(): the backend's description and adapter report (what ran);
//  - runCase(name, seed): one case of op_cases.ts on WebGPU, outputs as plain arrays;
//  - runPipeline(opts): the tiny random model built from its files in memory (tinyModelFiles ->
//    pipelineFromFiles, the path a page loading a real model takes), one generation, latents and image.
// Errors are returned as { error } so the test reports them instead of timing out.

import { createBackend } from '@cnx/kernels';
import { pipelineFromFiles, splitTinyModelFiles, tinyModelFiles } from '@cnx/controlnext';
import type { Backend, Tensor } from '@cnx/tensor';
import { caseInputs, OP_CASES } from './op_cases.js';
import { controlData, type PipelineRun } from './pipeline_case.js';

export interface CaseResult { outputs?: { shape: number[]; data: number[] }[]; error?: string; ms?: number }

let backend: Backend | undefined;
async function gpu(): Promise<Backend> {
  backend ??= await createBackend('webgpu');
  return backend;
}

async function read(ts: Tensor[]): Promise<{ shape: number[]; data: number[] }[]> {
  const out: { shape: number[]; data: number[] }[] = [];
  for (const t of ts) out.push({ shape: [...t.shape], data: Array.from(await t.data()) });
  return out;
}

const api = {
  async adapter(): Promise<{ description?: string; report?: unknown; error?: string; secureContext: boolean; hasGpu: boolean }> {
    const base = { secureContext: globalThis.isSecureContext, hasGpu: 'gpu' in navigator };
    try {
      const b = await gpu() as Backend & { report?: unknown };
      return { ...base, description: b.description, report: b.report };
    } catch (e) {
      return { ...base, error: e instanceof Error ? e.message : String(e) };
    }
  },

  async runCase(name: string, seed: number): Promise<CaseResult> {
    const c = OP_CASES.find((k) => k.name === name);
    if (!c) return { error: `no case '${name}'` };
    try {
      const b = await gpu();
      const t0 = performance.now();
      const inputs = caseInputs(c, seed).map((d, i) => b.fromRaw(d, c.inputs[i]!.shape));
      const outs = c.run(inputs);
      const outputs = await read(outs);
      for (const t of [...outs, ...inputs]) if (!t.isDisposed) t.dispose();
      return { outputs, ms: performance.now() - t0 };
    } catch (e) {
      return { error: e instanceof Error ? `${e.message}\n${e.stack ?? ''}` : String(e) };
    }
  },

  async runPipeline(o: PipelineRun): Promise<{ latents?: number[]; image?: number[]; shape?: number[]; ms?: number; error?: string }> {
    try {
      const b = await gpu();
      const t0 = performance.now();
      const { sd, controlnext, controlnextUnet } = splitTinyModelFiles(await tinyModelFiles({ seed: o.modelSeed }));
      const { pipeline } = pipelineFromFiles(sd, b, { controlnext, controlnextUnet });
      const controlImage = b.fromRaw(controlData(o.size), [1, 3, o.size, o.size]);
      const r = await pipeline.generate({ prompt: o.prompt, numInferenceSteps: o.steps, seed: o.seed, height: o.size, width: o.size, controlImage });
      const latents = Array.from(await r.latents.data()), image = Array.from(await r.images.data());
      const shape = [...r.images.shape];
      r.latents.dispose();
      r.images.dispose();
      controlImage.dispose();
      pipeline.dispose();
      return { latents, image, shape, ms: performance.now() - t0 };
    } catch (e) {
      return { error: e instanceof Error ? `${e.message}\n${e.stack ?? ''}` : String(e) };
    }
  },
};

(globalThis as unknown as { cnxTest: typeof api }).cnxTest = api;
document.title = 'cnx browser test: ready';
