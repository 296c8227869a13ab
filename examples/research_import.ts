// Research use: import the packages into your own script, load an SD1.5 + ControlNeXt folder and look
// inside the denoising loop. Here: how much does the control change the noise prediction at each step?
// Two generations with the same seed, control scale 0 and 1; at every step the named step tensor
// 'noise_pred' (after classifier-free guidance) is captured through onStepEnd, and the relative RMS
// difference between the two runs is written as CSV, with both images.
//
//   node examples/dist/research_import.js [--model DIR --controlnext FILE [--controlnext-unet FILE]]
//        [--control-image PNG] [--steps N] [--size PX] [--backend wasm|cpu|webgpu] [--out DIR]
//
// Without --model it runs on the tiny random model (written to a temporary folder). test/examples_scripts.test.ts runs it.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ControllableDiffusionPipeline, imageToTensor, readImage, resizeImage, tensorToImages, writePng } from '@cnx/controlnext';
import type { Tensor } from '@cnx/tensor';
import { exampleArgs, openExample } from './example_model.js';

/** One generation; the CFG-combined noise prediction of every step, copied to the host. */
export async function noisePredictions(pipeline: ControllableDiffusionPipeline, control: Tensor, scale: number, steps: number, seed: number):
Promise<{ preds: Float32Array[]; images: Tensor }> {
  const preds: Float32Array[] = [];
  const { images, latents } = await pipeline.generate({
    prompt: 'a cozy room', negativePrompt: 'PBH', controlImage: control, controlScale: scale, numInferenceSteps: steps, seed,
    stepTensors: ['noise_pred'],
    onStepEnd: async (_state, t) => { preds.push(await t['noise_pred']!.data()); },
  });
  latents.dispose();
  return { preds, images };
}

/** Relative RMS difference ||a - b|| / ||b||. */
export function relRms(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i]! - b[i]!) ** 2; den += b[i]! ** 2; }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

export async function main(argv: string[]): Promise<void> {
  const a = await exampleArgs(argv, { steps: 4, size: 128 }, { 'control-image': { type: 'string' } });
  const { backend, pipeline } = await openExample(a);
  if (!(pipeline instanceof ControllableDiffusionPipeline)) throw new Error('this example reads SD 1.x/2.x folders; the folder is SDXL');
  const controlPath = a.values['control-image'] ?? a.exampleImage;
  if (!controlPath) throw new Error('--control-image PNG is needed with --model');
  const control = imageToTensor(resizeImage(readImage(controlPath), a.size, a.size), backend);
  const off = await noisePredictions(pipeline, control, 0, a.steps, 7);
  const on = await noisePredictions(pipeline, control, 1, a.steps, 7);
  const rows = on.preds.map((p, i) => `${i},${relRms(p, off.preds[i]!)}`);
  writeFileSync(join(a.out, 'control_effect.csv'), `step,rel_rms_noise_pred_change\n${rows.join('\n')}\n`);
  for (const [name, r] of [['scale0.png', off], ['scale1.png', on]] as const) {
    writePng(join(a.out, name), (await tensorToImages(r.images))[0]!);
    r.images.dispose();
  }
  console.log(`control_effect.csv: ${rows.map((r) => r.split(',')[1]!.slice(0, 6)).join(', ')} (per step); wrote scale0.png, scale1.png`);
  control.dispose();
  pipeline.dispose();
  backend.destroy();
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main(process.argv.slice(2));
