// `cnx generate` on a tiny SDXL folder built here (tiny_sdxl_folder.ts: the sdxl_pipeline_controlnext
// golden case's UNet, VAE and scheduler + two random CLIP encoders) with the case's ControlNeXt-SDXL
// module and attn2.to_out delta file; every released ControlNeXt variant through the CLI (SD1.5 release
// and SD1.5-Training light modules on an SD folder, the SDXL module on the SDXL folder), by --variant and
// detected; the refusals (a ControlNeXt file without a control image before anything loads, a module for
// another base model, an SDXL folder missing its second encoder); and the SDXL pipeline's own rules that
// the golden case does not reach (zeros as the negative side without a negative prompt, image-to-image
// with its default strength and time ids, the refiner layout without text_encoder/, force_upcast,
// bytes == folder).

import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import ndarray from 'ndarray';
import { CpuBackend, type Backend } from '@cnx/tensor';
import { loadPipeline, main, pipelineFromFiles, readImage, StableDiffusionXLPipeline, writePng, type BeginState } from '@cnx/controlnext';
import { buildTinySdxlFolder, writeByteTokenizer } from './tiny_sdxl_folder.js';

const golden = GOLDEN_ROOT;
const sdxlCase = join(golden, 'sdxl_pipeline_controlnext');
const sdCase = join(golden, 'sd15_pipeline_controlnext');
if (!existsSync(sdxlCase)) throw new Error(`golden case folder ${sdxlCase} not found (set CNX_GOLDEN_DIR)`);

const dir = mkdtempSync(join(tmpdir(), 'cnx-sdxl-'));
const sdxl = join(dir, 'sdxl');
const refiner = join(dir, 'sdxl-refiner');
const sd = join(dir, 'sd');
const control = join(dir, 'control.png');
const sdxlModule = join(sdxlCase, 'controlnext');
const sdxlDelta = join(sdxlCase, 'sdxl_controlnext_unet', 'unet.safetensors');

beforeAll(async () => {
  await buildTinySdxlFolder(sdxl, sdxlCase);
  await buildTinySdxlFolder(refiner, sdxlCase, { refiner: true });
  // An SD1.5 folder: the sd15_pipeline_controlnext case's UNet, VAE, scheduler + the clip_text encoder.
  mkdirSync(sd);
  writeFileSync(join(sd, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionPipeline' }));
  for (const p of ['unet', 'vae', 'scheduler']) symlinkSync(join(sdCase, p), join(sd, p));
  symlinkSync(join(golden, 'clip_text', 'text_encoder'), join(sd, 'text_encoder'));
  writeByteTokenizer(join(sd, 'tokenizer'));
  // A 40x56 control image: not the output size (resized by the CLI, as run_controlnext.py does).
  writePng(control, ndarray(Float32Array.from({ length: 40 * 56 * 3 }, (_, i) => ((i * 13) % 17) / 16), [40, 56, 3]));
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await main(argv, {
    stdout: { write: (s: string) => { out += s; return true; } },
    stderr: { isTTY: false, write: (s: string) => { err += s; return true; } },
  });
  return { code, out, err };
}

describe('cnx generate with an SDXL folder', () => {
  it('ControlNeXt-SDXL (module + delta UNet file): SDXL pipeline, variant detected, default size from sample_size', async () => {
    const outPath = join(dir, 'sdxl.png');
    const r = await run('generate', '--model', sdxl, '--controlnext', sdxlModule, '--controlnext-unet', sdxlDelta, '--control-image', control,
      '--control-scale', '0.35', '--guidance-rescale', '0.7', '--prompt', 'a glass sculpture', '--steps', '2', '--seed', '3', '--output', outPath);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/model: SDXL \(model_index\.json _class_name StableDiffusionXLPipeline\)/);
    expect(r.err).toMatch(/controlnext: variant sdxl \(detected: .*config\.json ControlNetModel with final_out_channels/);
    expect(r.err).toMatch(/controlnext unet: added deltas to \d+ tensors from .*unet\.safetensors \(variant sdxl/);
    expect(r.err).not.toMatch(/RANDOM/);
    // sample_size 8 latents x 8 = 64 px, whatever the control image's size.
    expect(r.out).toMatch(/^wrote .*sdxl\.png 64x64 seed=3 steps=2 scheduler=unipc/);
    expect(readImage(outPath).shape).toEqual([64, 64, 3]);
  }, 300_000);

  it('the light module file alone (no config.json) is SDXL\'s in an SDXL folder; --variant names it explicitly', async () => {
    const bare = join(dir, 'bare');
    mkdirSync(bare);
    const file = join(bare, 'module.safetensors');
    copyFileSync(join(sdxlModule, 'controlnet.safetensors'), file);
    const detected = await run('generate', '--model', sdxl, '--controlnext', file, '--control-image', control, '--steps', '1', '--output', join(dir, 'bare.png'));
    expect(detected.code, detected.err).toBe(0);
    expect(detected.err).toMatch(/controlnext: variant sdxl \(detected: .*loaded with an SDXL model/);
    const named = await run('generate', '--model', sdxl, '--controlnext', file, '--variant', 'sdxl', '--control-image', control, '--steps', '1', '--output', join(dir, 'named.png'));
    expect(named.code, named.err).toBe(0);
    expect(named.err).toMatch(/controlnext: variant sdxl \(named explicitly\)/);
  }, 300_000);

  it('every released variant loads and runs: sd15 and sd15_training on an SD folder, sdxl on the SDXL folder, named or detected', async () => {
    const cases: [string, string, string, string | undefined][] = [
      // model folder, module, variant expected, evidence expected when detected
      [sd, join(sdCase, 'controlnext'), 'sd15', "'down_res.0.norm1.weight' is [3]"],
      [sd, join(golden, 'sd15_controlnext_training', 'controlnext'), 'sd15_training', 'config.json _class_name "ControlNeXtModel"'],
      [sd, join(golden, 'sd15_controlnext_training', 'controlnext', 'controlnext.safetensors'), 'sd15_training', 'loaded with an SD 1.x model'],
      [sdxl, sdxlModule, 'sdxl', 'config.json ControlNetModel'],
    ];
    for (const [model, module, variant, evidence] of cases) {
      for (const named of [false, true]) {
        const r = await run('generate', '--model', model, '--controlnext', module, ...(named ? ['--variant', variant] : []), '--control-image', control,
          '--steps', '1', '--width', '64', '--height', '64', '--output', join(dir, `${variant}.png`));
        expect(r.code, `${variant} ${named ? 'named' : 'detected'}: ${r.err}`).toBe(0);
        expect(r.err).toContain(named ? `controlnext: variant ${variant} (named explicitly)` : `controlnext: variant ${variant} (detected: `);
        if (!named) expect(r.err).toContain(evidence);
        expect(r.out).toMatch(/^wrote .* 64x64 /);
      }
    }
  }, 600_000);

  it('refusals name what to do: a ControlNeXt file without a control image (before loading), a module of another base model, a wrong --variant', async () => {
    const noImage = await run('generate', '--model', sdxl, '--controlnext', sdxlModule, '--prompt', 'x');
    expect(noImage.code).toBe(2);
    expect(noImage.err).toMatch(/--controlnext needs a control image: --control-image FILE/);
    expect(noImage.err).not.toMatch(/backend:/); // refused before the backend, let alone a model, was created
    const noModule = await run('generate', '--model', sdxl, '--variant', 'sdxl', '--prompt', 'x');
    expect(noModule.code).toBe(2);
    expect(noModule.err).toMatch(/--variant names the release of a ControlNeXt module: give --controlnext FILE/);
    const badVariant = await run('generate', '--model', sdxl, '--controlnext', sdxlModule, '--variant', 'svd', '--control-image', control);
    expect(badVariant.code).toBe(2);
    expect(badVariant.err).toMatch(/--variant must be one of sd15, sd15_training, sdxl, found 'svd'/);
    const release = await run('generate', '--model', sdxl, '--controlnext', join(sdCase, 'controlnext'), '--control-image', control, '--steps', '1');
    expect(release.code).toBe(1);
    expect(release.err).toMatch(/the ControlNeXt module is sd15 \(.*\), made for SD1\.5, but the model folder is an SDXL model/);
    const forced = await run('generate', '--model', sd, '--controlnext', sdxlModule, '--variant', 'sdxl', '--control-image', control, '--steps', '1');
    expect(forced.code).toBe(1);
    expect(forced.err).toMatch(/ControlNeXt variant 'sdxl' .* is for SDXL UNets, but the model folder is a Stable Diffusion 1\.x\/2\.x model/);
    const wrongArch = await run('generate', '--model', sd, '--controlnext', join(golden, 'sd15_controlnext_training', 'controlnext'), '--variant', 'sd15',
      '--control-image', control, '--steps', '1');
    expect(wrongArch.code).toBe(1);
    expect(wrongArch.err).toMatch(/wrong variant: this is a light .* control module .*variant 'sd15' needs the release module/);
  }, 300_000);

  it('an SDXL folder without text_encoder_2/ names the missing files and the SDXL layout', async () => {
    const broken = join(dir, 'broken');
    mkdirSync(broken);
    for (const p of ['model_index.json', 'unet', 'vae', 'scheduler', 'text_encoder', 'tokenizer', 'tokenizer_2']) symlinkSync(join(sdxl, p), join(broken, p));
    const r = await run('generate', '--model', broken, '--prompt', 'x', '--steps', '1');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/model folder .*broken is missing text_encoder_2\/config\.json \(an SDXL diffusers folder holds model_index\.json/);
  });
});

/** Every file of a folder (following links) as a path -> bytes map. */
function readTree(root: string, prefix = ''): Record<string, Uint8Array> {
  const out: Record<string, Uint8Array> = {};
  for (const name of readdirSync(join(root, prefix))) {
    const rel = prefix ? `${prefix}/${name}` : name;
    if (statSync(join(root, rel)).isDirectory()) Object.assign(out, readTree(root, rel));
    else out[rel] = readFileSync(join(root, rel));
  }
  return out;
}

describe('the SDXL pipeline beyond the golden case', () => {
  let b: Backend;
  beforeAll(() => { b = new CpuBackend(); });
  afterAll(() => b.destroy());

  it('no negative prompt: zeros (force_zeros_for_empty_prompt); negativePrompt "": the encoding of ""; bytes == folder', async () => {
    const { pipeline } = loadPipeline(sdxl, b);
    expect(pipeline).toBeInstanceOf(StableDiffusionXLPipeline);
    const negatives: Float32Array[] = [];
    const gen = async (p: typeof pipeline, negativePrompt?: string) => {
      const r = await p.generate({
        prompt: 'a cat', negativePrompt, numInferenceSteps: 1, seed: 5,
        observer: { async onBegin(s: BeginState) { negatives.push(await s.conditioning.ctx.slice(0, 0, 1).contiguous().data()); } },
      });
      const d = await r.images.data();
      r.images.dispose(); r.latents.dispose();
      return d;
    };
    const zeros = await gen(pipeline);
    expect(negatives[0]!.every((v) => v === 0)).toBe(true);
    const empty = await gen(pipeline, '');
    expect(negatives[1]!.some((v) => v !== 0)).toBe(true);
    expect(empty).not.toEqual(zeros);
    pipeline.dispose();
    const fromBytes = pipelineFromFiles(readTree(sdxl), b).pipeline;
    expect(await gen(fromBytes)).toEqual(zeros);
    fromBytes.dispose();
  }, 300_000);

  it('force_upcast: the VAE runs inside backend.inFullPrecision (decode; img2img encode too), and not when the config clears it', async () => {
    const calls: string[] = [];
    const spy = Object.assign(new CpuBackend(), {
      inFullPrecision<T>(fn: () => T): T { calls.push('vae'); return fn(); },
    });
    const { pipeline } = loadPipeline(sdxl, spy);
    expect(pipeline.vae.config.force_upcast).toBe(true);
    const r = await pipeline.generate({ prompt: 'x', numInferenceSteps: 1, seed: 2 });
    expect(calls).toEqual(['vae']);
    [r.images, r.latents].forEach((t) => t.dispose());
    const init = spy.fromRaw(new Float32Array(3 * 64 * 64).fill(0.5), [1, 3, 64, 64]);
    const r2 = await pipeline.generate({ prompt: 'x', numInferenceSteps: 4, seed: 2, initImage: init, strength: 0.5 });
    expect(calls).toEqual(['vae', 'vae', 'vae']); // encode + decode
    [r2.images, r2.latents, init].forEach((t) => t.dispose());
    (pipeline.vae.config as { force_upcast: boolean }).force_upcast = false;
    const r3 = await pipeline.generate({ prompt: 'x', numInferenceSteps: 1, seed: 2 });
    expect(calls).toHaveLength(3);
    [r3.images, r3.latents].forEach((t) => t.dispose());
    pipeline.dispose();
    spy.destroy();
  }, 300_000);

  it('image-to-image: default strength 0.3 runs floor(0.3 steps) steps; time ids by the img2img rule; the refiner layout (no text_encoder/)', async () => {
    const { pipeline, modelIndex } = loadPipeline(refiner, b);
    expect(modelIndex.components).not.toContain('text_encoder');
    const init = b.fromRaw(Float32Array.from({ length: 3 * 64 * 48 }, (_, i) => ((i * 7) % 9) / 8), [1, 3, 64, 48]);
    let ids: Float32Array | undefined;
    const r = await pipeline.generate({
      prompt: 'x', negativePrompt: 'y', initImage: init, numInferenceSteps: 10, seed: 1, guidanceScale: 5,
      negativeOriginalSize: [32, 32], cropsCoordsTopLeft: [4, 2], negativeCropsCoordsTopLeft: [9, 9],
      observer: { async onBegin(s: BeginState) { ids = await s.conditioning.addedCond!.timeIds.data(); } },
    });
    expect(r.timesteps).toHaveLength(3);
    expect(r.images.shape).toEqual([1, 3, 64, 48]);
    // [negative; positive]: negative_original_size + the POSITIVE crops + target (diffusers' img2img), then the positive ids.
    expect([...ids!]).toEqual([32, 32, 4, 2, 64, 48, 64, 48, 4, 2, 64, 48]);
    [r.images, r.latents, init].forEach((t) => t.dispose());
    pipeline.dispose();
  }, 300_000);
});
