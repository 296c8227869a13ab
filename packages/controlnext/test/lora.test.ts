// LoRA: both file formats read from real files written here, key resolution against a model's
// parameter names (kohya ambiguity is an error), the merge formula incl. a 3x3 conv LoRA, diffusers'
// PEFT alpha rule for mixed ranks, unmerge restoring the weights, and errors naming file and key.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend, writeSafetensors, type SafetensorsEntry, type Tensor } from '@cnx/tensor';
import { mergeLora, readLoraFile, unmergeLora, type LoraModel } from '@cnx/controlnext';
import { expectAllClose, randomArray } from '../../../test/harness/allclose.js';

const dir = mkdtempSync(join(tmpdir(), 'cnx-lora-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const b = new CpuBackend();

/** A model as a flat parameter map (what LoraModel needs). */
class FlatModel implements LoraModel {
  readonly params = new Map<string, Tensor>();
  constructor(shapes: Record<string, number[]>) {
    let seed = 1;
    for (const [k, s] of Object.entries(shapes)) this.params.set(k, b.fromRaw(randomArray(s.reduce((p, d) => p * d, 1), seed++), s));
  }
  namedParameters(): [string, Tensor][] { return [...this.params]; }
  getParameter(p: string): Tensor { return this.params.get(p)!; }
  setParameter(p: string, t: Tensor): void { this.params.get(p)?.dispose(); this.params.set(p, t); }
}

const f32 = (shape: number[], seed: number): SafetensorsEntry => ({ dtype: 'F32', shape, data: randomArray(shape.reduce((p, d) => p * d, 1), seed) });
const scalar = (v: number): SafetensorsEntry => ({ dtype: 'F32', shape: [], data: Float32Array.of(v) });

function matmul(a: Float32Array, b2: Float32Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) { let s = 0; for (let x = 0; x < k; x++) s += a[i * k + x]! * b2[x * n + j]!; out[i * n + j] = s; }
  return out;
}

describe('kohya format', () => {
  const shapes = { 'blocks.0.attn.to_q.weight': [6, 5], 'blocks.0.attn.to_q.bias': [6], 'blocks.0.conv1.weight': [4, 3, 3, 3] };
  const path = join(dir, 'kohya.safetensors');
  writeSafetensors(path, {
    'lora_unet_blocks_0_attn_to_q.lora_down.weight': f32([2, 5], 11),
    'lora_unet_blocks_0_attn_to_q.lora_up.weight': f32([6, 2], 12),
    'lora_unet_blocks_0_attn_to_q.alpha': scalar(1),
    'lora_unet_blocks_0_conv1.lora_down.weight': f32([3, 3, 3, 3], 13),
    'lora_unet_blocks_0_conv1.lora_up.weight': f32([4, 3, 1, 1], 14),
    'lora_te_text_model_fc1.lora_down.weight': f32([2, 4], 15),
    'lora_te_text_model_fc1.lora_up.weight': f32([4, 2], 16),
  });

  it('merges W + scale * alpha/r * up @ down (Linear and 3x3 conv), reports the skipped text encoder, and unmerges', async () => {
    const lora = readLoraFile(path);
    expect(lora.format).toBe('kohya');
    const model = new FlatModel(shapes);
    const before = new Map(await Promise.all([...model.params].map(async ([k, t]) => [k, await t.data()] as const)));
    const m = mergeLora(lora, { unet: model }, 0.7);
    expect(m.merged.map((x) => x.parameter).sort()).toEqual(['blocks.0.attn.to_q.weight', 'blocks.0.conv1.weight']);
    expect(m.skipped).toEqual([{ target: 'text_encoder', count: 1 }]);
    const q = lora.layers.find((l) => l.fileName === 'blocks_0_attn_to_q')!;
    const dq = matmul(q.up.data, q.down.data, 6, 2, 5);
    const wantQ = before.get('blocks.0.attn.to_q.weight')!.map((w, i) => w + 0.7 * (1 / 2) * dq[i]!);
    expectAllClose(await model.getParameter('blocks.0.attn.to_q.weight').data(), wantQ, { atol: 1e-6, rtol: 1e-6 });
    const c = lora.layers.find((l) => l.fileName === 'blocks_0_conv1')!;
    const dc = matmul(c.up.data, c.down.data, 4, 3, 27); // alpha missing: alpha = rank, scale 1
    const wantC = before.get('blocks.0.conv1.weight')!.map((w, i) => w + 0.7 * dc[i]!);
    expectAllClose(await model.getParameter('blocks.0.conv1.weight').data(), wantC, { atol: 1e-6, rtol: 1e-6 });
    expect(await model.getParameter('blocks.0.attn.to_q.bias').data()).toEqual(before.get('blocks.0.attn.to_q.bias'));
    unmergeLora(m);
    for (const [k, v] of before) expectAllClose(await model.getParameter(k).data(), v, { atol: 1e-6, rtol: 1e-6 }, k);
  });

  it('an underscored name two modules share is an error naming both', () => {
    const model = new FlatModel({ 'blocks.0.attn.to_q.weight': [6, 5], 'blocks_0.attn.to_q.weight': [6, 5], 'blocks.0.conv1.weight': [4, 3, 3, 3] });
    expect(() => mergeLora(readLoraFile(path), { unet: model }, 1)).toThrow(/'blocks_0_attn_to_q' matches several unet modules: blocks\.0\.attn\.to_q, blocks_0\.attn\.to_q/);
  });

  it('a LoRA for another architecture names the modules it cannot place', () => {
    const model = new FlatModel({ 'other.weight': [6, 5] });
    expect(() => mergeLora(readLoraFile(path), { unet: model }, 1)).toThrow(/2 unet LoRA module\(s\) have no matching parameter.*blocks_0_attn_to_q/);
  });
});

describe('diffusers/PEFT format', () => {
  it('without alphas, every module is scaled by first_rank / rank (diffusers get_peft_kwargs)', async () => {
    const path = join(dir, 'peft.safetensors');
    writeSafetensors(path, {
      'unet.a.to_k.lora_A.weight': f32([4, 5], 21), 'unet.a.to_k.lora_B.weight': f32([6, 4], 22),
      'unet.b.to_v.lora_A.weight': f32([2, 5], 23), 'unet.b.to_v.lora_B.weight': f32([6, 2], 24),
    });
    const lora = readLoraFile(path);
    expect(lora.format).toBe('peft');
    expect(lora.layers.map((l) => [l.fileName, l.rank, l.alpha])).toEqual([['a.to_k', 4, 4], ['b.to_v', 2, 4]]);
    const model = new FlatModel({ 'a.to_k.weight': [6, 5], 'b.to_v.weight': [6, 5] });
    const w0 = await model.getParameter('b.to_v.weight').data();
    mergeLora(lora, { unet: model }, 1);
    const l = lora.layers[1]!;
    const d = matmul(l.up.data, l.down.data, 6, 2, 5);
    expectAllClose(await model.getParameter('b.to_v.weight').data(), w0.map((w, i) => w + 2 * d[i]!), { atol: 1e-6, rtol: 1e-6 });
  });
});

describe('file errors', () => {
  it('names the file and what a LoRA file should contain', () => {
    const p = join(dir, 'weights.safetensors');
    writeSafetensors(p, { 'conv.weight': f32([2, 2], 1) });
    expect(() => readLoraFile(p)).toThrow(/weights\.safetensors: not a LoRA file this loader knows: expected kohya keys/);
    const q = join(dir, 'half.safetensors');
    writeSafetensors(q, { 'lora_unet_x.lora_down.weight': f32([2, 3], 1) });
    expect(() => readLoraFile(q)).toThrow(/'lora_unet_x\.lora_down\.weight' has no matching 'lora_unet_x\.lora_up\.weight'/);
  });
});
