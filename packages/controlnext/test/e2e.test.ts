// End to end on the golden cases' tiny models (golden/sd15_pipeline_controlnext: UNet, VAE,
// ControlNeXt-SD1.5 module and scheduler config; clip_text: the text encoder), with a byte-level
// tokenizer: a picture drawn here -> the project's Canny control type -> a few sampling steps -> a PNG
// written and read back. The same seed gives the same image on the same backend, and the control
// changes the result.

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect } from 'vitest';
import type { Backend, Tensor } from '@cnx/tensor';
import { AutoencoderKL, CLIPTextModel, UNet2DConditionModel, createScheduler, readSchedulerConfigFile } from '@cnx/unet';
import {
  ClipPromptEncoder, ControllableDiffusionPipeline, ControlNeXt, ControlNeXtControl, findControlType,
  readImage, tensorToImages, tinyTokenizer, writePng,
} from '@cnx/controlnext';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';

const golden = GOLDEN_ROOT;
const caseDir = join(golden, 'sd15_pipeline_controlnext');
if (!existsSync(join(caseDir, 'case.json'))) throw new Error(`e2e: golden case folder ${caseDir} not found (set CNX_GOLDEN_DIR)`);
const caseJson = JSON.parse(readFileSync(join(caseDir, 'case.json'), 'utf8')) as { models: Record<string, { path: string; structure?: { groups?: number[] } }> };

const out = mkdtempSync(join(tmpdir(), 'cnx-e2e-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** A 64x64 RGB picture: a bright disc and a dark bar on a grey background, interleaved [H, W, 3]. */
function picture(size: number): { data: Float32Array; height: number; width: number } {
  const data = new Float32Array(size * size * 3);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
    let v = 0.5;
    if ((x - 40) ** 2 + (y - 24) ** 2 < 12 ** 2) v = 0.95;
    if (x > 8 && x < 30 && y > 40 && y < 52) v = 0.05;
    data.set([v, v * 0.9, v * 0.8], (y * size + x) * 3);
  }
  return { data, height: size, width: size };
}

function loadPipeline(b: Backend): ControllableDiffusionPipeline {
  const m = caseJson.models;
  const unet = UNet2DConditionModel.fromFolder(join(caseDir, m['unet']!.path), b);
  const vae = AutoencoderKL.fromFolder(join(caseDir, m['vae']!.path), b);
  const cnx = ControlNeXt.load(join(caseDir, m['controlnext']!.path), b, { variant: 'sd15', groups: m['controlnext']!.structure?.groups });
  const text = CLIPTextModel.fromFolder(join(golden, 'clip_text', 'text_encoder'), b);
  const scheduler = createScheduler('UniPCMultistepScheduler', readSchedulerConfigFile(join(caseDir, m['scheduler']!.path, 'scheduler_config.json')));
  return new ControllableDiffusionPipeline({
    unet, vae, scheduler, textEncoder: new ClipPromptEncoder(tinyTokenizer(), text), control: new ControlNeXtControl(cnx),
  });
}

describeEachBackend('e2e', (test, name) => {
  const steps = name === 'cpu' ? 3 : 2;
  test(`canny control -> ${steps} steps -> PNG written and read back; same seed, same image`, async (b) => {
    const pipe = loadPipeline(b);
    const canny = await findControlType('canny');
    const control: Tensor = await canny.prepare(picture(64), b, {});
    const cdata = await control.data();
    expect(cdata.some((v) => v > 0.5) && cdata.some((v) => v < 0.5), 'the canny map has edges and background').toBe(true);
    const gen = async (seed: number, controlScale = 1) => {
      const r = await pipe.generate({
        prompt: 'a disc and a bar', negativePrompt: 'PBH', numInferenceSteps: steps, guidanceScale: 7.5, seed, controlImage: control, controlScale,
      });
      r.latents.dispose();
      return r.images;
    };
    const images = await gen(42);
    expect(images.shape).toEqual([1, 3, 64, 64]);
    const [img] = await tensorToImages(images);
    const path = join(out, `e2e-${name}.png`);
    writePng(path, img!);
    const back = readImage(path);
    expect(back.shape).toEqual([64, 64, 3]);
    let maxDiff = 0;
    for (let i = 0; i < back.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(back.data[i]! - img!.data[i]!));
    expect(maxDiff).toBeLessThanOrEqual(0.5 / 255 + 1e-6); // 8-bit quantisation only
    const first = await images.data();
    const again = await gen(42);
    expect(await again.data()).toEqual(first);
    if (name === 'cpu') {
      const other = await gen(43);
      expect(await other.data()).not.toEqual(first);
      const uncontrolled = await gen(42, 0);
      expect(await uncontrolled.data()).not.toEqual(first);
      [other, uncontrolled].forEach((t) => t.dispose());
    }
    [images, again, control].forEach((t) => t.dispose());
    pipe.dispose();
  }, 600_000);
});
