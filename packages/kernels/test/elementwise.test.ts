// Elementwise ops on every backend against float64 values computed independently here (the maths
// below and a strided gather written for the test; nothing from @cnx/tensor's CPU reference): every
// unary op, affine, every binary op, on awkward shapes (odd sizes, rank up to 6 after merging),
// permuted / sliced / broadcast (stride-0) views, large magnitudes, and NaN propagation of max/min.
// The CPU run checks the CPU reference itself, the WebGPU run the WGSL kernels.
//
// Error model: unary ops are single f32 evaluations, so |err| <= a few ulp of the result (rtol 8 eps);
// the transcendental builtins get what the WGSL spec allows: exp/exp2 3 + 2|x| ulp (so inputs stay in
// |x| <= 8 where that is < 20 ulp), log/sqrt 3 ulp, and sin/cos an absolute 2^-11 on [-pi, pi].
// GELU uses this package's own f32 erf (Cody's approximation), checked tightly over a wide range.

import { type Backend, type BinaryOp, type Tensor, type UnaryOp, ops } from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor, type Tol } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

const F32 = tolFor('f32');

// ---------------------------------------------------------------- float64 reference, independent

/** erfc(z) for z >= 0 in float64: Taylor series of erf below 2, the Laplace continued fraction above. */
function erfc64(z: number): number {
  if (z < 2) {
    let sum = 0, term = z;
    for (let n = 0; n < 200 && (n < 3 || Math.abs(term) > 1e-17 * Math.abs(sum)); ) {
      sum += term / (2 * n + 1);
      n++;
      term *= (-z * z) / n;
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  let k = z;
  for (let n = 120; n >= 1; n--) k = z + n / 2 / k;
  return Math.exp(-z * z) / (Math.sqrt(Math.PI) * k);
}
const sigmoid64 = (x: number): number => 1 / (1 + Math.exp(-x));

/** Each unary op in float64, from its textbook definition (PyTorch's for the GELU family). */
const UNARY64: Record<UnaryOp, (x: number) => number> = {
  neg: (x) => -x,
  abs: (x) => Math.abs(x),
  exp: (x) => Math.exp(x),
  log: (x) => Math.log(x),
  sqrt: (x) => Math.sqrt(x),
  rsqrt: (x) => 1 / Math.sqrt(x),
  recip: (x) => 1 / x,
  square: (x) => x * x,
  sin: (x) => Math.sin(x),
  cos: (x) => Math.cos(x),
  tanh: (x) => Math.tanh(x),
  sigmoid: sigmoid64,
  relu: (x) => (x > 0 ? x : 0),
  silu: (x) => x * sigmoid64(x),
  // 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2): no cancellation in the left tail.
  gelu: (x) => 0.5 * x * (x >= 0 ? 2 - erfc64(x / Math.SQRT2) : erfc64(-x / Math.SQRT2)),
  gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))),
  quick_gelu: (x) => x * sigmoid64(1.702 * x),
};

/** Binary ops in float64; max/min propagate NaN from either side (torch.maximum / minimum). */
const BINARY64: Record<BinaryOp, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  max: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b)),
  min: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b)),
};

/** Row-major strides of a contiguous shape. */
function stridesOf(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) { st[i] = s; s *= shape[i]!; }
  return st;
}

/** The elements of the view (shape, element strides, offset) over `data`, in row-major order. */
function gather(data: ArrayLike<number>, shape: readonly number[], strides: readonly number[], offset = 0): Float64Array {
  const n = shape.reduce((p, d) => p * d, 1);
  const out = new Float64Array(n);
  const idx = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    let at = offset;
    for (let d = 0; d < shape.length; d++) at += idx[d]! * strides[d]!;
    out[i] = data[at]!;
    for (let d = shape.length - 1; d >= 0; d--) { if (++idx[d]! < shape[d]!) break; idx[d] = 0; }
  }
  return out;
}

/** The op on `backend` against the float64 values `expected` (of shape `shape`). */
async function check(backend: Backend, got: Tensor, shape: readonly number[], expected: ArrayLike<number>, tol: Tol, what: string): Promise<void> {
  expect(got.shape).toEqual(shape);
  expectAllClose(await got.data(), expected, tol, what);
}

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

describeEachBackend('elementwise', (test) => {
  for (const [op, spec] of Object.entries(UNARY) as [UnaryOp, (typeof UNARY)[UnaryOp]][]) {
    test(`unary ${op} on [3, 37, 5]`, async (be) => {
      const data = randomArray(3 * 37 * 5, op.length * 7 + 1, spec.scale, spec.shift ?? 0);
      await check(be, ops.unary(op, be.fromRaw(data, [3, 37, 5])), [3, 37, 5], Array.from(data, UNARY64[op]), spec.tol, op);
    });
  }

  test('unary on a permuted, sliced view (strided read)', async (be) => {
    const data = randomArray(4 * 6 * 7, 11, 3);
    // [4, 6, 7] permuted to [7, 4, 6] (strides [1, 42, 7]), then sliced to 1..4 along dim 1: [7, 3, 6], offset 42.
    const x = gather(data, [7, 3, 6], [1, 42, 7], 42);
    await check(be, ops.unary('gelu', be.fromRaw(data, [4, 6, 7]).permute([2, 0, 1]).slice(1, 1, 4)), [7, 3, 6], Array.from(x, UNARY64.gelu), UNARY.gelu.tol, 'gelu strided');
  });

  test('gelu tails: exact erf GELU on a dense grid of [-12, 12] against float64', async (be) => {
    const n = 4801;
    const data = new Float32Array(n).map((_, i) => -12 + (24 * i) / (n - 1));
    await check(be, ops.unary('gelu', be.fromRaw(data, [n])), [n], Array.from(data, UNARY64.gelu), UNARY.gelu.tol, 'gelu grid');
  });

  test('affine on a broadcast (stride-0) view, large magnitudes', async (be) => {
    const data = randomArray(5 * 3, 21, 1e6);
    const x = gather(data, [5, 7, 3], [3, 0, 1]);
    await check(be, ops.affine(be.fromRaw(data, [5, 1, 3]).expand([5, 7, 3]), -2.5, 1e5), [5, 7, 3], x.map((v) => v * -2.5 + 1e5), F32, 'affine');
  });

  for (const op of BINARY) {
    test(`binary ${op}: [2, 3, 1, 5] (+) [1, 3, 4, 1] broadcast`, async (be) => {
      const a = randomArray(2 * 3 * 5, 31, 100);
      const bv = randomArray(3 * 4, 32, 100);
      const shape = [2, 3, 4, 5];
      const x = gather(a, shape, [15, 5, 0, 1]), y = gather(bv, shape, [0, 4, 1, 0]);
      await check(be, ops.binary(op, be.fromRaw(a, [2, 3, 1, 5]).expand(shape), be.fromRaw(bv, [1, 3, 4, 1]).expand(shape)),
        shape, x.map((v, i) => BINARY64[op](v, y[i]!)), F32, op);
    });
  }

  test('binary on a rank-6 layout that cannot be merged (permuted operands)', async (be) => {
    const shape = [2, 3, 2, 3, 2, 3];
    const n = shape.reduce((p, d) => p * d, 1);
    const a = randomArray(n, 41), c = randomArray(n, 42);
    const st = stridesOf(shape);
    const permuted = (perm: number[]) => ({ shape: perm.map((p) => shape[p]!), strides: perm.map((p) => st[p]!) });
    const pa = permuted([5, 4, 3, 2, 1, 0]), pc = permuted([1, 0, 3, 2, 5, 4]);
    expect(pa.shape).toEqual(pc.shape);
    const x = gather(a, pa.shape, pa.strides), y = gather(c, pc.shape, pc.strides);
    await check(be, ops.binary('mul', be.fromRaw(a, shape).permute([5, 4, 3, 2, 1, 0]), be.fromRaw(c, shape).permute([1, 0, 3, 2, 5, 4])),
      pa.shape, x.map((v, i) => v * y[i]!), F32, 'rank-6 mul');
  });

  test('binary with odd sizes over several workgroups and an offset view', async (be) => {
    const a = randomArray(3 * 1031, 51), c = randomArray(1031, 52);
    const x = gather(a, [2, 1031], [1031, 1], 1031), y = gather(c, [2, 1031], [0, 1]);
    const got = ops.binary('sub', be.fromRaw(a, [3, 1031]).slice(0, 1, 3), be.fromRaw(c, [1, 1031]).expand([2, 1031]));
    await check(be, got, [2, 1031], x.map((v, i) => v - y[i]!), F32, 'sub offset');
  });

  test('max/min propagate NaN from either side; +-inf pass through', async (be) => {
    const a = new Float32Array([NaN, 1, NaN, Infinity, -Infinity, 2]);
    const c = new Float32Array([1, NaN, NaN, 5, 3, -Infinity]);
    const expected = { max: [NaN, NaN, NaN, Infinity, 3, 2], min: [NaN, NaN, NaN, 5, -Infinity, -Infinity] };
    for (const op of ['max', 'min'] as const) {
      expect(Array.from(a, (v, i) => BINARY64[op](v, c[i]!))).toEqual(expected[op]); // the reference agrees with the literal
      const got = await ops.binary(op, be.fromRaw(a, [6]), be.fromRaw(c, [6])).data();
      expect(Array.from(got)).toEqual(expected[op]);
    }
  });

  test('empty tensors', async (be) => {
    const x = be.fromRaw(new Float32Array(0), [0, 3]);
    expect((await ops.unary('exp', x).data()).length).toBe(0);
    expect((await ops.binary('add', x, x).data()).length).toBe(0);
  });
});
