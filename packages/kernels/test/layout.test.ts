// Layout kernels (webgpu/layout.ts) and the backend's memory paths against the CPU reference:
// contiguous() of permuted / sliced / broadcast views in every dtype (2-byte dtypes packed two per
// word, odd lengths, odd offsets); cast between every pair of dtypes, bit-exact, over all 65536 f16 and
// bf16 bit patterns and over f32 values that hit round-to-nearest-even ties, subnormals, overflow,
// infinities and NaN; concat along every axis in f32 and f16; fromRaw/read/zeros round trips.
// Everything here is a copy or an exactly specified conversion, so comparisons are exact (NaN == NaN).

import { CpuBackend, fromFloat32, ops, type Backend, type DType, type RawArray, type Tensor } from '@cnx/tensor';
import { expect } from 'vitest';
import { randomArray } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

const cpu = new CpuBackend();
const DTYPES: DType[] = ['f32', 'f16', 'bf16', 'i32'];

function rawOf(values: Float32Array, dtype: DType): RawArray {
  return dtype === 'f32' ? values : fromFloat32(values, dtype);
}

/** Exact, NaN-aware comparison that names the first differing indices. */
function expectSame(got: Float32Array, ref: Float32Array, what: string): void {
  expect(got.length, `${what}: length`).toBe(ref.length);
  const bad: string[] = [];
  for (let i = 0; i < ref.length && bad.length < 8; i++) {
    if (!Object.is(got[i], ref[i]) && !(Number.isNaN(got[i]!) && Number.isNaN(ref[i]!))) bad.push(`[${i}] got ${got[i]} ref ${ref[i]}`);
  }
  if (bad.length) expect.fail(`${what}: first differences:\n  ${bad.join('\n  ')}`);
}

async function same(be: Backend, build: (b: Backend) => Tensor, what: string): Promise<void> {
  const got = build(be), ref = build(cpu);
  expect(got.shape, what).toEqual(ref.shape);
  expect(got.dtype, what).toBe(ref.dtype);
  expectSame(await got.data(), await ref.data(), what);
}

/** f32 values that exercise every conversion path, including exact f16 / bf16 rounding ties. */
function awkwardValues(): Float32Array {
  const out: number[] = [0, -0, 1, -1, 65504, 65519.99, 65520, -65536, 1e-8, -5.96e-8, 2.98e-8, 6.1e-5,
    Infinity, -Infinity, NaN, 3.4e38, -1.17549435e-38, 1.4e-45, 0.1, 1 / 3, 2 ** 24 + 1, 1e10];
  // Ties between adjacent f16 values (normal and subnormal) and between adjacent bf16 values.
  for (const base of [1, 1.5, 1024, 2 ** -15, 2 ** -20, 3 * 2 ** -24]) {
    out.push(base + 2 ** (Math.floor(Math.log2(base)) - 11), -(base + 3 * 2 ** (Math.floor(Math.log2(base)) - 11)));
    out.push(base * (1 + 2 ** -8), base * (1 + 3 * 2 ** -8));
  }
  const bits = new Uint32Array(4000);
  let s = 12345;
  for (let i = 0; i < bits.length; i++) { s = (Math.imul(s, 1103515245) + 12345) >>> 0; bits[i] = s ^ (s << 7); }
  return new Float32Array([...out, ...new Float32Array(bits.buffer)]);
}

describeEachBackend('layout', (test) => {
  for (const dtype of DTYPES) {
    test(`contiguous ${dtype}: permuted, sliced (odd offset) and broadcast views`, async (be) => {
      const v = randomArray(3 * 5 * 7, 3, 1000).map(Math.round);
      const raw = rawOf(v, dtype);
      await same(be, (b) => b.contiguous(b.fromRaw(raw, [3, 5, 7], dtype).permute([2, 0, 1])), `${dtype} permute`);
      await same(be, (b) => b.contiguous(b.fromRaw(raw, [3, 5, 7], dtype).slice(2, 1, 6).slice(0, 1, 2)), `${dtype} slice`);
      await same(be, (b) => b.contiguous(b.fromRaw(raw.slice(0, 5), [5, 1], dtype).expand([5, 3]).unsqueeze(0).expand([3, 5, 3])), `${dtype} broadcast`);
      await same(be, (b) => b.contiguous(b.fromRaw(raw, [105], dtype).slice(0, 1, 104)), `${dtype} offset 1, odd length`);
    });

    test(`read() of ${dtype} views without a copy kernel (contiguous with odd offsets)`, async (be) => {
      const v = randomArray(41, 9, 100).map(Math.round);
      const raw = rawOf(v, dtype);
      for (const [a, b] of [[0, 41], [1, 40], [3, 4], [7, 8]] as const) {
        expectSame(await be.fromRaw(raw, [41], dtype).slice(0, a, b).data(), await cpu.fromRaw(raw, [41], dtype).slice(0, a, b).data(), `${dtype} [${a}, ${b})`);
      }
    });
  }

  for (const from of DTYPES) {
    for (const to of DTYPES) {
      test(`cast ${from} -> ${to} (strided input)`, async (be) => {
        const v = from === 'i32' || to === 'i32' ? randomArray(6 * 9, 5, 3e4).map(Math.trunc) : awkwardValues().slice(0, 6 * 9);
        const raw = rawOf(v, from);
        await same(be, (b) => b.cast(b.fromRaw(raw, [6, 9], from).transpose(0, 1), to), `${from}->${to}`);
      });
    }
  }

  test('cast f32 -> f16 / bf16: round to nearest even on ties, subnormals, overflow, inf, NaN', async (be) => {
    const v = awkwardValues();
    for (const to of ['f16', 'bf16'] as const) {
      await same(be, (b) => b.cast(b.fromRaw(v, [v.length]), to), `f32->${to}`);
    }
  });

  test('cast f16 / bf16 -> f32: all 65536 bit patterns', async (be) => {
    const all = new Uint16Array(65536).map((_, i) => i);
    for (const from of ['f16', 'bf16'] as const) {
      await same(be, (b) => b.cast(b.fromRaw(all, [65536], from), 'f32'), `${from}->f32`);
      await same(be, (b) => b.cast(b.fromRaw(all, [65536], from), from === 'f16' ? 'bf16' : 'f16'), `${from}->other half`);
    }
  });

  for (const dtype of ['f32', 'f16'] as const) {
    for (const axis of [0, 1, 2]) {
      test(`concat ${dtype} along axis ${axis} (odd sizes, three inputs)`, async (be) => {
        const shapes = [[3, 5, 3], [3, 5, 3], [3, 5, 3]].map((s, k) => s.map((d, i) => (i === axis ? [1, 2, 5][k]! : d)));
        const raws = shapes.map((s, k) => rawOf(randomArray(s.reduce((p, d) => p * d, 1), 60 + k, 50).map(Math.round), dtype));
        await same(be, (b) => ops.concat(shapes.map((s, k) => b.fromRaw(raws[k]!, s, dtype)), axis), `concat ${dtype} axis ${axis}`);
      });
    }
  }

  test('zeros and fromRaw of odd-length f16 (buffer padded to 4 bytes)', async (be) => {
    expectSame(await be.zeros([3, 3], 'f16').data(), new Float32Array(9), 'zeros f16');
    const raw = fromFloat32([1, 2, 3], 'f16');
    expectSame(await be.fromRaw(raw, [3], 'f16').data(), new Float32Array([1, 2, 3]), 'fromRaw f16');
    expect(() => be.fromRaw(new Float32Array(3), [3], 'f16')).toThrow(/Uint16Array/);
  });
}, ['webgpu']);
