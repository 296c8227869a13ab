// ControlNeXt through a whole (tiny, random) UNet forward: for every runnable variant, the optimised
// path (control module once at batch 1 from a cached prefix, broadcast to the CFG batch) gives the
// UNet output of the repo's path (module on [img, img] at batch 2, everything every step); the
// injection fires once, at the variant's site (told by the feature's shape), and adds s * c_hat where
// c_hat carries the feature's own per-sample mean (and, pool-then-norm, its std: cross normalisation,
// checked in float64 here); strength 0 leaves the UNet output unchanged. Also the
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

/** Per-sample mean and unbiased std (torch.std) of [N, ...] data, in float64. */
function perSample(data: Float32Array, n: number): { mean: number; std: number }[] {
  const per = data.length / n;
  return Array.from({ length: n }, (_, k) => {
    let m = 0, v = 0;
    for (let i = 0; i < per; i++) m += data[k * per + i]!;
    m /= per;
    for (let i = 0; i < per; i++) v += (data[k * per + i]! - m) ** 2;
    return { mean: m, std: Math.sqrt(v / (per - 1)) };
  });
}

/**
 * Wrap every hook so the test sees what each call that changed the feature got and returned (copies:
 * the UNet disposes both), whatever the hooks' names and arguments (the feature is the last one).
 */
function capturing(hooks: Record<string, unknown>): { hooks: Record<string, unknown>; calls: { before: Tensor; after: Tensor }[] } {
  const calls: { before: Tensor; after: Tensor }[] = [];
  const wrapped: Record<string, unknown> = {};
  for (const [k, fn] of Object.entries(hooks)) {
    wrapped[k] = (...args: unknown[]) => {
      const before = args[args.length - 1] as Tensor;
      const after = (fn as (...a: unknown[]) => Tensor)(...args);
      if (after !== before) calls.push({ before: ops.affine(before, 1), after: ops.affine(after, 1) });
      return after;
    };
  }
  return { hooks: wrapped, calls };
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
    // The feature at each variant's site for this config (latent 4x4): after conv_in [2, 8, 4, 4], after
    // down_blocks.0 (which downsamples) [2, 8, 2, 2], after the mid block [2, 16, 2, 2].
    const siteShape = { sd15: [2, 16, 2, 2], sd15_training: [2, 8, 2, 2], sdxl: [2, 8, 4, 4] } as const;
    for (const name of ['sd15', 'sd15_training', 'sdxl'] as const) {
      const strength = 0.8;
      const cnx = new ControlNeXt(name, controlModule(name, backend), backend, { strength });
      // Reference: the repo's pipeline (control image duplicated, module on the full batch).
      const ref2 = cnx.control(img2, t);
      const hRef = cnx.hooks(ref2, 2, { cfg: true });
      const yRef = unet.forward(x, t, ctx, { hooks: hRef.hooks });
      // Optimised: prefix once, module at batch 1.
      const prepared = cnx.prepare(img1);
      const c1 = cnx.control(prepared, t);
      expect(c1.out.shape[0]).toBe(1);
      const h1 = cnx.hooks(c1, 2, { cfg: true });
      const cap = capturing(h1.hooks as Record<string, unknown>);
      const y1 = unet.forward(x, t, ctx, { hooks: cap.hooks as typeof h1.hooks });
      expectAllClose(await y1.data(), await yRef.data(), tolFor('f32', 512, 4), `${name}: UNet output`);
      // One injection, at the variant's site, adding s * c_hat with s = module scale * strength on both
      // CFG halves (these variants' policy) and c_hat cross-normalised to the feature, per sample.
      expect(cap.calls, `${name}: hook calls`).toHaveLength(1);
      const { before, after } = cap.calls[0]!;
      expect(before.shape, `${name}: injection site`).toEqual(siteShape[name]);
      const s = (typeof c1.scale === 'number' ? c1.scale : (await c1.scale.data())[0]!) * strength;
      const b = await before.data(), a = await after.data();
      const cHat = Float32Array.from(a, (v, i) => (v - b[i]!) / s);
      const feature = perSample(b, 2), injected = perSample(cHat, 2);
      for (let k = 0; k < 2; k++) {
        const scaleOf = feature[k]!.std;
        expect(Math.abs(injected[k]!.mean - feature[k]!.mean), `${name} sample ${k}: mean of c_hat`).toBeLessThan(1e-4 * scaleOf / Math.min(1, Math.abs(s)));
        // pool-then-norm: c_hat has the feature's std; norm-then-pool: pooling can only lower it.
        if (cnx.variant.method === 'pool_then_norm') expect(injected[k]!.std / scaleOf, `${name} sample ${k}: std of c_hat`).toBeCloseTo(1, 3);
        else expect(injected[k]!.std / scaleOf, `${name} sample ${k}: std of c_hat`).toBeLessThanOrEqual(1 + 1e-3);
      }
      [before, after].forEach((v) => v.dispose());
      // And the control actually changes the output (the injection fired).
      const y0 = unet.forward(x, t, ctx);
      const d0 = await y0.data(), d1 = await y1.data();
      let diff = 0;
      for (let i = 0; i < d0.length; i++) diff = Math.max(diff, Math.abs(d0[i]! - d1[i]!));
      expect(diff, `${name}: control has an effect`).toBeGreaterThan(1e-3);
      // Strength 0: x + 0 * c_hat = x, so the output is the uncontrolled one.
      const off = new ControlNeXt(name, controlModule(name, backend), backend, { strength: 0 });
      const cOff = off.control(img1, t);
      const hOff = off.hooks(cOff, 2, { cfg: true });
      const yOff = unet.forward(x, t, ctx, { hooks: hOff.hooks });
      expectAllClose(await yOff.data(), d0, tolFor('f32'), `${name}: strength 0`);
      hOff.dispose();
      cOff.out.dispose();
      if (typeof cOff.scale !== 'number') cOff.scale.dispose();
      yOff.dispose();
      off.dispose();
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
    // Every parameter the file does not name must come through both merges untouched.
    const others = unet.namedParameters().filter(([n]) => !(n in entries));
    expect(others.length).toBeGreaterThan(0);
    const othersBefore = await Promise.all(others.map(([, p]) => p.data()));
    const r1 = applyPartialUnet(unet, file, backend, { variant: 'sd15' });
    expect(r1.mode).toBe('replace');
    expect([...r1.keys].sort()).toEqual(Object.keys(entries).sort());
    for (const n of Object.keys(entries)) expectAllClose(await unet.getParameter(n).data(), entries[n]!.data as Float32Array, { atol: 0, rtol: 0 }, `replaced ${n}`);

    const r2 = applyPartialUnet(unet, file, backend, { variant: 'sdxl' });
    expect(r2.mode).toBe('add');
    for (const n of Object.keys(entries)) {
      expectAllClose(await unet.getParameter(n).data(), Float32Array.from(entries[n]!.data as Float32Array, (v) => 2 * v), tolFor('f32'), `added ${n}`);
    }
    for (const [i, [n]] of others.entries()) expectAllClose(await unet.getParameter(n).data(), othersBefore[i]!, { atol: 0, rtol: 0 }, `untouched ${n}`);

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
    const snapshotK2 = await unet.getParameter(k2).data();
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
    expectAllClose(await unet.getParameter(k2).data(), snapshotK2, { atol: 0, rtol: 0 }, 'unchanged after refusal (the mis-shaped key)');
    unet.dispose();
  });
});
