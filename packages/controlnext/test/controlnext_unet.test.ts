// ControlNeXt through a whole (tiny, random) UNet forward: for every runnable variant, the optimised
// path (control module once at batch 1 from a cached prefix, broadcast to the CFG batch) gives the
// UNet output of the repo's path (module on [img, img] at batch 2, everything every step). Also the
// partial UNet merge: replace / add semantics, mode detection, and refusal of keys or shapes that do
// not fit the base UNet (with nothing changed).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect } from 'vitest';
import { RandomWeights, SafetensorsFile, fromFloat32, ops, toFloat32, writeSafetensors, type Backend, type SafetensorsEntry, type Tensor } from '@cnx/tensor';
import { UNet2DConditionModel } from '@cnx/unet';
import {
  ControlNeXt, ControlNeXtLightModule, ControlNeXtSD15Module, applyPartialUnet, detectMergeMode, type ControlModule, type VariantName,
} from '@cnx/controlnext';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';

const UNET = {
  in_channels: 4, out_channels: 4, down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'],
  block_out_channels: [8, 16], layers_per_block: 1, cross_attention_dim: 8, attention_head_dim: 2, norm_num_groups: 4,
};

function controlModule(variant: VariantName, backend: Backend): ControlModule {
  const ws = new RandomWeights({ seed: 31 });
  if (variant === 'sd15') {
    return new ControlNeXtSD15Module(ws, backend, {
      timeProjDim: 128, timeEmbedDim: 16, inChannels: [3, 8, 8], outChannels: [8, 8, 8], groups: [1, 4, 4], midChannels: 8, finalChannels: 16,
    });
  }
  return new ControlNeXtLightModule(ws, backend, {
    timeProjDim: 128, timeEmbedDim: 16, stemChannels: [8, 8, 8], stemPadding: 1, inChannels: [8, 8], outChannels: [8, 8],
    groups: [4, 4], midChannels: 8, finalChannels: 8, scale: 0.6,
  });
}

function rand(backend: Backend, shape: number[], seed: number, scale = 1, shift = 0): Tensor {
  return backend.fromRaw(randomArray(shape.reduce((a, b) => a * b, 1), seed, scale, shift), shape);
}

const dir = mkdtempSync(join(tmpdir(), 'cnx-unet-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describeEachBackend('ControlNeXt in the UNet', (test) => {
  test('CFG batch: batch-1 cached control == the repo\'s batch-2 control, for sd15, sd15_training, sdxl injection', async (backend) => {
    const unet = new UNet2DConditionModel(UNET, new RandomWeights({ seed: 30 }), backend);
    // Latent 4x4 (so the control image is 32x32); two different latents / contexts as [uncond; cond].
    const x = rand(backend, [2, 4, 4, 4], 1);
    const ctx = rand(backend, [2, 5, 8], 2);
    const t = backend.fromRaw(new Float32Array([640]), [1]);
    const img1 = rand(backend, [1, 3, 32, 32], 3, 0.5, 0.5);
    const img2 = ops.concat([img1, img1], 0);
    for (const name of ['sd15', 'sd15_training', 'sdxl'] as const) {
      const cnx = new ControlNeXt(name, controlModule(name, backend), backend, { strength: 0.8 });
      // Reference: the repo's pipeline (control image duplicated, module on the full batch).
      const ref2 = cnx.control(img2, t);
      const hRef = cnx.hooks(ref2, 2, { cfg: true });
      const yRef = unet.forward(x, t, ctx, { hooks: hRef.hooks });
      // Optimised: prefix once, module at batch 1.
      const prepared = cnx.prepare(img1);
      const c1 = cnx.control(prepared, t);
      expect(c1.out.shape[0]).toBe(1);
      const h1 = cnx.hooks(c1, 2, { cfg: true });
      const y1 = unet.forward(x, t, ctx, { hooks: h1.hooks });
      expectAllClose(await y1.data(), await yRef.data(), tolFor('f32', 512, 4), `${name}: UNet output`);
      // And the control actually changes the output (the injection fired).
      const y0 = unet.forward(x, t, ctx);
      const d0 = await y0.data(), d1 = await y1.data();
      let diff = 0;
      for (let i = 0; i < d0.length; i++) diff = Math.max(diff, Math.abs(d0[i]! - d1[i]!));
      expect(diff, `${name}: control has an effect`).toBeGreaterThan(1e-3);
      [hRef, h1].forEach((h) => h.dispose());
      for (const o of [ref2, c1]) { o.out.dispose(); if (typeof o.scale !== 'number') o.scale.dispose(); }
      [yRef, y1, y0].forEach((v) => v.dispose());
      prepared.dispose();
      cnx.dispose();
    }
    [x, ctx, t, img1, img2].forEach((v) => v.dispose());
    unet.dispose();
  });

  test('partial UNet weights: replace, add, mode detection, refusal of foreign keys and shapes', async (backend) => {
    const unet = new UNet2DConditionModel(UNET, new RandomWeights({ seed: 40 }), backend);
    const toOut = unet.namedParameters().filter(([n]) => n.includes('to_out'));
    expect(toOut.length).toBeGreaterThan(0);
    const entries: Record<string, SafetensorsEntry> = {};
    for (const [n, p] of toOut) entries[n] = { dtype: 'F32', shape: [...p.shape], data: randomArray(p.size, n.length, 0.1) };
    const file = join(dir, `unet_${backend.name}.safetensors`);
    writeSafetensors(file, entries);

    const key = toOut[0]![0];
    const before = await unet.getParameter(key).data();
    const r1 = applyPartialUnet(unet, file, backend, { variant: 'sd15' });
    expect(r1.mode).toBe('replace');
    expect(r1.keys.length).toBe(toOut.length);
    expectAllClose(await unet.getParameter(key).data(), entries[key]!.data as Float32Array, { atol: 0, rtol: 0 }, 'replaced');

    const r2 = applyPartialUnet(unet, file, backend, { variant: 'sdxl' });
    expect(r2.mode).toBe('add');
    const doubled = Float32Array.from(entries[key]!.data as Float32Array, (v) => 2 * v);
    expectAllClose(await unet.getParameter(key).data(), doubled, tolFor('f32'), 'added');
    expect(before.length).toBe(doubled.length);

    // A float16 delta (as the published SDXL files) is widened and added to the f32 base.
    const base = await unet.getParameter(key).data();
    const half = fromFloat32(entries[key]!.data as Float32Array, 'f16') as Uint16Array;
    const f16File = join(dir, `f16_${backend.name}.safetensors`);
    writeSafetensors(f16File, { [key]: { dtype: 'F16', shape: entries[key]!.shape, data: half } });
    const r3 = applyPartialUnet(unet, f16File, backend, { mode: 'add' });
    expect(r3.dtypes).toEqual({ F16: 1 });
    const widened = toFloat32(half, 'f16');
    expectAllClose(await unet.getParameter(key).data(), Float32Array.from(base, (v, i) => v + widened[i]!), tolFor('f32'), 'f16 delta added');

    // Detection from the file when no variant / mode is given.
    const attn2 = Object.fromEntries(Object.entries(entries).filter(([n]) => n.includes('attn2')));
    const attn2File = join(dir, `attn2_${backend.name}.safetensors`);
    writeSafetensors(attn2File, attn2);
    const incFile = join(dir, `unet_weight_increasements_${backend.name}.safetensors`);
    writeSafetensors(incFile, entries);
    const modeOf = (f: string, o = {}) => { const s = SafetensorsFile.open(f); try { return detectMergeMode(s, o).mode; } finally { s.close(); } };
    expect(modeOf(file)).toBe('replace');
    expect(modeOf(attn2File)).toBe('add');
    expect(modeOf(incFile)).toBe('add');
    expect(modeOf(attn2File, { mode: 'replace' })).toBe('replace');

    // Foreign keys and shapes are refused, all at once, and nothing changes.
    const snapshot = await unet.getParameter(key).data();
    const bad = join(dir, `bad_${backend.name}.safetensors`);
    const [k2, p2] = toOut[1]!;
    writeSafetensors(bad, {
      [key]: entries[key]!,
      [k2]: { dtype: 'F32', shape: [p2.shape[0]! + 1, ...p2.shape.slice(1)], data: new Float32Array((p2.shape[0]! + 1) * p2.size / p2.shape[0]!) },
      'down_blocks.0.attentions.0.transformer_blocks.0.attn3.to_out.0.weight': { dtype: 'F32', shape: [1], data: new Float32Array(1) },
    });
    let message = '';
    try { applyPartialUnet(unet, bad, backend, { variant: 'sd15' }); } catch (e) { message = (e as Error).message; }
    expect(message).toMatch(/do not match the base UNet \(2 of 3 keys; nothing was changed\)/);
    expect(message).toMatch(/attn3\.to_out\.0\.weight: not a parameter of the base UNet \(nearest: down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn\d\.to_out\.0\.weight\)/);
    expect(message).toContain(`${k2}: file has [${p2.shape[0]! + 1}`);
    expectAllClose(await unet.getParameter(key).data(), snapshot, { atol: 0, rtol: 0 }, 'unchanged after refusal');
    unet.dispose();
  });
});
