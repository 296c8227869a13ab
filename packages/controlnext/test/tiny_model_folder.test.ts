// `cnx tiny-model DIR` / tinyModelFiles: the tiny random model as a real folder. Loaded through the same
// path as a real SD1.5 folder (loadPipeline from disk, pipelineFromFiles from bytes), with its ControlNeXt
// module and partial UNet file, it gives exactly tinyPipeline's image (same weights, same scheduler
// config); the folder has the diffusers layout; the command refuses a non-empty folder and bad usage.

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend, type Backend, type Tensor } from '@cnx/tensor';
import {
  loadPipeline, main, pipelineFromFiles, readImage, splitTinyModelFiles, tinyModelFiles, tinyPipeline, type DiffusionPipeline,
} from '@cnx/controlnext';

const dir = mkdtempSync(join(tmpdir(), 'cnx-tiny-model-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await main(argv, {
    stdout: { write: (s: string) => { out += s; return true; } },
    stderr: { isTTY: false, write: (s: string) => { err += s; return true; } },
  });
  return { code, out, err };
}

const control = (b: Backend): Tensor => b.fromRaw(Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => ((i * 7) % 5) / 4), [1, 3, 64, 64]);

async function image(p: DiffusionPipeline, b: Backend): Promise<Float32Array> {
  const r = await p.generate({ prompt: 'a cat', negativePrompt: 'dog', numInferenceSteps: 2, seed: 3, height: 64, width: 64, controlImage: control(b) });
  const d = await r.images.data();
  r.images.dispose();
  r.latents.dispose();
  p.dispose();
  return d;
}

describe('the tiny model folder', () => {
  const model = join(dir, 'tiny-sd15');

  it('cnx tiny-model writes the diffusers layout with ControlNeXt files and an example condition', async () => {
    const r = await run('tiny-model', model, '--seed', '5');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^wrote .*tiny-sd15: 16 files, 2\.\d MiB, .*RANDOM weights \(seed 5\)/);
    for (const f of ['model_index.json', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.safetensors',
      'text_encoder/model.safetensors', 'tokenizer/vocab.json', 'tokenizer/merges.txt', 'scheduler/scheduler_config.json',
      'controlnext/controlnet.safetensors', 'controlnext/unet.safetensors', 'controlnext/example_condition.png']) {
      expect(existsSync(join(model, f)), f).toBe(true);
    }
    const index = JSON.parse(readFileSync(join(model, 'model_index.json'), 'utf8')) as Record<string, unknown>;
    expect(index._class_name).toBe('StableDiffusionPipeline');
    expect(index.unet).toEqual(['diffusers', 'UNet2DConditionModel']);
    expect(readImage(join(model, 'controlnext', 'example_condition.png')).shape).toEqual([128, 128, 3]);
  });

  it('loaded from disk with its ControlNeXt files, it gives exactly tinyPipeline\'s image (same seed)', async () => {
    const b = new CpuBackend();
    const expected = await image(tinyPipeline(b, { seed: 5 }), b);
    const { pipeline, partialUnet } = loadPipeline(model, b, {
      controlnext: join(model, 'controlnext', 'controlnet.safetensors'), controlnextUnet: join(model, 'controlnext', 'unet.safetensors'),
    });
    expect(partialUnet?.mode).toBe('replace');
    expect(partialUnet?.keys.length).toBeGreaterThan(0);
    const got = await image(pipeline, b);
    expect(got).toEqual(expected);
    b.destroy();
  }, 120_000);

  it('from bytes (pipelineFromFiles, the browser path): the same image', async () => {
    const b = new CpuBackend();
    const { sd, controlnext, controlnextUnet } = splitTinyModelFiles(await tinyModelFiles({ seed: 5 }));
    const got = await image(pipelineFromFiles(sd, b, { controlnext, controlnextUnet }).pipeline, b);
    expect(got).toEqual(await image(tinyPipeline(b, { seed: 5 }), b));
    b.destroy();
  }, 120_000);

  it('refuses a non-empty folder (exit 1) and a missing DIR (usage, exit 2)', async () => {
    const again = await run('tiny-model', model);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/is not empty; choose a new folder \(or overwrite: --overwrite\)/);
    expect((await run('tiny-model', model, '--overwrite')).code).toBe(0);
    const none = await run('tiny-model');
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/the output folder DIR is missing/);
  });
});
