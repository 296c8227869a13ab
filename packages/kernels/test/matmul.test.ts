// The tiled WGSL matmul (matmul.ts) and the naive baseline (matmul_naive.ts) against the CPU reference:
// both transpose flags, odd sizes that are not multiples of the 64x64x16 tile, batch > 1 and shared
// (broadcast) batch 1 on either side, the vec4 load/store paths, thin products (M = 1), every epilogue
// activation with alpha, bias and residual, 16-bit (f16 / bf16) weights widened on load, and every
// micro-tile shape on partial tiles.
// Tolerance: an f32 dot product of K terms of magnitude <= 1 (error ~ sqrt(K) eps), tolFor('f32', K).

import { matmulKernel, matmulNaiveKernel, type GpuContext } from '@cnx/kernels';
import { CpuBackend, fromFloat32, toFloat32, type Activation, type Backend, type MatmulOptions, type Tensor, runOp1, matmulOp } from '@cnx/tensor';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

type MatmulFn = (ctx: GpuContext, a: Tensor, b: Tensor, opts?: MatmulOptions) => Tensor;

interface Case {
  Ba: number; Bb: number; M: number; N: number; K: number;
  transA?: boolean; transB?: boolean; alpha?: number; activation?: Activation;
  bias?: boolean; residual?: boolean; bDtype?: 'f32' | 'f16' | 'bf16';
}

const cpu = new CpuBackend();

function asContext(backend: Backend): GpuContext {
  if (!('dispatch' in backend)) throw new Error(`expected a WebGPU backend (GpuContext), found ${backend.name}`);
  return backend as unknown as GpuContext;
}

async function check(backend: Backend, fn: MatmulFn, c: Case, seed: number): Promise<void> {
  const B = Math.max(c.Ba, c.Bb);
  const aShape = c.transA ? [c.Ba, c.K, c.M] : [c.Ba, c.M, c.K];
  const bShape = c.transB ? [c.Bb, c.N, c.K] : [c.Bb, c.K, c.N];
  const aData = randomArray(c.Ba * c.M * c.K, seed);
  let bData = randomArray(c.Bb * c.K * c.N, seed + 1);
  const bDtype = c.bDtype ?? 'f32';
  // 16-bit weights: the reference multiplies the values the GPU will widen.
  const bRaw = bDtype === 'f32' ? bData : fromFloat32(bData, bDtype);
  if (bDtype !== 'f32') bData = toFloat32(bRaw, bDtype);
  const biasData = c.bias ? randomArray(c.N, seed + 2) : undefined;
  const resData = c.residual ? randomArray(B * c.M * c.N, seed + 3) : undefined;
  const make = (be: Backend, b16: boolean) => ({
    a: be.fromRaw(aData, aShape),
    b: b16 ? be.fromRaw(bRaw, bShape, bDtype) : be.fromRaw(bData, bShape),
    bias: biasData ? be.fromRaw(biasData, [c.N]) : undefined,
    residual: resData ? be.fromRaw(resData, [B, c.M, c.N]) : undefined,
  });
  const g = make(backend, true), r = make(cpu, false);
  const base = { transA: c.transA, transB: c.transB, alpha: c.alpha, activation: c.activation };
  const got = fn(asContext(backend), g.a, g.b, { ...base, bias: g.bias, residual: g.residual });
  const ref = runOp1(matmulOp, [r.a, r.b, r.bias, r.residual], base);
  const what = `matmul ${JSON.stringify(c)}`;
  if (got.shape.join() !== [B, c.M, c.N].join()) throw new Error(`${what}: shape [${got.shape.join(', ')}]`);
  expectAllClose(await got.data(), await ref.data(), tolFor('f32', c.K, Math.abs(c.alpha ?? 1)), what);
  for (const t of [...Object.values(g), ...Object.values(r), got, ref]) t?.dispose();
}

const layouts: Case[] = [
  { Ba: 2, Bb: 2, M: 37, N: 45, K: 29 },
  { Ba: 2, Bb: 2, M: 37, N: 45, K: 29, transA: true },
  { Ba: 2, Bb: 2, M: 37, N: 45, K: 29, transB: true },
  { Ba: 2, Bb: 2, M: 37, N: 45, K: 29, transA: true, transB: true },
  // vec4 paths: M % 4 (transA loads), N % 4 (b loads, out and residual stores); more than one tile each way.
  { Ba: 1, Bb: 1, M: 68, N: 72, K: 35, transA: true, residual: true },
  { Ba: 1, Bb: 1, M: 68, N: 72, K: 35, transB: true, bias: true },
  // shared batch on either side
  { Ba: 3, Bb: 1, M: 19, N: 23, K: 17, transB: true },
  { Ba: 1, Bb: 3, M: 19, N: 23, K: 17, residual: true },
  // thin and degenerate sizes (16- and 32-row tiles; K shorter than one K-step; K = 1)
  { Ba: 1, Bb: 1, M: 1, N: 70, K: 40, transB: true, bias: true },
  { Ba: 2, Bb: 2, M: 5, N: 3, K: 1 },
  { Ba: 1, Bb: 1, M: 30, N: 1, K: 7, transA: true },
];

const activations: Activation[] = ['none', 'relu', 'silu', 'gelu', 'gelu_tanh', 'quick_gelu'];

describeEachBackend('matmul kernels', (test) => {
  test('tiled: layouts, odd sizes, batch broadcast', async (backend) => {
    let seed = 10;
    for (const c of layouts) await check(backend, matmulKernel.matmul, c, seed += 7);
  });

  test('tiled: epilogues (alpha, bias, every activation, residual)', async (backend) => {
    let seed = 100;
    for (const activation of activations) {
      await check(backend, matmulKernel.matmul, { Ba: 2, Bb: 1, M: 21, N: 18, K: 13, transB: true, alpha: 0.75, bias: true, activation, residual: true }, seed += 3);
    }
    // Large pre-activations: saturation of silu / gelu / tanh without NaN.
    await check(backend, matmulKernel.matmul, { Ba: 1, Bb: 1, M: 9, N: 10, K: 11, alpha: 60, activation: 'gelu_tanh' }, 7);
    await check(backend, matmulKernel.matmul, { Ba: 1, Bb: 1, M: 9, N: 10, K: 11, alpha: -60, activation: 'silu' }, 8);
  });

  test('tiled: every micro-tile shape (8x8, 8x4, 4x8) on partial tiles', async (backend) => {
    const tiles: matmulKernel.MatmulTile[] = [
      { tileM: 128, tileN: 128, tileK: 8, microM: 8, microN: 8 },
      { tileM: 128, tileN: 64, tileK: 16, microM: 8, microN: 4 },
      { tileM: 64, tileN: 128, tileK: 16, microM: 4, microN: 8 },
    ];
    let seed = 400;
    for (const tile of tiles) {
      const fn: MatmulFn = (ctx, a, b, o) => matmulKernel.matmulWithTile(ctx, a, b, o, tile);
      await check(backend, fn, { Ba: 2, Bb: 1, M: 133, N: 70, K: 21, transB: true, bias: true, activation: 'silu' }, seed += 3);
      await check(backend, fn, { Ba: 1, Bb: 1, M: 67, N: 136, K: 18, transA: true, residual: true }, seed += 3);
    }
  });

  test('tiled: f16 and bf16 weights widened on load', async (backend) => {
    for (const bDtype of ['f16', 'bf16'] as const) {
      await check(backend, matmulKernel.matmul, { Ba: 1, Bb: 1, M: 33, N: 27, K: 19, transB: true, bias: true, bDtype }, 21);
      await check(backend, matmulKernel.matmul, { Ba: 2, Bb: 2, M: 9, N: 13, K: 7, bDtype }, 22);
    }
  });

  test('naive baseline: layouts and epilogue', async (backend) => {
    let seed = 200;
    for (const c of layouts.slice(0, 4)) await check(backend, matmulNaiveKernel.matmul, c, seed += 5);
    await check(backend, matmulNaiveKernel.matmul, { Ba: 1, Bb: 2, M: 11, N: 17, K: 9, transB: true, alpha: 0.5, bias: true, activation: 'gelu', residual: true }, 300);
    await check(backend, matmulNaiveKernel.matmul, { Ba: 1, Bb: 1, M: 11, N: 17, K: 9, transB: true, bDtype: 'bf16' }, 301);
  });

  test('shape errors name what was expected', async (backend) => {
    const ctx = asContext(backend);
    const a = backend.zeros([2, 3, 4]), b = backend.zeros([2, 5, 6]);
    try {
      let msg = '';
      try { matmulKernel.matmul(ctx, a, b); } catch (e) { msg = (e as Error).message; }
      if (!/inner dims differ.*K=4.*K=5/.test(msg)) throw new Error(`unexpected error: '${msg}'`);
    } finally {
      a.dispose(); b.dispose();
    }
  });
}, ['webgpu']);
