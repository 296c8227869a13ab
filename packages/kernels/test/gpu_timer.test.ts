// GPU time from timestamp queries (webgpu/gpu_timer.ts, WebgpuBackend.startGpuTimer/stopGpuTimer): off by
// default and then creates no query set; measures a positive, finite time over exactly the compute
// passes issued in between (counted: gpuTimerPasses); survives submits and read-backs inside a
// measurement, pipelines compiled while it runs (deferred commands), and more passes than one query
// set holds; leaves every result unchanged; and reports itself unavailable where the device lacks
// 'timestamp-query'. SwiftShader has the feature; where a device lacks it the measuring tests skip
// LOUDLY. Nothing asserts on how long the work took relative to other work (timings flake on a loaded
// machine): what grows with the work is checked through the pass count.

import { WebgpuBackend } from '@cnx/kernels';
import { matmulOp, ops, runOp1, type Backend, type Tensor } from '@cnx/tensor';
import { expect, type TestContext } from 'vitest';
import { randomArray } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

function gpu(be: Backend): WebgpuBackend {
  if (!(be instanceof WebgpuBackend)) throw new Error(`expected a WebgpuBackend, found ${be.name}`);
  return be;
}

/** Count device.createQuerySet calls from now on. */
function countQuerySets(g: WebgpuBackend): { count: () => number; restore: () => void } {
  const device = g.device as GPUDevice & { createQuerySet: GPUDevice['createQuerySet'] };
  const original = device.createQuerySet;
  let n = 0;
  device.createQuerySet = (desc: GPUQuerySetDescriptor) => {
    n++;
    return original.call(device, desc);
  };
  return { count: () => n, restore: () => { device.createQuerySet = original; } };
}

/** `n` chained 128x128x128 matmuls (each its own pass: a zeros() clear in between ends the pass). */
function matmuls(be: Backend, x: Tensor, n: number): Tensor {
  let y = x;
  for (let i = 0; i < n; i++) {
    const next = ops.matmul(y, x, { alpha: 1 / 128 });
    if (y !== x) y.dispose();
    y = next;
    be.zeros([4]).dispose();
  }
  return y;
}

/** The backend as a WebgpuBackend with timestamp queries, or a loud skip. */
function timerOrSkip(be: Backend, ctx: TestContext): WebgpuBackend {
  const g = gpu(be);
  if (!g.hasGpuTimer) {
    console.warn(`\n*** SKIPPING: ${g.description} lacks 'timestamp-query', so there is no GPU time to measure ***\n`);
    ctx.skip();
  }
  return g;
}

async function timed(g: WebgpuBackend, work: () => Tensor): Promise<number> {
  expect(g.startGpuTimer()).toBe(true);
  const y = work();
  const ms = await g.stopGpuTimer();
  y.dispose();
  if (ms === undefined) throw new Error('stopGpuTimer returned undefined after startGpuTimer returned true');
  return ms;
}

describeEachBackend('GPU timer', (test) => {
  test('SwiftShader has timestamp-query (other adapters may not: then the measuring tests skip loudly)', (be, ctx) => {
    const g = gpu(be);
    if (g.adapterInfo.kind !== 'swiftshader') {
      console.warn(`\n*** SKIPPING: the adapter is ${g.description}, not SwiftShader, whose feature set this test knows ***\n`);
      ctx.skip();
    }
    expect(g.hasGpuTimer).toBe(true);
  });

  test('off by default: no query set is created and stopGpuTimer() without a start gives undefined', async (be) => {
    const g = gpu(be);
    const spy = countQuerySets(g);
    try {
      const x = g.fromRaw(randomArray(128 * 128, 1), [1, 128, 128]);
      const y = matmuls(g, x, 3);
      await y.data();
      [x, y].forEach((t) => t.dispose());
      expect(spy.count()).toBe(0);
      expect(await g.stopGpuTimer()).toBeUndefined();
      expect(spy.count()).toBe(0);
    } finally {
      spy.restore();
    }
  });

  test('a measurement is positive and finite, covers exactly the passes issued, and spans compiles and read-backs', async (be, ctx) => {
    const g = timerOrSkip(be, ctx);
    const x = g.fromRaw(randomArray(128 * 128, 2), [1, 128, 128]);
    // A pipeline not compiled yet (transB): its passes are deferred until the compile is done, and timed then.
    const first = await timed(g, () => runOp1(matmulOp, [x, x], { transB: true, alpha: 1 / 128 }));
    expect(Number.isFinite(first) && first > 0, `first measurement ${first} ms`).toBe(true);
    expect(g.gpuTimerPasses).toBe(1);
    const twice = await timed(g, () => matmuls(g, x, 2));
    expect(g.gpuTimerPasses).toBe(2);
    const six = await timed(g, () => matmuls(g, x, 6));
    expect(g.gpuTimerPasses).toBe(6);
    console.log(`[webgpu] GPU time: 2 matmuls ${twice.toFixed(3)} ms, 6 matmuls ${six.toFixed(3)} ms (first, compiling: ${first.toFixed(3)} ms)`);
    for (const ms of [twice, six]) expect(Number.isFinite(ms) && ms > 0, `${ms} ms`).toBe(true);
    // A read-back inside the measurement submits the queries written so far; they count at the stop.
    expect(g.startGpuTimer()).toBe(true);
    const a = matmuls(g, x, 2);
    await a.data();
    const b = matmuls(g, x, 4);
    const across = await g.stopGpuTimer();
    await b.data();
    [x, a, b].forEach((t) => t.dispose());
    expect(Number.isFinite(across) && across! > 0, `${across} ms`).toBe(true);
    expect(g.gpuTimerPasses).toBe(6);
    expect(() => { g.startGpuTimer(); g.startGpuTimer(); }).toThrow(/already running/);
    await g.stopGpuTimer();
  });

  test('results are the same with the timer on', async (be) => {
    const g = gpu(be);
    const x = g.fromRaw(randomArray(3 * 37 * 37, 3), [3, 37, 37]);
    const run = async (): Promise<Float32Array> => {
      const m = matmuls(g, x, 3);
      const y = ops.unary('silu', m);
      const d = await y.data();
      [m, y].forEach((t) => t.dispose());
      return d;
    };
    const off = await run();
    const on = g.startGpuTimer();
    const withTimer = await run();
    const ms = await g.stopGpuTimer();
    x.dispose();
    expect(on).toBe(g.hasGpuTimer);
    if (on) expect(ms).toBeGreaterThan(0);
    expect(Array.from(withTimer)).toEqual(Array.from(off));
  });

  test('more passes than one query set holds: the full set is resolved and a second one taken', async (be, ctx) => {
    const g = timerOrSkip(be, ctx);
    const spy = countQuerySets(g);
    try {
      const x = g.fromRaw(new Float32Array(4).fill(1), [4]);
      expect(g.startGpuTimer()).toBe(true);
      for (let i = 0; i < 1100; i++) {
        ops.unary('relu', x).dispose();
        g.zeros([4]).dispose(); // a clear ends the compute pass: every relu is its own timed pass
      }
      const ms = await g.stopGpuTimer();
      x.dispose();
      expect(Number.isFinite(ms) && ms! > 0, `1100 passes: ${ms} ms`).toBe(true);
      expect(g.gpuTimerPasses).toBe(1100);
      // The earlier tests' set came back to the free list (none when this test runs alone); the 1025th
      // pass needs one more.
      expect(spy.count()).toBeGreaterThanOrEqual(1);
      expect(spy.count()).toBeLessThanOrEqual(2);
    } finally {
      spy.restore();
    }
  });

  test('unavailable without timestamp-query: startGpuTimer() is false and times nothing', async (be) => {
    const g = gpu(be);
    const features = g.features;
    (g as unknown as { features: ReadonlySet<string> }).features = new Set([...features].filter((f) => f !== 'timestamp-query'));
    try {
      expect(g.hasGpuTimer).toBe(false);
      expect(g.startGpuTimer()).toBe(false);
      const x = g.fromRaw(new Float32Array([1, -1]), [2]);
      ops.unary('relu', x).dispose();
      x.dispose();
      expect(await g.stopGpuTimer()).toBeUndefined();
    } finally {
      (g as unknown as { features: ReadonlySet<string> }).features = features;
    }
  });
}, ['webgpu']);
