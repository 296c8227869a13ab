// Regression test for the workgroup tree sum on Mesa llvmpipe (Dawn's OpenGL ES backend), run on that
// adapter explicitly whatever the default adapter is. There the old workgroupSum returned, to threads
// >= 8, thread 0's partial of the NEXT sum instead of the total (Tint lowers workgroupBarrier to GLSL
// barrier(), which does not order shared-memory accesses in GLSL ES, and the load of red[0] happened
// after the barrier): group norm, layer norm and the cross-norm statistics got wrong variances.
// wgsl_math.ts workgroupSumWgsl now reads the total from a slot no later first store touches.
//
// Checked here, each against a float64 / CPU-backend reference:
//  - the shared sum (f32 and vec2) at workgroup sizes 2..256 (log2 odd and even: a plain two-half
//    ping-pong tree was still wrong for even log2) and lengths 1, WG - 1, WG, WG + 1, 3 WG + 5, 1000:
//    several sums in a row whose inputs depend on the previous total, every thread's copy of each result;
//  - groupNorm (single and split variants) and layerNorm (workgroups 32..256) at segment lengths around
//    the workgroup multiples and odd ones.
// Error model: an f32 sum of n terms of magnitude s is within 8 sqrt(n) eps s (tolFor); norm outputs
// are O(1) with statistics over len values: tolFor('f32', len), as norm.test.ts.
// Where this machine has no llvmpipe adapter the tests skip LOUDLY (a warning naming why).

import { createBackend, normKernels, wgslMath, type GpuContext, type WebgpuBackend } from '@cnx/kernels';
import { CpuBackend, ops } from '@cnx/tensor';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';

const cpu = new CpuBackend();

describe('workgroup sum and norm kernels on llvmpipe (explicit adapter)', () => {
  let backend: WebgpuBackend | undefined;
  let unavailable = '';
  beforeAll(async () => {
    try {
      backend = await createBackend('webgpu', { adapter: 'llvmpipe' }) as WebgpuBackend;
      console.log(`[llvmpipe] ${backend.description}`);
    } catch (e) {
      unavailable = e instanceof Error ? e.message : String(e);
    }
  });
  afterAll(() => backend?.destroy());

  /** The llvmpipe backend, or a LOUD skip naming why there is none. */
  function llvmpipe(ctx: TestContext): WebgpuBackend {
    if (!backend) {
      console.warn(`\n*** SKIPPING "${ctx.task.name}": no llvmpipe adapter: ${unavailable} ***\n`);
      ctx.skip();
    }
    expect(backend!.adapterInfo.kind).toBe('llvmpipe');
    return backend!;
  }

  const lengths = (wg: number) => [...new Set([1, wg - 1, wg, wg + 1, 3 * wg + 5, 1000])].filter((n) => n >= 1);

  it('workgroupSum (f32): every thread gets each of four dependent totals', async (ctx) => {
    const be = llvmpipe(ctx);
    for (const wg of [2, 32, 64, 128, 256]) {
      for (const n of lengths(wg)) {
        // As the norm kernels: mean = sum x / N, then variance = sum (x - mean)^2 / N (its inputs depend
        // on the first total); then a count of the threads holding data, used only at the end (the
        // pattern of cross-norm backward's sumG); then the sum of tid. Each total has one use, as in
        // the norm kernels: the old helper failed that way (a total kept for a second use was right).
        const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
const N = ${n}u;
const WG = ${wg}u;
var<workgroup> red: array<f32, WG>; // the array WORKGROUP_SUM's callers declared before (examples/ still do); unused now
${wgslMath.WORKGROUP_SUM}
@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_index) tid: u32) {
  var a = 0.0;
  for (var i = tid; i < N; i += WG) { a += X[i]; }
  let mean = workgroupSum(a, tid) / f32(N);
  a = 0.0;
  for (var i = tid; i < N; i += WG) { let d = X[i] - mean; a = fma(d, d, a); }
  let variance = workgroupSum(a, tid) / f32(N);
  let busy = workgroupSum(select(0.0, 1.0, tid < N), tid);
  let tids = workgroupSum(f32(tid), tid);
  Y[tid] = mean;
  Y[WG + tid] = variance;
  Y[2u * WG + tid] = busy;
  Y[3u * WG + tid] = tids;
}`;
        const x = randomArray(n, n + wg, 1, 0.5); // values in [-0.5, 1.5]
        const X = be.fromRaw(x, [n]), Y = be.zeros([4 * wg]);
        be.dispatch({ label: `workgroupSum wg ${wg} n ${n}`, code, bindings: [X, Y], workgroups: [1] });
        const y = await Y.data();
        let total = 0;
        for (const v of x) total += v;
        const mean = total / n;
        let m2 = 0;
        for (const v of x) m2 += (v - mean) ** 2;
        const what = `wg ${wg}, n ${n}`;
        // the sums' tolerances divided by n, as the kernel divides (the relative part is unchanged)
        const perN = (t: { atol: number; rtol: number }) => ({ atol: t.atol / n, rtol: 2 * t.rtol });
        expectAllClose(y.subarray(0, wg), new Array(wg).fill(mean), perN(tolFor('f32', n, 1.5)), `${what}: mean`);
        expectAllClose(y.subarray(wg, 2 * wg), new Array(wg).fill(m2 / n), perN(tolFor('f32', n, 1)), `${what}: variance`);
        // exact: small integers
        expect(Array.from(y.subarray(2 * wg, 3 * wg)), `${what}: threads with data`).toEqual(new Array(wg).fill(Math.min(n, wg)));
        expect(Array.from(y.subarray(3 * wg)), `${what}: sum of tid`).toEqual(new Array(wg).fill((wg * (wg - 1)) / 2));
        X.dispose(); Y.dispose();
      }
    }
  });

  it('workgroupSumWgsl (vec2, as norm backward): every thread gets both dependent totals', async (ctx) => {
    const be = llvmpipe(ctx);
    for (const wg of [32, 64, 256]) {
      for (const n of lengths(wg)) {
        const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> Y: array<vec2<f32>>;
const N = ${n}u;
const WG = ${wg}u;
${wgslMath.workgroupSumWgsl('sum2', 'vec2<f32>')}
@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_index) tid: u32) {
  var a = vec2<f32>(0.0);
  for (var i = tid; i < N; i += WG) { a += vec2<f32>(X[i], 1.0); }
  let s = sum2(a, tid) / f32(N); // (mean, 1)
  a = vec2<f32>(0.0);
  for (var i = tid; i < N; i += WG) { let d = X[i] - s.x; a += vec2<f32>(d * d, f32(i)); }
  let t = sum2(a, tid) / f32(N); // (variance, (N - 1) / 2)
  Y[tid] = s;
  Y[WG + tid] = t;
}`;
        const x = randomArray(n, 7 * n + wg, 1, 0.5);
        const X = be.fromRaw(x, [n]), Y = be.zeros([4 * wg]);
        be.dispatch({ label: `workgroupSum vec2 wg ${wg} n ${n}`, code, bindings: [X, Y], workgroups: [1] });
        const y = await Y.data();
        let total = 0;
        for (const v of x) total += v;
        let m2 = 0;
        for (const v of x) m2 += (v - total / n) ** 2;
        const what = `vec2, wg ${wg}, n ${n}`;
        const at = (k: number, c: number) => Array.from({ length: wg }, (_, t) => y[2 * (k * wg + t) + c]!);
        const perN = (t: { atol: number; rtol: number }) => ({ atol: t.atol / n, rtol: 2 * t.rtol });
        expectAllClose(at(0, 0), new Array(wg).fill(total / n), perN(tolFor('f32', n, 1.5)), `${what}: mean`);
        expectAllClose(at(0, 1), new Array(wg).fill(1), perN(tolFor('f32', n)), `${what}: count / N`);
        expectAllClose(at(1, 0), new Array(wg).fill(m2 / n), perN(tolFor('f32', n, 1)), `${what}: variance`);
        expectAllClose(at(1, 1), new Array(wg).fill((n - 1) / 2), perN(tolFor('f32', n, n)), `${what}: mean index`);
        X.dispose(); Y.dispose();
      }
    }
  });

  it('groupNorm (single and split variants) matches the CPU backend at segment lengths around 256', async (ctx) => {
    const be = llvmpipe(ctx);
    const gpu = be as unknown as GpuContext;
    // [shape, groups]: segment lengths 1, 255, 256, 257, 500 (single, 256 threads), 8450 (split: few
    // mid-size segments, 3 chunks) and 65 793 (split: over SPLIT_MIN_LEN, 17 chunks, odd length).
    const cases: [number[], number][] = [
      [[2, 4], 4], [[2, 1, 255], 1], [[2, 2, 128], 1], [[3, 1, 257], 1], [[2, 8, 5, 25], 2],
      [[1, 4, 65, 65], 2], [[1, 1, 65793], 1],
    ];
    let seed = 300;
    for (const [shape, groups] of cases) {
      const C = shape[1]!;
      const x = randomArray(shape.reduce((a, d) => a * d, 1), seed++, 1, 3), w = randomArray(C, seed++), b = randomArray(C, seed++);
      const got = normKernels.groupNorm(gpu, be.fromRaw(x, shape), be.fromRaw(w, [C]), be.fromRaw(b, [C]), { groups, eps: 1e-5, silu: true });
      const ref = ops.groupNorm(cpu.fromRaw(x, shape), groups, cpu.fromRaw(w, [C]), cpu.fromRaw(b, [C]), 1e-5, true);
      const len = (C / groups) * shape.slice(2).reduce((a, d) => a * d, 1);
      expectAllClose(await got.data(), await ref.data(), tolFor('f32', len), `groupNorm [${shape.join(', ')}] groups ${groups}`);
    }
  });

  it('layerNorm matches the CPU backend at row lengths around each workgroup size (32..256)', async (ctx) => {
    const be = llvmpipe(ctx);
    const gpu = be as unknown as GpuContext;
    let seed = 400;
    for (const D of [1, 2, 31, 32, 33, 255, 256, 257, 300, 511, 512, 513, 1283, 2049]) {
      const x = randomArray(3 * D, seed++, 2, -5), w = randomArray(D, seed++), b = randomArray(D, seed++);
      const got = normKernels.layerNorm(gpu, be.fromRaw(x, [3, D]), be.fromRaw(w, [D]), be.fromRaw(b, [D]), 1e-5);
      const ref = ops.layerNorm(cpu.fromRaw(x, [3, D]), cpu.fromRaw(w, [D]), cpu.fromRaw(b, [D]), 1e-5);
      expectAllClose(await got.data(), await ref.data(), tolFor('f32', D), `layerNorm [3, ${D}]`);
    }
  });
});
