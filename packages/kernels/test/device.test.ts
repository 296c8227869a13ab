// WebGPU device acquisition and the backend's resource management (webgpu/device.ts, buffer_pool.ts,
// pipeline_cache.ts, webgpu_backend.ts): the chosen adapter is printed and reported with its backend,
// features and limits; invalid adapter names fail clearly; each software adapter this machine has is
// usable; buffers past the device limits fail naming the limit; the pool reuses buffers so a loop does
// not grow memory; shader errors surface with the kernel's label; destroy() makes the backend unusable.

import { acquireDevice, ADAPTER_KINDS, createBackend, formatAdapterReport, sizeClass, WebgpuBackend } from '@cnx/kernels';
import { ops, type Backend } from '@cnx/tensor';
import { describe, expect, it, type TestContext } from 'vitest';
import { describeEachBackend } from '../../../test/harness/backends.js';

describe('buffer size classes', () => {
  it('round up to a multiple of 4 with at most 25 % waste above the minimum class', () => {
    let prev = 0;
    for (let bytes = 1; bytes < 1 << 22; bytes = Math.ceil(bytes * 1.37) + 1) {
      const c = sizeClass(bytes);
      expect(c).toBeGreaterThanOrEqual(bytes);
      expect(c % 4).toBe(0);
      expect(c).toBeGreaterThanOrEqual(prev);
      if (bytes > 256) expect(c / bytes).toBeLessThanOrEqual(1.25);
      prev = c;
    }
  });
});

/**
 * A WebGPU backend, or a LOUD skip (a warning naming why, and the test marked skipped, never passed)
 * when none can be created; under CNX_REQUIRE_WEBGPU=1 a missing adapter fails the test instead
 * (`required`: false for adapters CI does not promise, such as llvmpipe).
 */
async function backendOrSkip(ctx: TestContext, what: string, opts: Parameters<typeof createBackend>[1] = {}, required = true): Promise<WebgpuBackend> {
  try {
    return await createBackend('webgpu', opts) as WebgpuBackend;
  } catch (e) {
    if (required && process.env.CNX_REQUIRE_WEBGPU === '1') throw e;
    console.warn(`\n*** SKIPPING ${what}: ${(e as Error).message} ***\n`);
    ctx.skip();
    throw e; // not reached: skip() throws
  }
}

describe('adapter selection', () => {
  it('rejects an unknown CNX_ADAPTER value, naming it and the valid ones', async () => {
    const saved = process.env.CNX_ADAPTER;
    process.env.CNX_ADAPTER = 'voodoo';
    try {
      await expect(acquireDevice()).rejects.toThrow(/CNX_ADAPTER: unknown WebGPU adapter 'voodoo'; expected one of gpu, swiftshader, lavapipe, llvmpipe/);
    } finally {
      if (saved === undefined) delete process.env.CNX_ADAPTER;
      else process.env.CNX_ADAPTER = saved;
    }
  });

  it('rejects an unknown adapter option', async () => {
    await expect(acquireDevice({ adapter: 'cuda' })).rejects.toThrow(/option adapter: unknown WebGPU adapter 'cuda'/);
  });

  // Each software adapter in turn: reported, and able to run a kernel. Where one is missing the test
  // says so; in CI (CNX_REQUIRE_WEBGPU=1) SwiftShader must be there, and lavapipe too where CI promises a
  // shader-f16 adapter (CNX_REQUIRE_SHADER_F16=1), which must then offer shader-f16.
  for (const kind of ADAPTER_KINDS.filter((k) => k !== 'gpu')) {
    it(`${kind}: acquired explicitly, reported, and runs a kernel`, async (ctx) => {
      const requiredHere = kind === 'swiftshader' || (kind === 'lavapipe' && process.env.CNX_REQUIRE_SHADER_F16 === '1');
      const backend = await backendOrSkip(ctx, `the ${kind} adapter test (${kind} not available here)`, { adapter: kind }, requiredHere);
      try {
        console.log(`[${kind}] ${backend.description}\n${backend.report}`);
        expect(backend.adapterInfo.kind).toBe(kind);
        expect(backend.description).toContain(`, ${kind}`);
        expect(backend.adapterInfo.backend).toBe(kind === 'llvmpipe' ? 'opengles' : 'vulkan');
        expect(backend.adapterInfo.limits.maxStorageBufferBindingSize).toBe(backend.limits.maxStorageBufferBindingSize);
        if (kind === 'lavapipe' && process.env.CNX_REQUIRE_SHADER_F16 === '1') expect(backend.features.has('shader-f16')).toBe(true);
        const x = backend.fromRaw(new Float32Array([1, -2, 3]), [3]);
        expect(Array.from(await ops.unary('relu', x).data())).toEqual([1, 0, 3]);
      } finally {
        backend.destroy();
      }
    });
  }
});

describeEachBackend('webgpu backend resources', (test) => {
  const gpu = (be: Backend): WebgpuBackend => {
    if (!(be instanceof WebgpuBackend)) throw new Error(`expected a WebgpuBackend, got ${be.name}`);
    return be;
  };

  test('reports the adapter: description, backend, features, limits requested at the adapter maximum', (be) => {
    const g = gpu(be);
    console.log(`[webgpu] ${g.description}\n${formatAdapterReport(g.adapterInfo)}`);
    expect(g.description).toMatch(/^webgpu: .+ \[(vulkan|opengles|metal|d3d12|browser), (gpu|swiftshader|lavapipe|llvmpipe|browser)/);
    expect(g.adapterInfo.features).toEqual([...g.features].sort());
    // The device was created with the adapter's own limits, not the (much lower) defaults.
    expect(g.limits.maxStorageBufferBindingSize).toBeGreaterThan(128 * 2 ** 20 - 1);
  });

  test('a buffer past maxStorageBufferBindingSize fails naming the limit and the size', (be) => {
    const limit = gpu(be).limits.maxStorageBufferBindingSize;
    const elems = Math.floor(limit / 4) + 1;
    expect(() => be.zeros([elems])).toThrow(new RegExp(`needs a buffer of ${elems * 4} bytes, over the device's (maxStorageBufferBindingSize|maxBufferSize) = \\d+ bytes`));
  });

  test('the pool reuses buffers: a 50-step loop does not grow memory', async (be) => {
    const x = be.fromRaw(new Float32Array(1000).fill(1), [10, 100]);
    const step = () => {
      const a = ops.unary('exp', x);
      const b = ops.binary('mul', a, x);
      const s = ops.reduce('sum', b, [1], true);
      a.dispose(); b.dispose();
      return s;
    };
    step().dispose();
    await be.sync();
    const before = be.memory();
    for (let i = 0; i < 50; i++) step().dispose();
    await be.sync();
    const after = be.memory();
    expect(after.liveBytes).toBe(before.liveBytes);
    expect(after.pooledBytes).toBe(before.pooledBytes);
    expect(after.peakBytes).toBe(before.peakBytes);
    x.dispose();
  });

  test('a WGSL compilation error surfaces at sync() with the kernel label', async (be) => {
    const g = gpu(be);
    const out = g.empty([4]);
    g.dispatch({ label: 'deliberately broken', code: '@compute @workgroup_size(1) fn main() { let x: f32 = nonsense; }', bindings: [], workgroups: [1] });
    await expect(be.sync()).rejects.toThrow(/deliberately broken/);
    out.dispose();
    await be.sync(); // the error was reported once, the backend goes on
  });
}, ['webgpu']);

describe('pool cap', () => {
  it('with maxPooledBytes 0 released buffers are destroyed (after submit) and results stay right', async (ctx) => {
    const be = await backendOrSkip(ctx, 'the pool cap test', { maxPooledBytes: 0 });
    try {
      const x = be.fromRaw(new Float32Array([1, 2, 3, 4]), [4]);
      let acc = ops.affine(x, 1, 0);
      for (let i = 0; i < 40; i++) { // more than one submit batch: buffers die mid-batch and after it
        const next = ops.binary('add', acc, x);
        acc.dispose();
        acc = next;
      }
      expect(Array.from(await acc.data())).toEqual([41, 82, 123, 164]);
      expect(be.memory().pooledBytes).toBe(0);
    } finally {
      be.destroy();
    }
  });
});

describe('destroy', () => {
  it('makes the backend unusable with a clear error', async (ctx) => {
    const be = await backendOrSkip(ctx, 'the destroy test');
    be.destroy();
    expect(() => be.zeros([2])).toThrow(/after destroy/);
  });
});
