// Shared by the runnable example scripts: the model folder they run on. With --model DIR (a diffusers
// SD1.5 folder) and --controlnext FILE [--controlnext-unet FILE] they load those; without, they write
// the tiny random-weight model (`cnx tiny-model`, real layout) to a temporary folder and use it, so
// every script runs in seconds with nothing downloaded (its images are noise).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createBackend } from '@cnx/kernels';
import type { Backend } from '@cnx/tensor';
import { loadPipeline, writeTinyModel, type LoadedPipeline } from '@cnx/controlnext';

export interface ExampleArgs {
  model: string;
  controlnext: string;
  controlnextUnet?: string;
  /** The example condition image of the tiny model, when it is the one used. */
  exampleImage?: string;
  backend: string;
  steps: number;
  size: number;
  out: string;
  /** Whether the model is the tiny random one. */
  tiny: boolean;
}

/** Parse the common flags (plus `extra` string options of the script). */
export async function exampleArgs(argv: string[], defaults: { steps: number; size: number }, extra: Record<string, { type: 'string' }> = {}):
Promise<ExampleArgs & { values: Record<string, string | undefined> }> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' }, controlnext: { type: 'string' }, 'controlnext-unet': { type: 'string' },
      backend: { type: 'string' }, steps: { type: 'string' }, size: { type: 'string' }, out: { type: 'string' }, ...extra,
    },
  });
  const v = values as Record<string, string | undefined>;
  let model = v.model, controlnext = v.controlnext, controlnextUnet = v['controlnext-unet'], exampleImage: string | undefined;
  const tiny = model === undefined;
  if (tiny) {
    const tmp = mkdtempSync(join(tmpdir(), 'cnx-example-'));
    process.once('exit', () => rmSync(tmp, { recursive: true, force: true }));
    model = join(tmp, 'tiny-sd15');
    await writeTinyModel(model);
    controlnext = join(model, 'controlnext', 'controlnet.safetensors');
    controlnextUnet = join(model, 'controlnext', 'unet.safetensors');
    exampleImage = join(model, 'controlnext', 'example_condition.png');
  } else if (!controlnext) {
    throw new Error('--model needs --controlnext FILE (the ControlNeXt control module, controlnet.safetensors)');
  }
  return {
    model: model!, controlnext: controlnext!, ...(controlnextUnet ? { controlnextUnet } : {}), ...(exampleImage ? { exampleImage } : {}),
    backend: v.backend ?? 'wasm', steps: Number(v.steps ?? defaults.steps), size: Number(v.size ?? defaults.size), out: v.out ?? '.', tiny, values: v,
  };
}

export async function openExample(a: ExampleArgs): Promise<{ backend: Backend } & LoadedPipeline> {
  const backend = await createBackend(a.backend);
  console.error(`backend: ${backend.description.split('\n')[0]}`);
  console.error(`model: ${a.model}${a.tiny ? ' (tiny, RANDOM weights: the images are noise)' : ''}`);
  return { backend, ...loadPipeline(a.model, backend, { controlnext: a.controlnext, ...(a.controlnextUnet ? { controlnextUnet: a.controlnextUnet } : {}) }) };
}
