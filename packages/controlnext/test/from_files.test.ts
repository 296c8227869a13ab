// Models from bytes (the browser path): a pipeline built with pipelineFromFiles from a folder's files in
// memory (golden tiny UNet / VAE / scheduler of sd15_pipeline_controlnext, the clip_text text encoder, a
// byte-level tokenizer, the case's ControlNeXt module) generates exactly what loadPipeline builds from
// the same files on disk; missing files are errors naming the file and what is there. Also the control
// type registry: the built-in list is the built-in folder, user types register, clashes are refused.

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend, type Tensor } from '@cnx/tensor';
import { bytesToUnicode, UNet2DConditionModel, type ModelFiles } from '@cnx/unet';
import { builtinControlTypes, ControlTypeRegistry, listControlTypes, loadPipeline, pipelineFromFiles, type ControlType } from '@cnx/controlnext';
import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';

const golden = GOLDEN_ROOT;
const pipeCase = join(golden, 'sd15_pipeline_controlnext');
const dir = mkdtempSync(join(tmpdir(), 'cnx-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function tokenizerFiles(): Record<string, string> {
  const vocab: Record<string, number> = {};
  for (const s of bytesToUnicode()) { vocab[s] = Object.keys(vocab).length; vocab[`${s}</w>`] = Object.keys(vocab).length; }
  vocab['<|startoftext|>'] = Object.keys(vocab).length;
  vocab['<|endoftext|>'] = Object.keys(vocab).length;
  return { 'vocab.json': JSON.stringify(vocab), 'merges.txt': '#version: 0.2\n' };
}

/** Every file under `folder`, by path relative to it with `prefix`. */
function readTree(folder: string, prefix: string, out: Record<string, Uint8Array | string>): void {
  for (const name of readdirSync(folder)) {
    const p = join(folder, name);
    if (statSync(p).isDirectory()) readTree(p, `${prefix}${name}/`, out);
    else out[`${prefix}${name}`] = new Uint8Array(readFileSync(p));
  }
}

describe('models from bytes', () => {
  it('pipelineFromFiles == loadPipeline on the same files', async () => {
    const root = join(dir, 'model');
    mkdirSync(join(root, 'tokenizer'), { recursive: true });
    writeFileSync(join(root, 'model_index.json'), '{}');
    for (const p of ['unet', 'vae', 'scheduler']) symlinkSync(join(pipeCase, p), join(root, p));
    symlinkSync(join(golden, 'clip_text', 'text_encoder'), join(root, 'text_encoder'));
    for (const [n, t] of Object.entries(tokenizerFiles())) writeFileSync(join(root, 'tokenizer', n), t);

    const files: Record<string, Uint8Array | string> = {};
    readTree(root, '', files);
    const module: Record<string, Uint8Array | string> = {};
    readTree(join(pipeCase, 'controlnext'), '', module);

    const backend = new CpuBackend();
    const run = async (build: () => { pipeline: ReturnType<typeof loadPipeline>['pipeline'] }): Promise<Float32Array> => {
      const { pipeline } = build();
      const img = backend.fromRaw(Float32Array.from({ length: 3 * 16 * 16 }, (_, i) => (i % 7) / 7), [1, 3, 16, 16]);
      const r = await pipeline.generate({ prompt: 'a', numInferenceSteps: 2, seed: 3, controlImage: img });
      const d = await r.images.data();
      [r.images, r.latents, img].forEach((t: Tensor) => t.dispose());
      pipeline.dispose();
      return d;
    };
    const fromDisk = await run(() => loadPipeline(root, backend, { controlnext: join(pipeCase, 'controlnext') }));
    const fromBytes = await run(() => pipelineFromFiles(files, backend, { controlnext: module }));
    expect(fromBytes).toEqual(fromDisk);

    const unetOnly: ModelFiles = { 'config.json': files['unet/config.json']! };
    expect(() => UNet2DConditionModel.fromFiles(unetOnly, backend)).toThrow(/UNet2DConditionModel.fromFiles: no weights file it can choose: .*found config.json/);
    const { 'scheduler/scheduler_config.json': _s, ...noScheduler } = files;
    expect(() => pipelineFromFiles(noScheduler, backend)).toThrow(/model folder pipelineFromFiles is missing scheduler\/scheduler_config\.json \(a Stable Diffusion diffusers folder holds/);
    backend.destroy();
  }, 300_000);
});

describe('control type registry', () => {
  it('built-in list == the built-in plug-in folder; user types register; clashes and bad objects are refused', async () => {
    expect(builtinControlTypes.map((t) => t.name).sort()).toEqual((await listControlTypes()).map((t) => t.name).sort());
    const mine: ControlType = { name: 'halftone', description: 'test type', options: [], prepare: async () => { throw new Error('unused'); } };
    const reg = new ControlTypeRegistry().register(mine);
    expect(reg.names()).toContain('halftone');
    expect(reg.get('halftone')).toBe(mine);
    expect(() => reg.register(mine, 'my plug-in')).toThrow(/my plug-in: a control type named 'halftone' is already registered/);
    expect(() => reg.get('nope')).toThrow(/unknown control type 'nope' \(known: canny, depth, halftone, mask, passthrough, pose\)/);
    expect(() => new ControlTypeRegistry([]).register({ name: 'Bad Name' } as unknown as ControlType)).toThrow(/expected a control type/);
  });
});
