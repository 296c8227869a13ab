// NaN and infinities in the files merged into a loaded model (issue 17 pass-1 leftover: weights were
// checked at load, LoRA and partial-UNet files were not): one NaN in a LoRA factor or an Inf in a
// ControlNeXt partial UNet is refused naming the file, the key and the first bad element, and the model
// is left unchanged.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend, SafetensorsFile, writeSafetensors, type SafetensorsEntry } from '@cnx/tensor';
import { UNet2DConditionModel } from '@cnx/unet';
import { applyPartialUnet, readLoraFile } from '@cnx/controlnext';
import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';

const golden = GOLDEN_ROOT;
const mergeCase = join(golden, 'sd15_controlnext_unet_merge');
const dir = mkdtempSync(join(tmpdir(), 'cnx-nonfinite-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const backend = new CpuBackend();

const f32 = (shape: number[], fill: (i: number) => number): SafetensorsEntry =>
  ({ dtype: 'F32', shape, data: Float32Array.from({ length: shape.reduce((p, d) => p * d, 1) }, (_, i) => fill(i)) });

describe('LoRA files', () => {
  it('a NaN in lora_up is refused naming the file, key and index', () => {
    const path = join(dir, 'nan_lora.safetensors');
    writeSafetensors(path, {
      'lora_unet_blocks_0_attn_to_q.lora_down.weight': f32([2, 5], (i) => i / 10),
      'lora_unet_blocks_0_attn_to_q.lora_up.weight': f32([6, 2], (i) => (i === 7 ? NaN : i / 10)),
    });
    expect(() => readLoraFile(path)).toThrow(/nan_lora\.safetensors: 'lora_unet_blocks_0_attn_to_q\.lora_up\.weight' holds 1 NaN or infinite values of 12, the first at index 7 \(NaN\); nothing was merged/);
    const inf = join(dir, 'inf_lora.safetensors');
    writeSafetensors(inf, {
      'unet.blocks.0.attn.to_q.lora_A.weight': f32([2, 5], (i) => (i % 3 === 0 ? -Infinity : 0)),
      'unet.blocks.0.attn.to_q.lora_B.weight': f32([6, 2], () => 0),
    });
    expect(() => readLoraFile(inf)).toThrow(/'unet\.blocks\.0\.attn\.to_q\.lora_A\.weight' holds 4 NaN or infinite values of 10, the first at index 0 \(-Infinity\)/);
  });
});

describe('ControlNeXt partial UNet files', () => {
  it('an Inf is refused before anything is merged: the UNet keeps every weight', async () => {
    const unet = UNet2DConditionModel.fromFolder(join(mergeCase, 'unet'), backend);
    const src = SafetensorsFile.open(join(mergeCase, 'sd15_controlnext_unet', 'unet.safetensors'));
    const entries: Record<string, SafetensorsEntry> = {};
    const keys = src.keys();
    for (const k of keys) {
      const t = src.readFloat32(k);
      entries[k] = { dtype: 'F32', shape: t.shape, data: t.data };
    }
    src.close();
    const last = keys[keys.length - 1]!;
    (entries[last]!.data as Float32Array)[3] = Infinity;
    const path = join(dir, 'inf_unet.safetensors');
    writeSafetensors(path, entries);
    const before = new Map<string, Float32Array>();
    for (const [k, t] of unet.namedParameters()) before.set(k, await t.data());
    expect(() => applyPartialUnet(unet, path, backend, { variant: 'sd15' }))
      .toThrow(new RegExp(`inf_unet\\.safetensors: partial UNet weights do not match the base UNet \\(1 of ${keys.length} keys; nothing was changed\\):\\n  ${last.replace(/\./g, '\\.')}: 1 of \\d+ elements are NaN or infinite, the first at index 3 \\(Infinity\\)`));
    for (const [k, t] of unet.namedParameters()) expect(await t.data(), k).toEqual(before.get(k));
    unet.dispose();
  });
});
