// The fast CPU backend (packages/kernels/src/wasm) against the float64 CPU reference, through the op
// definitions (runOp) as models call them, on awkward shapes: odd sizes that are not multiples of the
// 4x8 micro-tile, the 64-query / 128-key attention blocks or the 16K-element chunks; batch > 1 and
// shared batch 1; both transposes; every epilogue activation with alpha, bias and residual; conv strides,
// asymmetric padding, groups, 1x1, row panels and gathered panels; causal attention and the logsumexp;
// group norm with SiLU and layer norm with saved statistics; broadcast elementwise inputs; the ops that
// fall back to the reference.
// Tolerances: an f32 result accumulated over n terms of magnitude ~s has error ~ sqrt(n) eps s
// (tolFor('f32', n, s), test/harness/allclose.ts); transcendental activations add a few ulp.
// Runs once with the worker pool (2 threads, relaxed-SIMD FMA where the engine has it) and once on one
// thread with plain mul + add.

import { WasmBackend } from '@cnx/kernels';
import {
  adaptiveAvgPool2dOp, affineOp, attentionOp, binaryOp, concatOp, conv2dOp, CpuBackend, groupNormOp, layerNormOp, matmulOp,
  reduceOp, runOp, softmaxOp, unaryOp, upsampleNearestOp,
  type Activation, type Backend, type OpDefinition, type Tensor,
} from '@cnx/tensor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectAllClose, randomArray, tolFor, type Tol } from '../../../test/harness/allclose.js';

const cpu = new CpuBackend();
const activations: Activation[] = ['none', 'relu', 'silu', 'gelu', 'gelu_tanh', 'quick_gelu'];

interface Input { shape: number[]; seed: number; scale?: number; shift?: number }

/** Make each input on both backends (same values), run the op on both, compare every output. */
async function compare<P>(be: Backend, op: OpDefinition<P>, inputs: (Input | undefined)[], params: P, tols: Tol | Tol[], what: string,
  view?: (t: Tensor) => Tensor): Promise<void> {
  const make = (b: Backend) => inputs.map((i) => {
    if (!i) return undefined;
    const t = b.fromRaw(randomArray(i.shape.reduce((p, d) => p * d, 1), i.seed, i.scale ?? 1, i.shift ?? 0), i.shape);
    if (!view) return t;
    const v = view(t);
    t.dispose();
    return v;
  });
  const gi = make(be), ri = make(cpu);
  const got = runOp(op, gi, params), ref = runOp(op, ri, params);
  expect(got.length, what).toBe(ref.length);
  for (let o = 0; o < ref.length; o++) {
    expect(got[o]!.shape, `${what} output ${o}`).toEqual(ref[o]!.shape);
    expectAllClose(await got[o]!.data(), await ref[o]!.data(), Array.isArray(tols) ? tols[o]! : tols, `${what} output ${o}`);
  }
  for (const t of [...gi, ...ri, ...got, ...ref]) t?.dispose();
}

for (const { threads, fma } of [{ threads: 2, fma: true }, { threads: 1, fma: false }]) {
  describe(`wasm backend [${threads} thread${threads > 1 ? 's' : ''}${fma ? '' : ', no FMA'}]`, () => {
    let be: WasmBackend;
    beforeAll(async () => { be = await WasmBackend.create({ threads, fma }); });
    afterAll(() => be?.destroy());

    it('reports what runs', () => {
      expect(be.name).toBe('wasm');
      expect(be.description).toMatch(/WebAssembly SIMD/);
      expect(be.rt.threads).toBe(threads);
      if (!fma) expect(be.rt.fma).toBe(false);
    });

    it('matmul: layouts, odd sizes, batch broadcast, epilogues', async () => {
      const cases: { Ba: number; Bb: number; M: number; N: number; K: number; tA?: boolean; tB?: boolean; bias?: boolean; res?: boolean; alpha?: number }[] = [
        { Ba: 2, Bb: 2, M: 37, N: 45, K: 29 },
        { Ba: 2, Bb: 2, M: 37, N: 45, K: 29, tA: true },
        { Ba: 2, Bb: 2, M: 37, N: 45, K: 29, tB: true },
        { Ba: 2, Bb: 2, M: 37, N: 45, K: 29, tA: true, tB: true },
        { Ba: 3, Bb: 1, M: 19, N: 23, K: 300, tB: true, bias: true, res: true }, // Linear: merged batch, K > KC
        { Ba: 3, Bb: 1, M: 50, N: 7, K: 17, tB: true, bias: true }, // N < M: the plain form with transB
        { Ba: 1, Bb: 3, M: 19, N: 23, K: 17, res: true },
        { Ba: 1, Bb: 1, M: 1, N: 70, K: 40, tB: true, bias: true },
        { Ba: 2, Bb: 2, M: 5, N: 3, K: 1 },
        { Ba: 1, Bb: 1, M: 30, N: 1, K: 7, tA: true },
        { Ba: 1, Bb: 1, M: 67, N: 131, K: 521, bias: true, res: true, alpha: 0.37 },
        { Ba: 1, Bb: 1, M: 9, N: 600, K: 1100, tB: true, bias: true }, // few columns, full-K pass
      ];
      let seed = 100;
      for (const c of cases) {
        const B = Math.max(c.Ba, c.Bb);
        await compare(be, matmulOp, [
          { shape: c.tA ? [c.Ba, c.K, c.M] : [c.Ba, c.M, c.K], seed: seed++ },
          { shape: c.tB ? [c.Bb, c.N, c.K] : [c.Bb, c.K, c.N], seed: seed++ },
          c.bias ? { shape: [c.N], seed: seed++ } : undefined,
          c.res ? { shape: [B, c.M, c.N], seed: seed++ } : undefined,
        ], { transA: c.tA, transB: c.tB, alpha: c.alpha }, tolFor('f32', c.K, 1), `matmul ${JSON.stringify(c)}`);
      }
    });

    it('matmul: every epilogue activation, both forms', async () => {
      let seed = 200;
      for (const activation of activations) {
        for (const tB of [false, true]) {
          await compare(be, matmulOp, [
            { shape: [2, 13, 33], seed: seed++ }, { shape: tB ? [1, 21, 33] : [1, 33, 21], seed: seed++ },
            { shape: [21], seed: seed++ }, { shape: [2, 13, 21], seed: seed++ },
          ], { transB: tB, alpha: 0.5, activation }, tolFor('f32', 33, 2), `matmul activation ${activation} transB ${tB}`);
        }
      }
    });

    it('conv2d: strides, asymmetric padding, groups, 1x1, row and gathered panels, bias, residual, activation', async () => {
      const cases = [
        { N: 2, C: 5, H: 9, W: 11, O: 7, KH: 3, KW: 3, stride: [1, 1], padding: [1, 1, 1, 1], groups: 1, bias: true },
        { N: 1, C: 6, H: 10, W: 13, O: 9, KH: 3, KW: 3, stride: [2, 2], padding: [0, 1, 0, 1], groups: 1, bias: true, res: true },
        { N: 3, C: 4, H: 7, W: 5, O: 6, KH: 1, KW: 1, stride: [1, 1], padding: [0, 0, 0, 0], groups: 1, act: 'silu' as Activation },
        { N: 2, C: 6, H: 8, W: 9, O: 4, KH: 3, KW: 2, stride: [1, 2], padding: [2, 0, 1, 0], groups: 2, bias: true },
        { N: 1, C: 3, H: 20, W: 24, O: 5, KH: 4, KW: 4, stride: [4, 4], padding: [0, 0, 0, 0], groups: 1, bias: true, act: 'gelu' as Activation },
        { N: 2, C: 16, H: 16, W: 16, O: 12, KH: 3, KW: 3, stride: [1, 1], padding: [1, 1, 1, 1], groups: 1, bias: true, res: true },
        { N: 2, C: 40, H: 16, W: 19, O: 5, KH: 3, KW: 3, stride: [1, 1], padding: [1, 1, 1, 1], groups: 1 }, // > 1 channel block
        { N: 2, C: 8, H: 2, W: 2, O: 8, KH: 3, KW: 3, stride: [1, 1], padding: [1, 1, 1, 1], groups: 1 },
        { N: 1, C: 2, H: 3, W: 30, O: 3, KH: 3, KW: 3, stride: [1, 1], padding: [0, 2, 3, 1], groups: 1 }, // asymmetric, row panels
      ];
      let seed = 300;
      for (const c of cases) {
        const Ho = Math.floor((c.H + c.padding[0]! + c.padding[1]! - c.KH) / c.stride[0]!) + 1;
        const Wo = Math.floor((c.W + c.padding[2]! + c.padding[3]! - c.KW) / c.stride[1]!) + 1;
        const K = (c.C / c.groups) * c.KH * c.KW;
        await compare(be, conv2dOp, [
          { shape: [c.N, c.C, c.H, c.W], seed: seed++ }, { shape: [c.O, c.C / c.groups, c.KH, c.KW], seed: seed++ },
          c.bias ? { shape: [c.O], seed: seed++ } : undefined, c.res ? { shape: [c.N, c.O, Ho, Wo], seed: seed++ } : undefined,
        ], { stride: c.stride as [number, number], padding: c.padding as [number, number, number, number], groups: c.groups, activation: c.act },
        tolFor('f32', K, 1), `conv2d ${JSON.stringify(c)}`);
      }
    });

    it('attention: odd lengths, several blocks, Dv != D, causal, logsumexp', async () => {
      const cases = [
        { B: 2, Lq: 37, Lk: 29, H: 3, D: 8, Dv: 8, causal: false },
        { B: 1, Lq: 150, Lk: 300, H: 2, D: 40, Dv: 24, causal: false },
        { B: 2, Lq: 77, Lk: 77, H: 2, D: 12, Dv: 12, causal: true },
        { B: 1, Lq: 5, Lk: 130, H: 1, D: 5, Dv: 7, causal: false },
        { B: 2, Lq: 200, Lk: 200, H: 1, D: 16, Dv: 16, causal: true },
      ];
      let seed = 400;
      for (const c of cases) {
        for (const stats of [false, true]) {
          await compare(be, attentionOp, [
            { shape: [c.B, c.Lq, c.H, c.D], seed }, { shape: [c.B, c.Lk, c.H, c.D], seed: seed + 1 }, { shape: [c.B, c.Lk, c.H, c.Dv], seed: seed + 2 },
          ], { scale: 2 / Math.sqrt(c.D), causal: c.causal, stats }, [tolFor('f32', c.Lk + c.D, 1), tolFor('f32', c.D, 4)],
          `attention ${JSON.stringify(c)} stats ${stats}`);
        }
        seed += 3;
      }
    });

    it('group norm (+SiLU, statistics), layer norm (statistics, no affine), softmax', async () => {
      let seed = 500;
      for (const c of [{ N: 2, C: 6, S: 35, G: 3 }, { N: 1, C: 32, S: 1, G: 8 }, { N: 3, C: 10, S: 7, G: 5 }]) {
        for (const silu of [false, true]) {
          for (const affine of [true, false]) {
            await compare(be, groupNormOp, [
              { shape: [c.N, c.C, c.S], seed: seed++, scale: 2, shift: 0.5 },
              affine ? { shape: [c.C], seed: seed++ } : undefined, affine ? { shape: [c.C], seed: seed++ } : undefined,
            ], { groups: c.G, eps: 1e-5, silu, stats: true }, tolFor('f32', 8, 4), `groupNorm ${JSON.stringify(c)} silu ${silu} affine ${affine}`);
          }
        }
        const D = 2 * c.C + 1;
        for (const [w, b] of [[true, true], [true, false], [false, false]]) {
          await compare(be, layerNormOp, [
            { shape: [3, c.S, D], seed: seed++, scale: 3, shift: -1 }, w ? { shape: [D], seed: seed++ } : undefined, b ? { shape: [D], seed: seed++ } : undefined,
          ], { eps: 1e-6, stats: true }, tolFor('f32', 8, 4), `layerNorm ${JSON.stringify(c)} weight ${w} bias ${b}`);
        }
        await compare(be, softmaxOp, [{ shape: [2, c.S, 2 * c.C + 3], seed: seed++, scale: 6 }], {}, tolFor('f32', 4), 'softmax');
      }
    });

    it('elementwise: unary ops, affine, binary on broadcast and permuted views', async () => {
      let seed = 600;
      const n = 16384 * 2 + 37; // more than one chunk, with a tail
      for (const op of ['neg', 'abs', 'exp', 'tanh', 'sigmoid', 'relu', 'silu', 'gelu', 'gelu_tanh', 'quick_gelu', 'square', 'sin', 'cos'] as const) {
        await compare(be, unaryOp, [{ shape: [n], seed: seed++, scale: 4 }], { op }, tolFor('f32', 4), `unary ${op}`);
      }
      for (const op of ['sqrt', 'rsqrt', 'recip', 'log'] as const) {
        await compare(be, unaryOp, [{ shape: [n], seed: seed++, scale: 2, shift: 2.5 }], { op }, tolFor('f32', 4), `unary ${op}`);
      }
      await compare(be, affineOp, [{ shape: [n], seed: seed++ }], { mul: -0.7, add: 0.3 }, tolFor('f32', 2), 'affine');
      for (const op of ['add', 'sub', 'mul', 'div', 'max', 'min'] as const) {
        await compare(be, binaryOp, [{ shape: [2, 7, 5, 9], seed: seed++ }, { shape: [2, 7, 1, 1], seed: seed++, shift: 2 }], { op },
          tolFor('f32', 2), `binary ${op} broadcast`, (t) => (t.shape[2] === 1 ? t.expand([2, 7, 5, 9]) : t.permute([0, 1, 2, 3])));
      }
      await compare(be, unaryOp, [{ shape: [3, 4, 5, 6], seed: seed++ }], { op: 'silu' as const }, tolFor('f32', 4), 'unary on a permuted view',
        (t) => t.permute([0, 2, 3, 1]));
    });

    it('layout copies, and the ops that run the reference; memory returns to the heap', async () => {
      const before = be.memory().liveBytes;
      const x = be.fromRaw(randomArray(2 * 3 * 6 * 5, 700), [2, 3, 6, 5]);
      const xr = cpu.fromRaw(randomArray(2 * 3 * 6 * 5, 700), [2, 3, 6, 5]);
      const pv = x.permute([0, 2, 3, 1]), pr = xr.permute([0, 2, 3, 1]);
      const c = be.contiguous(pv);
      expectAllClose(await c.data(), await cpu.contiguous(pr).data(), { atol: 0, rtol: 0 }, 'contiguous(permute)');
      [pv, pr, c, x, xr].forEach((t) => t.dispose());
      const s = { shape: [2, 3, 6, 5], seed: 701 };
      await compare(be, reduceOp, [s], { op: 'sum', axes: [1, 3] }, tolFor('f32', 15), 'reduce (reference)');
      await compare(be, upsampleNearestOp, [s], { size: [12, 15] }, { atol: 0, rtol: 0 }, 'upsampleNearest');
      await compare(be, adaptiveAvgPool2dOp, [s], { size: [3, 2] }, tolFor('f32', 8), 'adaptiveAvgPool2d (reference)');
      await compare(be, concatOp, [s, { shape: [2, 4, 6, 5], seed: 702 }], { axis: 1 }, { atol: 0, rtol: 0 }, 'concat');
      expect(be.memory().liveBytes).toBe(before);
    });
  });
}

describe('wasm backend: tensors beyond the WebAssembly memory', () => {
  it('spill to JavaScript memory and are copied in for each op that reads them', async () => {
    // A 32 MiB memory keeps 8 MiB for activations and scratch: with 20 MiB of weights in it, an 8 MiB
    // weight stays out.
    const be = await WasmBackend.create({ threads: 2, maxBytes: 32 * 2 ** 20 });
    try {
      const filler = be.zeros([5, 2 ** 20]);
      const [N, K] = [512, 4096];
      const wData = randomArray(N * K, 800), xData = randomArray(3 * K, 801);
      const inHeap = be.rt.heap.liveBytes;
      const w = be.fromRaw(wData, [1, N, K]);
      expect(be.rt.heap.liveBytes).toBe(inHeap); // not in wasm memory
      const x = be.fromRaw(xData, [1, 3, K]);
      const got = runOp(matmulOp, [x, w], { transB: true })[0]!;
      const ref = runOp(matmulOp, [cpu.fromRaw(xData, [1, 3, K]), cpu.fromRaw(wData, [1, N, K])], { transB: true })[0]!;
      // 4096 products of uniform[-1, 1] values (std 1/3): the partial sums grow to ~sqrt(K)/3, and f32
      // rounding of each addition is relative to them, so the error scale is sqrt(K)/3, not 1.
      expectAllClose(await got.data(), await ref.data(), tolFor('f32', K, Math.sqrt(K) / 3), 'matmul with a spilled weight');
      [w, x, got, ref, filler].forEach((t) => t.dispose());
      expect(be.memory().liveBytes).toBe(0);
    } finally {
      be.destroy();
    }
  });
});

describe('wasm thread pool', () => {
  it('a trap in any thread fails the launch with an error, and the pool keeps working', async () => {
    const be = await WasmBackend.create({ threads: 2 });
    try {
      // copy_strided from an address far past the memory: every task traps
      const far = 0x7ff00000;
      expect(() => be.rt.launch('copy_strided', [far, far, 1, 64, 1, 1024, 0, 1024, 0, 1], 64)).toThrow();
      await compare(be, matmulOp, [{ shape: [1, 40, 50], seed: 900 }, { shape: [1, 50, 30], seed: 901 }], {}, tolFor('f32', 50), 'matmul after a trap');
    } finally {
      be.destroy();
    }
  });
});
