// `cnx generate --model DIR` on a diffusers folder assembled from the golden cases' tiny models (UNet,
// VAE, scheduler config of sd15_pipeline_controlnext; the clip_text text encoder; a byte-level
// tokenizer written here), with the case's ControlNeXt module, the sd15_controlnext_unet_merge partial
// UNet and the sd15_lora kohya LoRA, or the
// sd15_controlnet case's diffusers ControlNet: the whole
// folder-loading path runs, and a folder missing a part fails naming it.

import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import ndarray from 'ndarray';
import { bytesToUnicode } from '@cnx/unet';
import { CpuBackend } from '@cnx/tensor';
import { loadPipeline, main, readImage, writePng } from '@cnx/controlnext';
import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';

const golden = GOLDEN_ROOT;
const pipeCase = join(golden, 'sd15_pipeline_controlnext');
if (!existsSync(pipeCase)) throw new Error(`golden case folder ${pipeCase} not found (set CNX_GOLDEN_DIR)`);

const dir = mkdtempSync(join(tmpdir(), 'cnx-model-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function assembleModel(root: string, parts: string[]): void {
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionPipeline' }));
  const links: Record<string, string> = {
    unet: join(pipeCase, 'unet'), vae: join(pipeCase, 'vae'), scheduler: join(pipeCase, 'scheduler'), text_encoder: join(golden, 'clip_text', 'text_encoder'),
  };
  for (const p of parts) {
    if (p === 'tokenizer') {
      mkdirSync(join(root, 'tokenizer'));
      const vocab: Record<string, number> = {};
      for (const s of bytesToUnicode()) { vocab[s] = Object.keys(vocab).length; vocab[`${s}</w>`] = Object.keys(vocab).length; }
      vocab['<|startoftext|>'] = Object.keys(vocab).length;
      vocab['<|endoftext|>'] = Object.keys(vocab).length;
      writeFileSync(join(root, 'tokenizer', 'vocab.json'), JSON.stringify(vocab));
      writeFileSync(join(root, 'tokenizer', 'merges.txt'), '#version: 0.2\n');
    } else symlinkSync(links[p]!, join(root, p));
  }
}

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await main(argv, {
    stdout: { write: (s: string) => { out += s; return true; } },
    stderr: { isTTY: false, write: (s: string) => { err += s; return true; } },
  });
  return { code, out, err };
}

describe('cnx generate --model', () => {
  it('loads the folder, the ControlNeXt module and a LoRA, and writes the image', async () => {
    const model = join(dir, 'sd');
    assembleModel(model, ['unet', 'vae', 'scheduler', 'text_encoder', 'tokenizer']);
    const ctrlPath = join(dir, 'control.png');
    writePng(ctrlPath, ndarray(Float32Array.from({ length: 64 * 64 * 3 }, (_, i) => ((i * 13) % 17) / 16), [64, 64, 3]));
    const outPath = join(dir, 'out.png');
    const r = await run('generate', '--model', model, '--controlnext', join(pipeCase, 'controlnext'),
      '--controlnext-unet', join(golden, 'sd15_controlnext_unet_merge', 'sd15_controlnext_unet', 'unet.safetensors'),
      '--control-image', ctrlPath, '--control-type', 'passthrough', '--lora', `${join(golden, 'sd15_lora', 'lora.safetensors')}:0.5`,
      '--prompt', 'a test', '--steps', '1', '--seed', '1', '--width', '64', '--height', '64', '--output', outPath);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/lora: .*lora\.safetensors merged into 13 weights \(scale 0\.5\)/);
    expect(r.err).toMatch(/controlnext unet: replaced \d+ tensors from .*unet\.safetensors/);
    expect(r.err).not.toMatch(/RANDOM/);
    expect(r.err).toMatch(/controlnext: variant sd15 \(detected: 'down_res\.0\.norm1\.weight' is \[3\]/);
    expect(r.out).toMatch(/^wrote .*out\.png 64x64 seed=1 steps=1 scheduler=unipc/);
    expect(readImage(outPath).shape).toEqual([64, 64, 3]);
  }, 300_000);

  it('a diffusers ControlNet: scale 0 gives exactly the uncontrolled image, scale 1 another one', async () => {
    const b = new CpuBackend();
    const model = join(dir, 'sd');
    const controlnet = join(golden, 'sd15_controlnet', 'controlnet');
    const cond = b.fromRaw(Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => ((i * 7) % 5) / 4), [1, 3, 64, 64]);
    const run1 = async (opts: { controlnet?: string }, scale: number) => {
      const { pipeline } = loadPipeline(model, b, opts);
      const r = await pipeline.generate({ prompt: 'x', numInferenceSteps: 2, seed: 9, height: 64, width: 64, controlImage: opts.controlnet ? cond : undefined, controlScale: scale });
      const d = await r.images.data();
      r.images.dispose(); r.latents.dispose();
      pipeline.dispose();
      return d;
    };
    const plain = await run1({}, 1);
    const zero = await run1({ controlnet }, 0);
    const full = await run1({ controlnet }, 1);
    expect(zero).toEqual(plain);
    expect(full).not.toEqual(plain);
    const r = await run('generate', '--model', model, '--controlnet', controlnet, '--control-image', join(dir, 'control.png'),
      '--prompt', 'x', '--steps', '1', '--width', '64', '--height', '64', '--output', join(dir, 'cn.png'));
    expect(r.code, r.err).toBe(0);
  }, 300_000);

  it('a folder without a text encoder and tokenizer names what is missing and what the layout is', async () => {
    const model = join(dir, 'partial');
    assembleModel(model, ['unet', 'vae', 'scheduler']);
    const r = await run('generate', '--model', model, '--prompt', 'x', '--steps', '1');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/is missing text_encoder\/config\.json, tokenizer\/vocab\.json, tokenizer\/merges\.txt \(a Stable Diffusion diffusers folder holds model_index\.json/);
  });

  it('a control image without a control model is a usage error', async () => {
    const r = await run('generate', '--model', join(dir, 'sd'), '--control-image', join(dir, 'control.png'));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--control-image needs a control model: --controlnext FILE .* or --controlnet DIR/);
  });
});
