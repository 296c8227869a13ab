// Elementwise kernels (webgpu/elementwise.ts) against the CPU reference: every unary op, affine, every
// binary op, on awkward shapes (odd sizes, rank up to 6 after merging), permuted / sliced / broadcast
// (stride-0) views, large magnitudes, and NaN propagation of max/min. Runs on both backends (the CPU run
// checks the test itself).
//
// Error model: unary ops are single f32 evaluations, so |err| <= a few ulp of the result (rtol 8 eps);
// the transcendental builtins get what the WGSL spec allows: exp/exp2 3 + 2|x| ulp (so inputs stay in
// |x| <= 8 where that is < 20 ulp), log/sqrt 3 ulp, and sin/cos an absolute 2^-11 on [-pi, pi].
// GELU uses this package's own f32 erf (Cody's approximation), checked tightly over a wide range.

import { CpuBackend, type Backend, type BinaryOp, type Tensor, type UnaryOp, ops } from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor, type Tol } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

const cpu = new CpuBackend();
const F32 = tolFor('f32');

/** Input range and tolerance per unary op (see the error model above). */
const UNARY: Record<UnaryOp, { scale: number; shift?: number; tol: Tol }> = {
  neg: { scale: 1e4, tol: { atol: 0, rtol: 0 } },
  abs: { scale: 1e4, tol: { atol: 0, rtol: 0 } },
  exp: { scale: 8, tol: { atol: 1e-30, rtol: 20 * 1.19e-7 } },
  log: { scale: 50, shift: 50.01, tol: { atol: 4 * 1.19e-7, rtol: 4 * 1.19e-7 } },
  sqrt: { scale: 500, shift: 500, tol: { atol: 1e-30, rtol: 4 * 1.19e-7 } },
  rsqrt: { scale: 500, shift: 501, tol: { atol: 1e-30, rtol: 4 * 1.19e-7 } },
  recip: { scale: 100, tol: { atol: 1e-30, rtol: 4 * 1.19e-7 } },
  square: { scale: 1e3, tol: F32 },
  sin: { scale: 3.14, tol: { atol: 2 ** -11, rtol: 0 } },
  cos: { scale: 3.14, tol: { atol: 2 ** -11, rtol: 0 } },
  tanh: { scale: 30, tol: { atol: 4e-7, rtol: 8 * 1.19e-7 } },
  sigmoid: { scale: 30, tol: { atol: 1e-7, rtol: 20 * 1.19e-7 } },
  relu: { scale: 1e4, tol: { atol: 0, rtol: 0 } },
  silu: { scale: 30, tol: { atol: 1e-7, rtol: 20 * 1.19e-7 } },
  gelu: { scale: 12, tol: { atol: 1e-7, rtol: 8 * 1.19e-7 } },
  gelu_tanh: { scale: 12, tol: { atol: 1e-7, rtol: 20 * 1.19e-7 } },
  quick_gelu: { scale: 30, tol: { atol: 1e-7, rtol: 20 * 1.19e-7 } },
};

const BINARY: BinaryOp[] = ['add', 'sub', 'mul', 'div', 'max', 'min'];

async function same(backend: Backend, build: (be: Backend) => Tensor, tol: Tol, what: string): Promise<void> {
  const got = build(backend);
  const ref = build(cpu);
  expect(got.shape).toEqual(ref.shape);
  expectAllClose(await got.data(), await ref.data(), tol, what);
}

describeEachBackend('elementwise', (test) => {
  for (const [op, spec] of Object.entries(UNARY) as [UnaryOp, (typeof UNARY)[UnaryOp]][]) {
    test(`unary ${op} on [3, 37, 5]`, async (be) => {
      const data = randomArray(3 * 37 * 5, op.length * 7 + 1, spec.scale, spec.shift ?? 0);
      await same(be, (b) => ops.unary(op, b.fromRaw(data, [3, 37, 5])), spec.tol, op);
    });
  }

  test('unary on a permuted, sliced view (strided read)', async (be) => {
    const data = randomArray(4 * 6 * 7, 11, 3);
    await same(be, (b) => ops.unary('gelu', b.fromRaw(data, [4, 6, 7]).permute([2, 0, 1]).slice(1, 1, 4)), UNARY.gelu.tol, 'gelu strided');
  });

  test('gelu tails: exact erf GELU on a dense grid of [-12, 12] against the CPU', async (be) => {
    const n = 4801;
    const data = new Float32Array(n).map((_, i) => -12 + (24 * i) / (n - 1));
    await same(be, (b) => ops.unary('gelu', b.fromRaw(data, [n])), UNARY.gelu.tol, 'gelu grid');
  });

  test('affine on a broadcast (stride-0) view, large magnitudes', async (be) => {
    const data = randomArray(5 * 3, 21, 1e6);
    await same(be, (b) => ops.affine(b.fromRaw(data, [5, 1, 3]).expand([5, 7, 3]), -2.5, 1e5), F32, 'affine');
  });

  for (const op of BINARY) {
    test(`binary ${op}: [2, 3, 1, 5] (+) [1, 3, 4, 1] broadcast`, async (be) => {
      const a = randomArray(2 * 3 * 5, 31, 100);
      const bv = randomArray(3 * 4, 32, 100);
      await same(be, (b) => {
        const shape = [2, 3, 4, 5];
        return ops.binary(op, b.fromRaw(a, [2, 3, 1, 5]).expand(shape), b.fromRaw(bv, [1, 3, 4, 1]).expand(shape));
      }, F32, op);
    });
  }

  test('binary on a rank-6 layout that cannot be merged (permuted operands)', async (be) => {
    const shape = [2, 3, 2, 3, 2, 3];
    const n = shape.reduce((p, d) => p * d, 1);
    const a = randomArray(n, 41), c = randomArray(n, 42);
    await same(be, (b) => ops.binary('mul', b.fromRaw(a, shape).permute([5, 4, 3, 2, 1, 0]), b.fromRaw(c, shape).permute([1, 0, 3, 2, 5, 4])), F32, 'rank-6 mul');
  });

  test('binary with odd sizes over several workgroups and an offset view', async (be) => {
    const a = randomArray(3 * 1031, 51), c = randomArray(1031, 52);
    await same(be, (b) => {
      const x = b.fromRaw(a, [3, 1031]).slice(0, 1, 3);
      return ops.binary('sub', x, b.fromRaw(c, [1, 1031]).expand([2, 1031]));
    }, F32, 'sub offset');
  });

  test('max/min propagate NaN from either side; +-inf pass through', async (be) => {
    const a = new Float32Array([NaN, 1, NaN, Infinity, -Infinity, 2]);
    const c = new Float32Array([1, NaN, NaN, 5, 3, -Infinity]);
    for (const op of ['max', 'min'] as const) {
      const got = await ops.binary(op, be.fromRaw(a, [6]), be.fromRaw(c, [6])).data();
      const ref = await ops.binary(op, cpu.fromRaw(a, [6]), cpu.fromRaw(c, [6])).data();
      expect(Array.from(got)).toEqual(Array.from(ref));
    }
  });

  test('empty tensors', async (be) => {
    const x = be.fromRaw(new Float32Array(0), [0, 3]);
    expect((await ops.unary('exp', x).data()).length).toBe(0);
    expect((await ops.binary('add', x, x).data()).length).toBe(0);
  });
});
