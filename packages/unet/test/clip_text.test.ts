// CLIPTextModel pooling rule (transformers 4.57 CLIPTextTransformer.forward): eos_token_id == 2 ->
// argmax(input_ids); otherwise the first position holding eos_token_id. And hidden states / causality.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CpuBackend, RandomWeights, SafetensorsFile, writeSafetensors, type SafetensorsEntry } from '@cnx/tensor';
import { CLIPTextModel } from '@cnx/unet';
import { describe, expect, it } from 'vitest';
import { goldenPath } from '../../../test/harness/golden_root.js';

const config = (eos: number) => ({
  vocab_size: 50, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 2, num_attention_heads: 2,
  max_position_embeddings: 10, hidden_act: 'gelu', layer_norm_eps: 1e-5, eos_token_id: eos,
});

async function rowAt(t: { data(): Promise<Float32Array>; shape: readonly number[] }, b: number, i: number): Promise<number[]> {
  const [, L, D] = t.shape as [number, number, number];
  const d = await t.data();
  return [...d.subarray((b * L + i) * D, (b * L + i + 1) * D)];
}

describe('CLIPTextModel', () => {
  const backend = new CpuBackend();
  // Row 0: eos (7) first at 3, a larger id (40) later; row 1: no eos at all.
  const ids = [[1, 4, 9, 7, 40, 7], [1, 3, 2, 5, 6, 8]];

  it('pools at the first eos_token_id when it is not the legacy 2', async () => {
    const m = new CLIPTextModel(config(7), new RandomWeights({ seed: 3 }), backend);
    const o = m.forward(ids);
    expect(m.eosPosition(ids[0]!)).toBe(3);
    expect(m.eosPosition(ids[1]!)).toBe(0); // argmax of an all-zero mask
    const pooled = await o.pooledOutput.data();
    expect([...pooled.subarray(0, 8)]).toEqual(await rowAt(o.lastHiddenState, 0, 3));
    expect([...pooled.subarray(8, 16)]).toEqual(await rowAt(o.lastHiddenState, 1, 0));
    m.dispose();
  });

  it('pools at argmax(input_ids) with the legacy eos_token_id 2', async () => {
    const m = new CLIPTextModel(config(2), new RandomWeights({ seed: 3 }), backend);
    const o = m.forward(ids, { outputHiddenStates: true });
    expect(m.eosPosition(ids[0]!)).toBe(4);
    expect(m.eosPosition(ids[1]!)).toBe(5);
    const pooled = await o.pooledOutput.data();
    expect([...pooled.subarray(0, 8)]).toEqual(await rowAt(o.lastHiddenState, 0, 4));
    expect(o.hiddenStates?.length).toBe(3); // embeddings + one per layer
    // Causal: position 1 does not see positions > 1, so changing a later token leaves it unchanged.
    const changed = m.forward([[1, 4, 11, 12, 13, 14]], { outputHiddenStates: true });
    expect(await rowAt(changed.hiddenStates![2]!, 0, 1)).toEqual(await rowAt(o.hiddenStates![2]!, 0, 1));
    expect(await rowAt(changed.hiddenStates![2]!, 0, 2)).not.toEqual(await rowAt(o.hiddenStates![2]!, 0, 2));
    m.dispose();
  });

  it('rejects an unsupported activation and out-of-range ids', () => {
    expect(() => new CLIPTextModel({ ...config(2), hidden_act: 'swish' }, new RandomWeights(), backend)).toThrow(/hidden_act="swish" is not supported/);
    const m = new CLIPTextModel(config(2), new RandomWeights(), backend);
    expect(() => m.forward([[1, 50]])).toThrow(/index 50 out of range \[0, 50\)/);
    m.dispose();
  });
});

describe('CLIPTextModel.fromFolder', () => {
  // Older transformers checkpoints (SD1.5's text_encoder) hold the int64 buffer
  // text_model.embeddings.position_ids [1, max_positions]. Integer tensors are refused as parameters
  // (issue 17), so the model acknowledges it without reading it; a wrong shape is still reported.
  it('accepts the int64 position_ids buffer of older checkpoints, and reports it mis-shaped', () => {
    const golden = goldenPath('clip_text', 'text_encoder');
    const src = SafetensorsFile.open(join(golden, 'model.safetensors'));
    const entries: Record<string, SafetensorsEntry> = {};
    for (const k of src.keys()) {
      const { shape, data } = src.readFloat32(k);
      entries[k] = { dtype: 'F32', shape, data };
    }
    src.close();
    const root = mkdtempSync(join(tmpdir(), 'clip-posids-'));
    const backend = new CpuBackend();
    try {
      for (const [name, n] of [['ok', 77], ['bad', 76]] as const) {
        const dir = join(root, name);
        mkdirSync(dir);
        writeSafetensors(join(dir, 'model.safetensors'), {
          ...entries,
          'text_model.embeddings.position_ids': { dtype: 'I64', shape: [1, n], data: BigInt64Array.from({ length: n }, (_, i) => BigInt(i)) },
        });
        copyFileSync(join(golden, 'config.json'), join(dir, 'config.json'));
      }
      CLIPTextModel.fromFolder(join(root, 'ok'), backend).dispose();
      expect(() => CLIPTextModel.fromFolder(join(root, 'bad'), backend))
        .toThrow(/mis-shaped keys \(1\):\n {2}text_model\.embeddings\.position_ids: expected \[1, 77\], found \[1, 76\]/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
