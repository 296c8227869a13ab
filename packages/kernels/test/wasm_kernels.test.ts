// The fast CPU backend's kernels (packages/kernels/src/wasm) against the float64 CPU reference on
// awkward shapes: odd sizes that are not multiples of the 4x8 micro-tile, the 64-query / 128-key
// attention blocks or the 16K-element chunks; batch > 1 and shared batch 1; both transposes; every
// epilogue activation with alpha, bias and residual; conv strides, asymmetric padding, groups, 1x1 and
// chunked columns; causal attention and the logsumexp; group norm with SiLU and saved statistics.
// Tolerances: an f32 result accumulated over n terms of magnitude ~s has error ~ sqrt(n) eps s
// (tolFor('f32', n, s), test/harness/allclose.ts); transcendental activations add a few ulp.
// Runs once with the worker pool (2 threads, relaxed-SIMD FMA where the engine has it) and once on one
// thread with plain mul + add.

import { WasmBackend } from '@cnx/kernels';
import { CpuBackend, type Activation, type Backend, type Tensor } from '@cnx/tensor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';

const cpu = new CpuBackend();
const activations: Activation[] = ['none', 'relu', 'silu', 'gelu', 'gelu_tanh', 'quick_gelu'];

function pair(be: Backend, shape: number[], seed: number, scale = 1, shift = 0): [Tensor, Tensor] {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = randomArray(n, seed, scale, shift);
  return [be.fromRaw(d, shape), cpu.fromRaw(d, shape)];
}

async function close(got: Tensor, ref: Tensor, tol: { atol: number; rtol: number }, what: string): Promise<void> {
  expect(got.shape, what).toEqual(ref.shape);
  expectAllClose(await got.data(), await ref.data(), tol, what);
  got.dispose();
  ref.dispose();
}

for (const { threads, fma } of [{ threads: 2, fma: true }, { threads: 1, fma: false }]) {
  describe(`wasm kernels [${threads} thread${threads > 1 ? 's' : ''}${fma ? '' : ', no FMA'}]`, () => {
    let be: WasmBackend;
    beforeAll(async () => { be = await WasmBackend.create({ threads, fma }); });
    afterAll(() => be?.destroy());

    it('reports what runs', () => {
      expect(be.description).toMatch(/WebAssembly SIMD/);
      expect(be.rt.threads).toBe(threads);
      if (!fma) expect(be.rt.fma).toBe(false);
    });

    it('matmul: layouts, odd sizes, batch broadcast, epilogues', async () => {
      const cases: { Ba: number; Bb: number; M: number; N: number; K: number; tA?: boolean; tB?: boolean; bias?: boolean; res?: boolean; alpha?: number; act?: Activation }[] = [
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
      ];
      let seed = 100;
      for (const c of cases) {
        for (const act of c.act ? [c.act] : ['none' as Activation]) {
          const B = Math.max(c.Ba, c.Bb);
          const [a, ar] = pair(be, c.tA ? [c.Ba, c.K, c.M] : [c.Ba, c.M, c.K], seed++);
          const [b, br] = pair(be, c.tB ? [c.Bb, c.N, c.K] : [c.Bb, c.K, c.N], seed++);
          const [bias, biasR] = c.bias ? pair(be, [c.N], seed++) : [undefined, undefined];
          const [res, resR] = c.res ? pair(be, [B, c.M, c.N], seed++) : [undefined, undefined];
          const o = { transA: c.tA, transB: c.tB, alpha: c.alpha, activation: act };
          await close(be.matmul(a, b, { ...o, bias, residual: res }), cpu.matmul(ar, br, { ...o, bias: biasR, residual: resR }),
            tolFor('f32', c.K, 1), `matmul ${JSON.stringify(c)}`);
          for (const t of [a, ar, b, br, bias, biasR, res, resR]) t?.dispose();
        }
      }
    });

    it('matmul: every epilogue activation', async () => {
      let seed = 200;
      for (const act of activations) {
        for (const tB of [false, true]) {
          const [a, ar] = pair(be, [2, 13, 33], seed++);
          const [b, br] = pair(be, tB ? [1, 21, 33] : [1, 33, 21], seed++);
          const [bias, biasR] = pair(be, [21], seed++);
          const [res, resR] = pair(be, [2, 13, 21], seed++);
          const o = { transB: tB, alpha: 0.5, activation: act };
          await close(be.matmul(a, b, { ...o, bias, residual: res }), cpu.matmul(ar, br, { ...o, bias: biasR, residual: resR }),
            tolFor('f32', 33, 2), `matmul activation ${act} transB ${tB}`);
          for (const t of [a, ar, b, br, bias, biasR, res, resR]) t.dispose();
        }
      }
    });

    it('conv2d: strides, asymmetric padding, groups, 1x1, bias, residual, activation', async () => {
      const cases = [
        { N: 2, C: 5, H: 9, W: 11, O: 7, KH: 3, KW: 3, stride: [1, 1], padding: [1, 1, 1, 1], groups: 1, bias: true },
        { N: 1, C: 6, H: 10, W: 13, O: 9, KH: 3, KW: 3, stride: [2, 2], padding: [0, 1, 0, 1], groups: 1, bias: true, res: true },
        { N: 3, C: 4, H: 7, W: 5, O: 6, KH: 1, KW: 1, stride: [1, 1], padding: [0, 0, 0, 0], groups: 1, act: 'silu' as Activation },
        { N: 2, C: 6, H: 8, W: 9, O: 4, KH: 3, KW: 2, stride: [1, 2], padding: [2, 0, 1, 0], groups: 2, bias: true },
        { N: 1, C: 3, H: 20, W: 24, O: 5, KH: 4, KW: 4, stride: [4, 4], padding: [0, 0, 0, 0], groups: 1, bias: true, act: 'gelu' as Activation },
        { N: 2, C: 16, H: 16, W: 16, O: 12, KH: 3, KW: 3, stride: [1, 1], padding: [1, 1, 1, 1], groups: 1, bias: true, res: true },
        { N: 2, C: 8, H: 2, W: 2, O: 8, KH: 3, KW: 3, stride: [1, 1], padding: [1, 1, 1, 1], groups: 1 },
      ];
      let seed = 300;
      for (const c of cases) {
        const [x, xr] = pair(be, [c.N, c.C, c.H, c.W], seed++);
        const [w, wr] = pair(be, [c.O, c.C / c.groups, c.KH, c.KW], seed++);
        const [bias, biasR] = c.bias ? pair(be, [c.O], seed++) : [undefined, undefined];
        const Ho = Math.floor((c.H + c.padding[0]! + c.padding[1]! - c.KH) / c.stride[0]!) + 1;
        const Wo = Math.floor((c.W + c.padding[2]! + c.padding[3]! - c.KW) / c.stride[1]!) + 1;
        const [res, resR] = c.res ? pair(be, [c.N, c.O, Ho, Wo], seed++) : [undefined, undefined];
        const o = { stride: c.stride as [number, number], padding: c.padding as [number, number, number, number], groups: c.groups, activation: c.act };
        const K = (c.C / c.groups) * c.KH * c.KW;
        await close(be.conv2d(x, w, bias, { ...o, residual: res }), cpu.conv2d(xr, wr, biasR, { ...o, residual: resR }),
          tolFor('f32', K, 1), `conv2d ${JSON.stringify(c)}`);
        for (const t of [x, xr, w, wr, bias, biasR, res, resR]) t?.dispose();
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
        const [q, qr] = pair(be, [c.B, c.Lq, c.H, c.D], seed++);
        const [kk, kr] = pair(be, [c.B, c.Lk, c.H, c.D], seed++);
        const [v, vr] = pair(be, [c.B, c.Lk, c.H, c.Dv], seed++);
        const o = { scale: 1 / Math.sqrt(c.D) * 2, causal: c.causal };
        const { out, lse } = be.attentionWithStats(q, kk, v, o, true);
        await close(out, cpu.attention(qr, kr, vr, o), tolFor('f32', c.Lk + c.D, 1), `attention ${JSON.stringify(c)}`);
        // logsumexp of the scaled scores, from the reference's definition
        const Q = await qr.data(), Kd = await kr.data(), ref = new Float32Array(c.B * c.Lq * c.H);
        for (let b = 0; b < c.B; b++) for (let i = 0; i < c.Lq; i++) for (let h = 0; h < c.H; h++) {
          const s: number[] = [];
          for (let j = 0; j < (c.causal ? i + 1 : c.Lk); j++) {
            let d = 0;
            for (let e = 0; e < c.D; e++) d += Q[((b * c.Lq + i) * c.H + h) * c.D + e]! * Kd[((b * c.Lk + j) * c.H + h) * c.D + e]!;
            s.push(d * o.scale);
          }
          const m = Math.max(...s);
          ref[(b * c.Lq + i) * c.H + h] = m + Math.log(s.reduce((acc, x) => acc + Math.exp(x - m), 0));
        }
        expectAllClose(await lse!.data(), ref, tolFor('f32', c.D, 4), `logsumexp ${JSON.stringify(c)}`);
        for (const t of [q, qr, kk, kr, v, vr, lse!]) t.dispose();
      }
    });

    it('group norm (+SiLU, statistics), layer norm (statistics), softmax', async () => {
      let seed = 500;
      for (const c of [{ N: 2, C: 6, S: 35, G: 3 }, { N: 1, C: 32, S: 1, G: 8 }, { N: 3, C: 10, S: 7, G: 5 }]) {
        for (const silu of [false, true]) {
          const [x, xr] = pair(be, [c.N, c.C, c.S], seed++, 2, 0.5);
          const [w, wr] = pair(be, [c.C], seed++);
          const [b, br] = pair(be, [c.C], seed++);
          const o = { groups: c.G, eps: 1e-5, silu };
          const { out, mean, rstd } = be.groupNormWithStats(x, w, b, o, true);
          await close(out, cpu.groupNorm(xr, wr, br, o), tolFor('f32', 8, 4), `groupNorm ${JSON.stringify(c)} silu ${silu}`);
          const X = await xr.data(), len = (c.C / c.G) * c.S;
          const mRef: number[] = [], rRef: number[] = [];
          for (let i = 0; i < c.N * c.G; i++) {
            const seg = Array.from(X.subarray(i * len, (i + 1) * len));
            const mu = seg.reduce((s, v) => s + v, 0) / len;
            mRef.push(mu);
            rRef.push(1 / Math.sqrt(seg.reduce((s, v) => s + (v - mu) ** 2, 0) / len + 1e-5));
          }
          expectAllClose(await mean!.data(), mRef, tolFor('f32', 4), 'groupNorm mean');
          expectAllClose(await rstd!.data(), rRef, tolFor('f32', 4), 'groupNorm rstd');
          for (const t of [x, xr, w, wr, b, br, mean!, rstd!]) t.dispose();
        }
        const [x, xr] = pair(be, [3, c.S, 2 * c.C + 1], seed++, 3, -1);
        const [w, wr] = pair(be, [2 * c.C + 1], seed++);
        const { out, mean, rstd } = be.layerNormWithStats(x, w, undefined, 1e-6, true);
        await close(out, cpu.layerNorm(xr, wr, undefined, 1e-6), tolFor('f32', 8, 4), 'layerNorm');
        await close(be.layerNorm(x, undefined, undefined, 1e-5), cpu.layerNorm(xr, undefined, undefined, 1e-5), tolFor('f32', 8, 4), 'layerNorm without affine');
        expect(mean!.shape).toEqual([3 * c.S]);
        for (const t of [x, xr, w, wr, mean!, rstd!]) t.dispose();
        const [s, sr] = pair(be, [2, c.S, 2 * c.C + 3], seed++, 6);
        await close(be.softmax(s), cpu.softmax(sr), tolFor('f32', 4), 'softmax');
        s.dispose(); sr.dispose();
      }
    });

    it('elementwise: unary ops, affine, binary on broadcast views, geglu, strided copies', async () => {
      let seed = 600;
      const n = 16384 * 2 + 37; // more than one chunk, with a tail
      const [x, xr] = pair(be, [n], seed++, 4);
      const [pos, posR] = pair(be, [n], seed++, 2, 2.5); // positive, for sqrt/rsqrt/recip
      for (const op of ['neg', 'abs', 'exp', 'tanh', 'sigmoid', 'relu', 'silu', 'gelu', 'gelu_tanh', 'quick_gelu', 'square', 'sin', 'cos'] as const) {
        await close(be.unary(op, x), cpu.unary(op, xr), tolFor('f32', 4, 1), `unary ${op}`);
      }
      for (const op of ['sqrt', 'rsqrt', 'recip', 'log'] as const) {
        await close(be.unary(op, pos), cpu.unary(op, posR), tolFor('f32', 4, 1), `unary ${op}`);
      }
      await close(be.affine(x, -0.7, 0.3), cpu.affine(xr, -0.7, 0.3), tolFor('f32', 2), 'affine');
      const [a, ar] = pair(be, [2, 7, 5, 9], seed++);
      const [b, br] = pair(be, [2, 7, 1, 1], seed++);
      for (const op of ['add', 'sub', 'mul', 'div', 'max', 'min'] as const) {
        const eb = b.expand([2, 7, 5, 9]), ebr = br.expand([2, 7, 5, 9]);
        await close(be.binary(op, a, eb), cpu.binary(op, ar, ebr), tolFor('f32', 2), `binary ${op} broadcast`);
        eb.dispose(); ebr.dispose();
      }
      const pa = a.permute([0, 2, 3, 1]), par = ar.permute([0, 2, 3, 1]);
      await close(be.contiguous(pa), cpu.contiguous(par), { atol: 0, rtol: 0 }, 'contiguous(permute)');
      pa.dispose(); par.dispose();
      const [h, hr] = pair(be, [3, 5, 2 * 41], seed++, 3);
      await close(be.geglu(h), cpu.geglu(hr), tolFor('f32', 4), 'geglu');
      for (const t of [x, xr, pos, posR, a, ar, b, br, h, hr]) t.dispose();
    });

    it('falls back to the reference for the rest; memory is returned to the heap', async () => {
      const before = be.memory().liveBytes;
      const [x, xr] = pair(be, [2, 3, 6, 5], 700);
      await close(be.reduce('sum', x, [1, 3]), cpu.reduce('sum', xr, [1, 3]), tolFor('f32', 15), 'reduce');
      await close(be.upsampleNearest(x, [12, 15]), cpu.upsampleNearest(xr, [12, 15]), { atol: 0, rtol: 0 }, 'upsampleNearest');
      await close(be.adaptiveAvgPool2d(x, [3, 2]), cpu.adaptiveAvgPool2d(xr, [3, 2]), tolFor('f32', 8), 'adaptiveAvgPool2d');
      await close(be.concat([x, x], 1), cpu.concat([xr, xr], 1), { atol: 0, rtol: 0 }, 'concat');
      x.dispose(); xr.dispose();
      expect(be.memory().liveBytes).toBe(before);
    });
  });
}
