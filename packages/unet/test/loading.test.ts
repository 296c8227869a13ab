// Loading diffusers folders: fp16 / bf16 / sharded copies of a golden model folder load to exactly the
// values their dtype can hold, and a corrupted copy fails with the loader report.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CpuBackend, SafetensorsFile, fromFloat32, toFloat32, writeSafetensors, type SafetensorsEntry,
} from '@cnx/tensor';
import { AutoencoderKL, CLIPTextModel, UNet2DConditionModel } from '@cnx/unet';
import { afterAll, describe, expect, it } from 'vitest';
import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';

const golden = GOLDEN_ROOT;
const unetDir = join(golden, 'sd15_unet', 'unet');
const WEIGHTS = 'diffusion_pytorch_model.safetensors';

/** Every tensor of a safetensors file as f32 values. */
function readAll(path: string): Map<string, { shape: number[]; data: Float32Array }> {
  const f = SafetensorsFile.open(path);
  try {
    return new Map(f.keys().map((k) => [k, f.readFloat32(k)]));
  } finally {
    f.close();
  }
}

describe('UNet2DConditionModel.fromFolder', () => {
  const backend = new CpuBackend();
  const tmp = mkdtempSync(join(tmpdir(), 'cnx-unet-load-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const original = readAll(join(unetDir, WEIGHTS));

  /** A new folder holding the golden unet config.json (and nothing else yet). */
  function emptyFolder(name: string): string {
    const dir = join(tmp, name);
    mkdirSync(dir);
    copyFileSync(join(unetDir, 'config.json'), join(dir, 'config.json'));
    return dir;
  }

  /** A copy of the golden unet folder whose weights file holds `entries`. */
  function folder(name: string, entries: Record<string, SafetensorsEntry>): string {
    const dir = emptyFolder(name);
    writeSafetensors(join(dir, WEIGHTS), entries);
    return dir;
  }

  async function expectParams(model: UNet2DConditionModel, expected: (name: string, v: Float32Array) => Float32Array): Promise<void> {
    const params = model.namedParameters();
    expect(params.length).toBe(original.size);
    for (const [name, t] of params) {
      const ref = original.get(name);
      expect(ref, name).toBeDefined();
      expect(t.dtype).toBe('f32'); // widened once at load time: the ops compute in f32
      const got = await t.data(), want = expected(name, ref!.data);
      expect(got.length, name).toBe(want.length);
      let bad = 0;
      for (let i = 0; i < got.length; i++) if (!Object.is(got[i], want[i])) bad++;
      expect(bad, `${name}: elements differing from the expected values`).toBe(0);
    }
  }

  it('loads fp16 and bf16 weights to their exactly-rounded values', async () => {
    for (const dt of ['F16', 'BF16'] as const) {
      const entries: Record<string, SafetensorsEntry> = {};
      for (const [k, v] of original) entries[k] = { dtype: dt, shape: v.shape, data: fromFloat32(v.data, dt === 'F16' ? 'f16' : 'bf16') as Uint16Array };
      const dir = folder(`half-${dt}`, entries);
      const m = UNet2DConditionModel.fromFolder(dir, backend);
      const round = (v: Float32Array) => { const d = dt === 'F16' ? 'f16' : 'bf16'; return toFloat32(fromFloat32(v, d), d); };
      await expectParams(m, (_, v) => round(v));
      // Rounding really happened (the test would pass vacuously on f32 copies otherwise).
      const w = await m.getParameter('conv_in.weight').data();
      expect(w.some((x, i) => x !== original.get('conv_in.weight')!.data[i])).toBe(true);
      m.dispose();
    }
  });

  it('loads a sharded checkpoint through its index', async () => {
    const keys = [...original.keys()].sort();
    const half = Math.floor(keys.length / 2);
    const dir = emptyFolder('sharded');
    const weightMap: Record<string, string> = {};
    keys.forEach((k, i) => {
      weightMap[k] = i < half ? 'diffusion_pytorch_model-00001-of-00002.safetensors' : 'diffusion_pytorch_model-00002-of-00002.safetensors';
    });
    for (const shard of new Set(Object.values(weightMap))) {
      const entries: Record<string, SafetensorsEntry> = {};
      for (const k of keys.filter((k) => weightMap[k] === shard)) entries[k] = { dtype: 'F32', shape: original.get(k)!.shape, data: original.get(k)!.data };
      writeSafetensors(join(dir, shard), entries);
    }
    writeFileSync(join(dir, `${WEIGHTS}.index.json`), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const m = UNet2DConditionModel.fromFolder(dir, backend);
    await expectParams(m, (_, v) => v);
    m.dispose();
  });

  it('fails on missing, mis-shaped and unused keys with the loader report', () => {
    const entries: Record<string, SafetensorsEntry> = {};
    for (const [k, v] of original) entries[k] = { dtype: 'F32', shape: v.shape, data: v.data };
    // missing: drop a key; renamed: the old name is missing and the new one unused; mis-shaped: truncate.
    delete entries['mid_block.resnets.1.conv2.bias'];
    entries['conv_in.weights'] = entries['conv_in.weight']!;
    delete entries['conv_in.weight'];
    const te = original.get('time_embedding.linear_1.bias')!;
    entries['time_embedding.linear_1.bias'] = { dtype: 'F32', shape: [te.shape[0]! - 1], data: te.data.slice(1) };
    const dir = folder('corrupt', entries);
    let message = '';
    try {
      UNet2DConditionModel.fromFolder(dir, backend).dispose();
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/missing keys \(2\)/);
    expect(message).toContain('mid_block.resnets.1.conv2.bias');
    expect(message).toMatch(/conv_in\.weight \[32, 4, 3, 3\] \(nearest: conv_in\.weights\)/);
    expect(message).toMatch(/mis-shaped keys \(1\):\n\s+time_embedding\.linear_1\.bias: expected \[128\], found \[127\]/);
    expect(message).toMatch(/unused keys \(1\):\n\s+conv_in\.weights/);
  });

  it('reads a VAE whose mid-block attention uses the deprecated query/key/value/proj_attn names', async () => {
    const vaeDir = join(golden, 'sd15_vae', 'vae');
    const vaeWeights = readAll(join(vaeDir, WEIGHTS));
    const old: Record<string, string> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };
    const entries: Record<string, SafetensorsEntry> = {};
    let renamed = 0;
    for (const [k, v] of vaeWeights) {
      const m = /^(.*mid_block\.attentions\.\d+\.)(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(k);
      const key = m ? `${m[1]}${old[m[2]!]}.${m[3]}` : k;
      if (m) renamed++;
      entries[key] = { dtype: 'F32', shape: v.shape, data: v.data };
    }
    expect(renamed).toBe(16); // encoder + decoder, 4 projections, weight + bias
    const dir = join(tmp, 'old-vae');
    mkdirSync(dir);
    copyFileSync(join(vaeDir, 'config.json'), join(dir, 'config.json'));
    writeSafetensors(join(dir, WEIGHTS), entries);
    const vae = AutoencoderKL.fromFolder(dir, backend);
    const q = await vae.getParameter('decoder.mid_block.attentions.0.to_q.weight').data();
    expect([...q]).toEqual([...vaeWeights.get('decoder.mid_block.attentions.0.to_q.weight')!.data]);
    vae.dispose();
  });

  it('loads the golden VAE and CLIP folders strictly', () => {
    const vae = AutoencoderKL.fromFolder(join(golden, 'sd15_vae', 'vae'), backend);
    expect(vae.scalingFactor).toBe(0.18215);
    vae.dispose();
    const clip = CLIPTextModel.fromFolder(join(golden, 'clip_text', 'text_encoder'), backend);
    expect(clip.config.eos_token_id).toBe(2);
    clip.dispose();
  });
});
