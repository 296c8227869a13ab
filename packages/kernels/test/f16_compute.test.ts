// The f16-compute variants of matmul, conv2d and attention (f16_compute.ts: operands staged as f16,
// exact f32 products, f32 accumulation).
//
// 1. The variants' code on any adapter: each f16 variant is one template with the staged type H a
//    parameter; with `alias H = f32;` it is the same kernel minus the rounding, so its indexing, staging
//    and epilogues are checked here against the float64 CPU reference with the f32 kernels' tolerances
//    (same error models as matmul.test.ts / conv2d.test.ts / attention.test.ts), on every layout, tile
//    and variant below. A structural check confirms the f16 WGSL differs from the tested one only in its
//    preamble (`enable f16; alias H = f16;`).
// 2. The rounding, where the device has `shader-f16` (backend created with compute 'f16'): the kernels
//    through ops.* on that backend against the float64 reference on f16-ROUNDED operands, with the same
//    f32 tolerances (the products of f16 values are exact in f32, so rounding the operands is the only
//    difference), and against the reference on the original operands with the error bound
//    2 u16 sum|a||b| (+ the f32 tolerance). It runs on the first adapter whose device has shader-f16
//    (createShaderF16Backend: a GPU, or Mesa's lavapipe 25+, which CI installs and requires with
//    CNX_REQUIRE_SHADER_F16=1). Where there is none this block is SKIPPED LOUDLY (a warning naming each
//    adapter and why), never counted as passed.

import { attentionKernel, conv2dKernel, createBackend, f16Compute, matmulKernel, type GpuContext, type WebgpuBackend } from '@cnx/kernels';
import { attentionOp, conv2dOp, CpuBackend, matmulOp, runOp1, type Backend, type Conv2dParams, type MatmulParams, type Tensor } from '@cnx/tensor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectAllClose, randomArray, tolFor, type Tol } from '../../../test/harness/allclose.js';
import { createShaderF16Backend, requireShaderF16 } from '../../../test/harness/backends.js';

const cpu = new CpuBackend();
const F32_EPS = 1.19e-7;
const U16 = 2 ** -11;
const EMULATED: f16Compute.HalfOperands = { type: 'f32' };
const { roundToF16 } = f16Compute;

interface MmCase { B: number; M: number; K: number; N: number; transA?: boolean; transB?: boolean; bias?: boolean; residual?: boolean; bDtype?: 'f32' | 'f16'; tile?: matmulKernel.MatmulTile }
const mmCases: MmCase[] = [
  { B: 2, M: 37, K: 29, N: 21, bias: true, residual: true },
  { B: 1, M: 64, K: 40, N: 68, transA: true },                       // vec4 A loads
  { B: 2, M: 19, K: 33, N: 45, transB: true, bias: true, bDtype: 'f16' }, // Linear layout, 16-bit weight
  { B: 1, M: 130, K: 70, N: 64, tile: { tileM: 128, tileN: 64, tileK: 16, microM: 8, microN: 4 } },
  { B: 3, M: 9, K: 17, N: 12, tile: { tileM: 16, tileN: 64, tileK: 16, microM: 4, microN: 4 } },
];
interface ConvCase { x: [number, number, number, number]; w: [number, number, number, number]; stride?: [number, number]; padding?: [number, number, number, number]; groups?: number; splitK?: number; tile?: conv2dKernel.Conv2dTileName }
const convCases: ConvCase[] = [
  { x: [2, 6, 9, 7], w: [19, 6, 3, 3], padding: [1, 1, 1, 1] },
  { x: [2, 6, 9, 10], w: [10, 6, 3, 3], stride: [2, 2], padding: [0, 1, 0, 1] },
  { x: [2, 13, 5, 7], w: [21, 13, 1, 1] },
  { x: [2, 12, 7, 6], w: [9, 4, 3, 2], groups: 3, stride: [2, 1], padding: [2, 0, 1, 1] },
  { x: [1, 64, 3, 3], w: [37, 64, 3, 3], padding: [1, 1, 1, 1], splitK: 3 },
  { x: [1, 3, 11, 13], w: [7, 3, 3, 3], padding: [1, 1, 1, 1], tile: 'thin' },
  { x: [1, 9, 17, 17], w: [131, 9, 1, 1], tile: 'large' },
];
interface AttnCase { B: number; Lq: number; Lk: number; H: number; D: number; Dv?: number; causal?: boolean; storage?: number }
const attnCases: AttnCase[] = [
  { B: 2, Lq: 37, Lk: 37, H: 2, D: 40 },
  { B: 1, Lq: 50, Lk: 77, H: 3, D: 18, Dv: 22 },   // D, Dv not multiples of 4
  { B: 1, Lq: 33, Lk: 33, H: 1, D: 16, causal: true },
  { B: 1, Lq: 20, Lk: 31, H: 2, D: 80, storage: 16384 }, // Q read from global memory at 16 KiB
  { B: 1, Lq: 9, Lk: 13, H: 1, D: 160, storage: 16384 },
];

/** The same context with other limits (to reach the tile variants a 16 KiB device gets). */
function withStorage(ctx: GpuContext, bytes: number | undefined): GpuContext {
  if (bytes === undefined) return ctx;
  const base = ctx.limits as unknown as Record<string, number>;
  const limits = new Proxy({}, { get: (_t, k: string) => (k === 'maxComputeWorkgroupStorageSize' ? bytes : base[k]) });
  return {
    device: ctx.device, features: ctx.features, limits: limits as GPUSupportedLimits, ...(ctx.computeDtype ? { computeDtype: ctx.computeDtype } : {}),
    empty: (s, d) => ctx.empty(s, d), buffer: (t) => ctx.buffer(t), dispatch: (spec) => ctx.dispatch(spec),
  };
}

const absArr = (a: Float32Array) => a.map(Math.abs);
/** The staged operand type a kernel runs with: `half`, or (undefined) the context's choice. */
const staged = (ctx: GpuContext, half: f16Compute.HalfOperands | undefined): string => (half ?? f16Compute.halfOperandsFor(ctx))?.type ?? 'f32';
const dispose = (...ts: (Tensor | undefined)[]) => ts.forEach((t) => t?.dispose());

/**
 * Runs every case: `run` computes on the GPU, the reference is the float64 op on (optionally rounded)
 * inputs; `bound` adds an elementwise bound (the f16 rounding bound on the original inputs).
 */
async function matmulCases(ctx: GpuContext, half: f16Compute.HalfOperands | undefined, rounded: boolean): Promise<void> {
  let seed = 1;
  for (const c of mmCases) {
    const aShape = c.transA ? [c.B, c.K, c.M] : [c.B, c.M, c.K], bShape = c.transB ? [1, c.N, c.K] : [1, c.K, c.N];
    const a = randomArray(aShape.reduce((p, d) => p * d, 1), seed++), b = randomArray(bShape.reduce((p, d) => p * d, 1), seed++, 0.5);
    const bias = c.bias ? randomArray(c.N, seed++) : undefined, res = c.residual ? randomArray(c.B * c.M * c.N, seed++) : undefined;
    const bStored = c.bDtype === 'f16' ? roundToF16(b) : b;
    const be = ctx as unknown as Backend;
    const ga = be.fromRaw(a, aShape), gb = c.bDtype === 'f16' ? be.cast(be.fromRaw(b, bShape), 'f16') : be.fromRaw(b, bShape);
    const gbias = bias && be.fromRaw(bias, [c.N]), gres = res && be.fromRaw(res, [c.B, c.M, c.N]);
    const opts = { transA: c.transA, transB: c.transB, bias: gbias, residual: gres };
    const got = matmulKernel.matmulWithTile(ctx, ga, gb, opts, c.tile, half);
    const params: MatmulParams = { transA: c.transA, transB: c.transB };
    const refOf = (av: Float32Array, bv: Float32Array) => {
      const t = [cpu.fromRaw(av, aShape), cpu.fromRaw(bv, bShape), bias && cpu.fromRaw(bias, [c.N]), res && cpu.fromRaw(res, [c.B, c.M, c.N])];
      const r = runOp1(matmulOp, t, params);
      dispose(...t);
      return r;
    };
    const ref = refOf(rounded ? roundToF16(a) : a, rounded ? roundToF16(bStored) : bStored);
    const what = `matmul ${staged(ctx, half)} operands ${JSON.stringify(c)}`;
    expectAllClose(await got.data(), await ref.data(), tolFor('f32', c.K, Math.sqrt(c.K) / 3), what);
    if (rounded) {
      // Against the unrounded operands: |err| <= 2 u16 sum|a||b| (+ f32 rounding).
      const plain = refOf(a, bStored), mag = refOf(absArr(a), absArr(bStored));
      const g = await got.data(), p = await plain.data(), m = await mag.data();
      const bad = [...g].findIndex((v, i) => !(Math.abs(v - p[i]!) <= 2.01 * U16 * (m[i]! + (res ? Math.abs(res[i]!) : 0) / U16 * F32_EPS) + 1e-5));
      expect(bad, `${what}: f16 rounding bound vs unrounded operands at ${bad}`).toBe(-1);
      dispose(plain, mag);
    }
    dispose(ga, gb, gbias, gres, got, ref);
  }
}

async function convCases_(ctx: GpuContext, half: f16Compute.HalfOperands | undefined, rounded: boolean): Promise<void> {
  let seed = 100;
  for (const c of convCases) {
    const params: Conv2dParams = { stride: c.stride ?? [1, 1], padding: c.padding ?? [0, 0, 0, 0], groups: c.groups ?? 1, activation: 'silu' };
    const x = randomArray(c.x.reduce((a, d) => a * d, 1), seed++), w = randomArray(c.w.reduce((a, d) => a * d, 1), seed++), bias = randomArray(c.w[0], seed++);
    const be = ctx as unknown as Backend;
    const gx = be.fromRaw(x, c.x), gw = be.fromRaw(w, c.w), gb = be.fromRaw(bias, [c.w[0]]);
    const tile = c.tile ? conv2dKernel.CONV2D_TILES[c.tile] : undefined;
    const got = conv2dKernel.conv2dWithTile(ctx, gx, gw, gb, params, tile, c.splitK, half);
    const rx = cpu.fromRaw(rounded ? roundToF16(x) : x, c.x), rw = cpu.fromRaw(rounded ? roundToF16(w) : w, c.w), rb = cpu.fromRaw(bias, [c.w[0]]);
    const ref = runOp1(conv2dOp, [rx, rw, rb], params);
    const K = c.w[1] * c.w[2] * c.w[3];
    expectAllClose(await got.data(), await ref.data(), tolFor('f32', K, Math.max(1, Math.sqrt(K) / 3)), `conv2d ${staged(ctx, half)} operands ${JSON.stringify(c)}`);
    dispose(gx, gw, gb, got, rx, rw, rb, ref);
  }
}

async function attnCases_(ctx0: GpuContext, half: f16Compute.HalfOperands | undefined, rounded: boolean): Promise<void> {
  let seed = 200;
  for (const c of attnCases) {
    const ctx = withStorage(ctx0, c.storage);
    const Dv = c.Dv ?? c.D;
    const qs = [c.B, c.Lq, c.H, c.D], ks = [c.B, c.Lk, c.H, c.D], vs = [c.B, c.Lk, c.H, Dv];
    const q = randomArray(qs.reduce((a, d) => a * d, 1), seed++), k = randomArray(ks.reduce((a, d) => a * d, 1), seed++), v = randomArray(vs.reduce((a, d) => a * d, 1), seed++);
    const opts = { scale: 1 / Math.sqrt(c.D), causal: c.causal };
    const be = ctx0 as unknown as Backend;
    const gq = be.fromRaw(q, qs), gk = be.fromRaw(k, ks), gv = be.fromRaw(v, vs);
    const got = attentionKernel.attentionWithTiles(ctx, gq, gk, gv, opts, undefined, half);
    const tiles = attentionKernel.plan(ctx, gq, gk, gv, opts, undefined, false, half ?? f16Compute.halfOperandsFor(ctx)).params;
    const r = (a: Float32Array) => (rounded ? roundToF16(a) : a);
    // q is rounded only where the kernel stages it (attention.ts); from global memory it stays f32
    const rq = cpu.fromRaw(tiles.qShared ? r(q) : q, qs), rk = cpu.fromRaw(r(k), ks), rv = cpu.fromRaw(r(v), vs);
    const ref = runOp1(attentionOp, [rq, rk, rv], opts);
    // attention.test.ts's model: score error ~ sqrt(D) eps scale max|q||k|, moved to the output x 2 max|v|, + sqrt(Lk) eps max|v|.
    const tol: Tol = { atol: 8 * F32_EPS * (2 * Math.sqrt(c.D) * opts.scale + Math.sqrt(c.Lk)), rtol: 8 * F32_EPS };
    expectAllClose(await got.data(), await ref.data(), tol, `attention ${staged(ctx0, half)} operands ${JSON.stringify(c)} (BQ=${tiles.BQ} BK=${tiles.BK} qShared=${tiles.qShared} separateKV=${tiles.separateKV})`);
    dispose(gq, gk, gv, got, rq, rk, rv, ref);
  }
}

describe('f16-compute variants: generated WGSL', () => {
  it('the f16 WGSL is the tested template with an f16 preamble', () => {
    const swap = (s: string) => s.replace('enable f16;\nalias H = f16;\n', 'alias H = f32;\n');
    const mm: matmulKernel.MatmulParams = {
      transA: false, transB: true, bDtype: 'f16', vecA: true, vecB: true, vecOut: true, bias: true, residual: false, activation: 'silu',
      tileM: 64, tileN: 64, tileK: 16, microM: 4, microN: 4,
    };
    const f16 = matmulKernel.wgsl({ ...mm, half: { type: 'f16' } }), emu = matmulKernel.wgsl({ ...mm, half: EMULATED });
    expect(f16.startsWith('enable f16;\nalias H = f16;\n')).toBe(true);
    expect(swap(f16).replace('f16 operands', 'f32 operands')).toBe(emu);
    expect(emu).toContain('var<workgroup> As: array<vec4<H>');
    const cv: conv2dKernel.Conv2dParams = {
      variant: 'implicit_gemm', tile: conv2dKernel.CONV2D_TILES.wide, kh: 3, kw: 3, sh: 1, sw: 1, pt: 1, pl: 1, hasBias: true, hasResidual: true, activation: 'none', splitK: 1,
    };
    expect(swap(conv2dKernel.wgsl({ ...cv, half: { type: 'f16' } }))).toBe(conv2dKernel.wgsl({ ...cv, half: EMULATED }));
    const at: attentionKernel.AttentionParams = { D: 40, Dv: 40, BQ: 32, BK: 32, G: 4, causal: false, qShared: true, separateKV: true, vecQK: true, vecV: true, lse: false };
    expect(swap(attentionKernel.wgsl({ ...at, half: { type: 'f16' } }))).toBe(attentionKernel.wgsl({ ...at, half: EMULATED }));
    // f16 stages take half the bytes: attention fits larger tiles in the same workgroup memory.
    expect(attentionKernel.attentionStageBytes(at, 2)).toBeLessThan(attentionKernel.attentionStageBytes(at, 4));
  });
});

describe('f16-compute variants (H = f32: the f16 kernels without rounding) [webgpu]', () => {
  let backend: WebgpuBackend | undefined;
  let unavailable: string | undefined;
  beforeAll(async () => {
    try {
      backend = (await createBackend('webgpu')) as WebgpuBackend;
      console.log(`[webgpu] ${backend.description}`);
    } catch (e) {
      unavailable = e instanceof Error ? e.message : String(e);
      if (process.env.CNX_REQUIRE_WEBGPU !== '1') console.warn(`\n*** SKIPPING f16-compute variants [webgpu]: ${unavailable} ***\n`);
    }
  });
  afterAll(() => backend?.destroy());
  const test = (name: string, fn: (ctx: GpuContext) => Promise<void>) => it(name, async (c) => {
    if (!backend) {
      if (process.env.CNX_REQUIRE_WEBGPU === '1') throw new Error(`WebGPU is required but unavailable: ${unavailable}`);
      return c.skip();
    }
    await fn(backend);
  }, 600_000);
  test('matmul: every layout, 16-bit b, tiles', (ctx) => matmulCases(ctx, EMULATED, false));
  test('conv2d: implicit GEMM, pointwise, grouped, split-K, tiles', (ctx) => convCases_(ctx, EMULATED, false));
  test('attention: staged / global Q, separate / shared K-V stage, causal, odd D', (ctx) => attnCases_(ctx, EMULATED, false));
});

describe('f16-compute variants (shader-f16: operands rounded to f16) [webgpu]', () => {
  let backend: WebgpuBackend | undefined;
  let unavailable: string | undefined;
  beforeAll(async () => {
    ({ backend, unavailable } = await createShaderF16Backend());
    if (backend) console.log(`[webgpu, shader-f16] ${backend.description}`);
    else if (!requireShaderF16) console.warn(`\n*** SKIPPING f16-compute variants with shader-f16: ${unavailable} ***\n`);
  });
  afterAll(() => backend?.destroy());
  const test = (name: string, fn: (ctx: GpuContext) => Promise<void>) => it(name, async (c) => {
    if (!backend) {
      if (requireShaderF16) throw new Error(`an adapter with shader-f16 is required (CNX_REQUIRE_SHADER_F16=1): ${unavailable}`);
      return c.skip();
    }
    expect(backend.computeDtype).toBe('f16');
    await fn(backend);
  }, 600_000);
  // `undefined` half: each kernel picks its variant from the context (computeDtype 'f16' -> { type: 'f16' }).
  test('matmul: f16 operands vs the reference on rounded operands, and the 2 u16 sum|a||b| bound', (ctx) => matmulCases(ctx, undefined, true));
  test('conv2d: f16 operands vs the reference on rounded operands', (ctx) => convCases_(ctx, undefined, true));
  test('attention: f16 q, k, v vs the reference on rounded q, k, v', (ctx) => attnCases_(ctx, undefined, true));
  // `half: null` is the f32 kernel even on an f16 context (a default parameter once turned it back into f16).
  test('half null: matmul, conv2d and attention run their f32 kernels on an f16 context', async (ctx) => {
    const be = ctx as unknown as Backend;
    const a = randomArray(16 * 24, 7), b = randomArray(24 * 12, 8);
    const exact = await runOp1(matmulOp, [cpu.fromRaw(a, [1, 16, 24]), cpu.fromRaw(b, [1, 24, 12])], {}).data();
    const ga = be.fromRaw(a, [1, 16, 24]), gb = be.fromRaw(b, [1, 24, 12]);
    const maxDiff = (x: Float32Array, y: Float32Array) => x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i]!)), 0);
    const f32 = await matmulKernel.matmulWithTile(ctx, ga, gb, {}, undefined, null).data();
    const f16 = await matmulKernel.matmulWithTile(ctx, ga, gb, {}, undefined, undefined).data();
    expect(maxDiff(f32, exact)).toBeLessThan(1e-5);
    expect(maxDiff(f16, exact)).toBeGreaterThan(1e-4); // operands rounded to f16
    const x = randomArray(2 * 8 * 5 * 5, 9), w = randomArray(4 * 8 * 9, 10);
    const cp: Conv2dParams = { stride: [1, 1], padding: [1, 1, 1, 1], groups: 1 };
    const cExact = await runOp1(conv2dOp, [cpu.fromRaw(x, [2, 8, 5, 5]), cpu.fromRaw(w, [4, 8, 3, 3])], cp).data();
    const gx = be.fromRaw(x, [2, 8, 5, 5]), gw = be.fromRaw(w, [4, 8, 3, 3]);
    expect(maxDiff(await conv2dKernel.conv2dWithTile(ctx, gx, gw, undefined, cp, undefined, undefined, null).data(), cExact)).toBeLessThan(1e-5);
    expect(maxDiff(await conv2dKernel.conv2dWithTile(ctx, gx, gw, undefined, cp, undefined, undefined, undefined).data(), cExact)).toBeGreaterThan(1e-4);
    const q = randomArray(12 * 8, 11), k = randomArray(12 * 8, 12), v = randomArray(12 * 8, 13);
    const s4 = [1, 12, 1, 8], ao = { scale: 1 / Math.sqrt(8) };
    const aExact = await runOp1(attentionOp, [cpu.fromRaw(q, s4), cpu.fromRaw(k, s4), cpu.fromRaw(v, s4)], ao).data();
    const gq = be.fromRaw(q, s4), gk = be.fromRaw(k, s4), gv = be.fromRaw(v, s4);
    expect(maxDiff(await attentionKernel.attentionWithTiles(ctx, gq, gk, gv, ao, undefined, null).data(), aExact)).toBeLessThan(1e-5);
    expect(maxDiff(await attentionKernel.attentionWithTiles(ctx, gq, gk, gv, ao, undefined, undefined).data(), aExact)).toBeGreaterThan(1e-5);
    dispose(ga, gb, gx, gw, gq, gk, gv);
  });
  // Backend.inFullPrecision (the SDXL VAE's force_upcast): the f32 kernels inside, f16 again after, also after a throw.
  test('inFullPrecision: the kernels select their f32 variants inside, f16 again after (also after a throw)', async (ctx) => {
    const b = ctx as WebgpuBackend;
    expect(f16Compute.halfOperandsFor(b)).toEqual({ type: 'f16' });
    b.inFullPrecision(() => {
      expect(b.computeDtype).toBe('f32');
      expect(f16Compute.halfOperandsFor(b)).toBeUndefined();
    });
    expect(b.computeDtype).toBe('f16');
    expect(() => b.inFullPrecision(() => { throw new Error('inside'); })).toThrow('inside');
    expect(b.computeDtype).toBe('f16');
  });
});
