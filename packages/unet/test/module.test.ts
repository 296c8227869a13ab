// Module: the parameter walk gives torch state-dict names; setParameter replaces and disposes.
import { CpuBackend, RandomWeights, ShapeRecorder, fromFloat32, type WeightSource } from '@cnx/tensor';
import { Downsample2D, ResnetBlock2D, TimestepEmbedding, loadParameter } from '@cnx/unet';
import { describe, expect, it } from 'vitest';

describe('Module', () => {
  const backend = new CpuBackend();

  it('names parameters by the diffusers key tree', () => {
    const rec = new ShapeRecorder();
    const block = new ResnetBlock2D(rec.sub('down_blocks.0.resnets.0'), backend, { inC: 8, outC: 16, tembC: 12, groups: 4, eps: 1e-5 });
    const names = block.namedParameters('down_blocks.0.resnets.0.').map(([n]) => n);
    // Every requested key is a parameter, and vice versa: the module tree is the key tree.
    expect(new Set(names)).toEqual(new Set(rec.shapes().keys()));
    expect(names).toContain('down_blocks.0.resnets.0.conv_shortcut.weight');
    expect(names).toContain('down_blocks.0.resnets.0.time_emb_proj.bias');
    expect(block.numParameters()).toBe(rec.parameterCount());
    // 8 + 8 (norm1) + 16*8*9 + 16 (conv1) + 16*12 + 16 (temb) + 16 + 16 (norm2) + 16*16*9 + 16 + 16*8 + 16
    expect(block.numParameters()).toBe(16 + 1168 + 208 + 32 + 2320 + 144);
  });

  it('loadParameter widens f16/bf16 to f32 and refuses any other dtype', async () => {
    const source = (dtype: 'f16' | 'bf16' | 'i32'): WeightSource => ({
      get: (_path, shape, be) => be.fromRaw(fromFloat32(new Float32Array([1.5, -2]), dtype), shape, dtype),
      has: () => true,
      sub() { return this; },
    });
    for (const dtype of ['f16', 'bf16'] as const) {
      const p = loadParameter(source(dtype), 'w', [2], backend);
      expect(p.dtype).toBe('f32');
      expect(Array.from(await p.data())).toEqual([1.5, -2]);
    }
    expect(() => loadParameter(source('i32'), 'conv.weight', [2], backend))
      .toThrow(`loadParameter: 'conv.weight' has dtype i32, expected f32 (or f16/bf16, widened to f32)`);
  });

  it('indexes arrays like nn.ModuleList and replaces parameters in place', () => {
    const ws = new RandomWeights({ seed: 1 });
    const d = new Downsample2D(ws, backend, { channels: 4 });
    expect(d.namedParameters().map(([n]) => n)).toEqual(['conv.weight', 'conv.bias']);
    const old = d.getParameter('conv.bias');
    const fresh = backend.zeros([4]);
    d.setParameter('conv.bias', fresh);
    expect(old.isDisposed).toBe(true);
    expect(d.getParameter('conv.bias')).toBe(fresh);
    expect(() => d.setParameter('conv.bias', backend.zeros([5]))).toThrow(/shape \[4\]/);
    expect(() => d.getParameter('conv.nothing.weight')).toThrow(/no module at 'conv.nothing'/);
    const te = new TimestepEmbedding(ws, backend, { inC: 4, timeEmbedDim: 8 });
    expect(te.namedParameters().map(([n]) => n)).toEqual(['linear_1.weight', 'linear_1.bias', 'linear_2.weight', 'linear_2.bias']);
    te.dispose();
    expect(te.getParameter('linear_1.weight').isDisposed).toBe(true);
  });
});
