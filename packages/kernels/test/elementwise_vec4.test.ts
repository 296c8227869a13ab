// The dense vec4 variant of the elementwise kernels (webgpu/elementwise.ts): every unary op, affine and
// every binary op on contiguous operands whose length and offsets are multiples of 4, against the CPU
// reference with the strided variant's tolerances (elementwise.test.ts's error model: the variant
// evaluates the same scalar expression per component), NaN / inf propagation, a sliced operand whose
// offset is a multiple of 4; and that the variant is chosen exactly when it applies (dispatch labels on
// WebGPU): not for lengths or offsets off a multiple of 4, nor for broadcast operands.

import type { DispatchSpec, WebgpuBackend } from '@cnx/kernels';
import { CpuBackend, type Backend, type BinaryOp, type Tensor, type UnaryOp, ops } from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor, type Tol } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

const cpu = new CpuBackend();
const F32 = tolFor('f32');

/** Input range and tolerance per unary op: elementwise.test.ts's. */
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

/** Labels of the dispatches `fn` records on a WebGPU backend (undefined elsewhere). */
async function labelsOf(be: Backend, fn: () => Promise<void>): Promise<string[] | undefined> {
  if (be.name !== 'webgpu') { await fn(); return undefined; }
  const g = be as WebgpuBackend;
  const labels: string[] = [];
  const orig = g.dispatch;
  g.dispatch = (spec: DispatchSpec) => { labels.push(spec.label); orig.call(g, spec); };
  try { await fn(); } finally { g.dispatch = orig; }
  return labels;
}

async function same(backend: Backend, build: (be: Backend) => Tensor, tol: Tol, what: string): Promise<void> {
  const got = build(backend), ref = build(cpu);
  expect(got.shape).toEqual(ref.shape);
  expectAllClose(await got.data(), await ref.data(), tol, what);
  got.dispose();
  ref.dispose();
}

describeEachBackend('elementwise, dense vec4 variant', (test) => {
  test('every unary op and affine on [3, 36, 5] (540 elements)', async (be) => {
    const labels = await labelsOf(be, async () => {
      for (const [op, spec] of Object.entries(UNARY) as [UnaryOp, (typeof UNARY)[UnaryOp]][]) {
        const data = randomArray(3 * 36 * 5, op.length * 7 + 1, spec.scale, spec.shift ?? 0);
        await same(be, (b) => ops.unary(op, b.fromRaw(data, [3, 36, 5])), spec.tol, op);
      }
      const data = randomArray(540, 3, 1e6);
      await same(be, (b) => ops.affine(b.fromRaw(data, [540]), -2.5, 1e5), F32, 'affine');
    });
    if (labels) expect(labels.every((l) => l.endsWith(' vec4')), labels.join(', ')).toBe(true);
  });

  test('every binary op, dense [2, 3, 4, 5]; NaN and inf propagate', async (be) => {
    const a = randomArray(120, 31, 100), c = randomArray(120, 32, 100);
    a[5] = NaN; c[6] = NaN; a[7] = Infinity; c[8] = -Infinity;
    const labels = await labelsOf(be, async () => {
      for (const op of BINARY) {
        const got = ops.binary(op, be.fromRaw(a, [2, 3, 4, 5]), be.fromRaw(c, [2, 3, 4, 5]));
        const ref = ops.binary(op, cpu.fromRaw(a, [2, 3, 4, 5]), cpu.fromRaw(c, [2, 3, 4, 5]));
        const g = await got.data(), r = await ref.data();
        // Non-finite results must match exactly (NaN where NaN, the same infinity); the rest within F32.
        const special = [...r].map((v, i) => (Number.isFinite(v) ? -1 : i)).filter((i) => i >= 0);
        for (const i of special) expect(Object.is(g[i], r[i]), `${op}[${i}]: got ${g[i]}, ref ${r[i]}`).toBe(true);
        const finite = (x: Float32Array) => x.map((v) => (Number.isFinite(v) ? v : 0));
        expectAllClose(finite(g), finite(r), F32, op);
      }
    });
    if (labels) expect(labels.every((l) => l.endsWith(' vec4')), labels.join(', ')).toBe(true);
  });

  test('offsets: a slice at a multiple of 4 is dense; others, odd lengths and broadcasts take the strided path', async (be) => {
    const a = randomArray(3 * 1032, 51), c = randomArray(2 * 1032, 52), d = randomArray(1032, 53);
    const labels = await labelsOf(be, async () => {
      // rows 1..2 of [3, 1032]: offset 1032 (a multiple of 4) -> vec4
      await same(be, (b) => ops.add(b.fromRaw(a, [3, 1032]).slice(0, 1, 3), b.fromRaw(c, [2, 1032])), F32, 'add, offset 1032');
      // columns 1..1029: offset 1 -> strided
      await same(be, (b) => ops.add(b.fromRaw(a, [3, 1032]).slice(1, 1, 1029), b.fromRaw(a.subarray(0, 3 * 1028), [3, 1028])), F32, 'add, offset 1');
      // broadcast of a row -> strided
      await same(be, (b) => ops.mul(b.fromRaw(c, [2, 1032]), b.fromRaw(d, [1032])), F32, 'mul, broadcast');
      // 1031 elements -> strided
      await same(be, (b) => ops.sub(b.fromRaw(d.subarray(0, 1031), [1031]), b.fromRaw(d.subarray(1, 1032), [1031])), F32, 'sub, odd length');
    });
    if (labels) {
      const kinds = labels.filter((l) => /^(binary|unary|affine)/.test(l)).map((l) => (l.endsWith(' vec4') ? 'vec4' : 'strided'));
      expect(kinds).toEqual(['vec4', 'strided', 'strided', 'strided']);
    }
  });
});
