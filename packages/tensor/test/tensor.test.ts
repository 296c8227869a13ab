// Tensor core on the CPU reference backend: views (reshape, permute, slice, chunk, expand, unsqueeze,
// contiguous of awkward strided views), broadcasting in the elementwise ops, disposal and reference
// counting, scopes, and exact f16 / bf16 conversions.

import { describe, expect, it } from 'vitest';
import {
  CpuBackend, Tensor, bf16BitsToNumber, f16BitsToNumber, fromFloat32, keep, numberToBf16Bits, numberToF16Bits,
  ops, scope, scopeAsync, toFloat32,
} from '@cnx/tensor';

const cpu = new CpuBackend();

/** A [shape] tensor whose element at flat index i is i (so values reveal which element a view reads). */
function iota(shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return cpu.fromRaw(Float32Array.from({ length: n }, (_, i) => i), shape);
}

/** Row-major values of `shape` from an index function (the hand-written reference for a view). */
function build(shape: number[], at: (idx: number[]) => number): number[] {
  const out: number[] = [];
  const idx = shape.map(() => 0);
  const n = shape.reduce((a, b) => a * b, 1);
  for (let i = 0; i < n; i++) {
    out.push(at(idx));
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
  return out;
}

async function values(t: Tensor): Promise<number[]> {
  return Array.from(await t.data());
}

describe('views', () => {
  it('reshape of a contiguous tensor shares storage; -1 is inferred; bad shapes are named', async () => {
    const x = iota([2, 3, 4]);
    const r = x.reshape([4, -1]);
    expect(r.shape).toEqual([4, 6]);
    expect(r.storage).toBe(x.storage);
    expect(await values(r)).toEqual(build([4, 6], ([i, j]) => i! * 6 + j!));
    expect(() => x.reshape([5, -1])).toThrow('reshape: cannot reshape [2, 3, 4] to [5, -1]');
    expect(() => x.reshape([-1, -1])).toThrow('more than one -1');
    expect(() => x.reshape([2, 3, 5])).toThrow('(24 elements) to [2, 3, 5]');
  });

  it('permute and transpose read the right elements without copying', async () => {
    const x = iota([2, 3, 4]); // x[i,j,k] = 12i + 4j + k
    const p = x.permute([2, 0, 1]); // p[k,i,j] = x[i,j,k]
    expect(p.shape).toEqual([4, 2, 3]);
    expect(p.storage).toBe(x.storage);
    expect(p.isContiguous).toBe(false);
    expect(await values(p)).toEqual(build([4, 2, 3], ([k, i, j]) => 12 * i! + 4 * j! + k!));
    const t = x.transpose(0, -1); // t[k,j,i]
    expect(await values(t)).toEqual(build([4, 3, 2], ([k, j, i]) => 12 * i! + 4 * j! + k!));
    expect(() => x.permute([0, 0, 1])).toThrow('not a permutation of rank 3');
  });

  it('slice and chunk are offset views; out-of-range and uneven splits are rejected', async () => {
    const x = iota([3, 5, 2]); // x[i,j,k] = 10i + 2j + k
    const s = x.slice(1, 1, 4);
    expect(s.shape).toEqual([3, 3, 2]);
    expect(s.offset).toBe(2);
    expect(await values(s)).toEqual(build([3, 3, 2], ([i, j, k]) => 10 * i! + 2 * (j! + 1) + k!));
    const [c0, c1, c2] = x.chunk(3, 0);
    expect(await values(c2!)).toEqual(build([1, 5, 2], ([, j, k]) => 20 + 2 * j! + k!));
    expect(c1!.offset).toBe(10);
    expect(c0!.storage).toBe(x.storage);
    expect(() => x.slice(1, 2, 6)).toThrow('slice: [2, 6) out of range for dim 1 of size 5 in [3, 5, 2]');
    expect(() => x.chunk(2, 1)).toThrow('chunk: dim 1 of size 5 does not split into 2 equal parts');
  });

  it('expand broadcasts with stride 0, unsqueeze adds a size-1 dim, bad expansions are named', async () => {
    const x = iota([3, 1]);
    const e = x.expand([2, 3, 4]);
    expect(e.strides).toEqual([0, 1, 0]);
    expect(await values(e)).toEqual(build([2, 3, 4], ([, j]) => j!));
    const u = iota([3]).unsqueeze(0).unsqueeze(-1);
    expect(u.shape).toEqual([1, 3, 1]);
    expect(await values(u)).toEqual([0, 1, 2]);
    expect(() => x.expand([3, 2, 2])).toThrow('expand: [3, 1] cannot expand to [3, 2, 2]');
    expect(() => x.expand([4])).toThrow('expand: [3, 1] cannot expand to [4]');
  });

  it('contiguous() materialises awkward strided views (permute + slice + expand + negative-free offsets)', async () => {
    const x = iota([4, 5, 6]); // x[i,j,k] = 30i + 6j + k
    // v[a, b, c, d] = x[b + 1, d, 2 + a] for a<3, b<2, c<2 (broadcast), d<5
    const v = x.permute([2, 0, 1]).slice(0, 2, 5).slice(1, 1, 3).unsqueeze(2).expand([3, 2, 2, 5]);
    expect(v.isContiguous).toBe(false);
    const c = v.contiguous();
    expect(c.isContiguous).toBe(true);
    expect(c.storage).not.toBe(x.storage);
    const ref = build([3, 2, 2, 5], ([a, b, , d]) => 30 * (b! + 1) + 6 * d! + 2 + a!);
    expect(await values(c)).toEqual(ref);
    // reshape of a non-contiguous view copies first, and still reads the same elements.
    const r = v.reshape([6, 10]);
    expect(await values(r)).toEqual(ref);
    // contiguous() of an already contiguous tensor is a new view of the same storage.
    const same = c.contiguous();
    expect(same.storage).toBe(c.storage);
    // A slice at offset 0 of a contiguous tensor is contiguous; one at an offset is not (offset != 0).
    expect(x.slice(0, 0, 2).isContiguous).toBe(true);
    expect(x.slice(0, 1, 2).isContiguous).toBe(false);
    expect(await values(x.slice(0, 1, 2).contiguous())).toEqual(build([1, 5, 6], ([, j, k]) => 30 + 6 * j! + k!));
  });
});

describe('broadcasting in elementwise ops', () => {
  it('[2,1,5] + [3,1] -> [2,3,5]', async () => {
    const a = iota([2, 1, 5]); // a[i,0,k] = 5i + k
    const b = cpu.fromRaw(new Float32Array([100, 200, 300]), [3, 1]);
    const y = ops.add(a, b);
    expect(y.shape).toEqual([2, 3, 5]);
    expect(await values(y)).toEqual(build([2, 3, 5], ([i, j, k]) => 5 * i! + k! + 100 * (j! + 1)));
  });

  it('sub / mul / div broadcast either side, including a permuted operand and a [1] scalar', async () => {
    const a = iota([4]); // [0, 1, 2, 3]
    const b = iota([2, 1, 4]).permute([1, 0, 2]); // [1, 2, 4], b[0,i,k] = 4i + k
    expect(await values(ops.sub(a, b))).toEqual(build([1, 2, 4], ([, i, k]) => k! - (4 * i! + k!)));
    const two = cpu.fromRaw(new Float32Array([2]), [1]);
    expect(await values(ops.mul(b, two))).toEqual(build([1, 2, 4], ([, i, k]) => 2 * (4 * i! + k!)));
    expect(await values(ops.div(two, cpu.fromRaw(new Float32Array([4, 8]), [2, 1])))).toEqual([0.5, 0.25]);
  });

  it('names both shapes when they do not broadcast', () => {
    expect(() => ops.add(iota([2, 3]), iota([4, 1, 2]))).toThrow('shapes [2, 3] and [4, 1, 2] do not broadcast (dim 2: 3 vs 2)');
  });
});

describe('disposal and reference counting', () => {
  it('frees storage with its last view and returns liveBytes to where it started', () => {
    const start = cpu.memory().liveBytes;
    const x = iota([8, 8]);
    expect(cpu.memory().liveBytes).toBe(start + 256);
    const v = x.reshape([64]);
    const s = x.slice(0, 2, 4);
    expect(x.storage.refs).toBe(3);
    x.dispose();
    x.dispose(); // idempotent: must not drop another reference
    expect(x.storage.refs).toBe(2);
    expect(cpu.memory().liveBytes).toBe(start + 256);
    v.dispose();
    expect(cpu.memory().liveBytes).toBe(start + 256);
    s.dispose();
    expect(x.storage.refs).toBe(0);
    expect(cpu.memory().liveBytes).toBe(start);
    expect(() => x.reshape([64])).toThrow('tensor [8, 8] used after dispose()');
  });

  it('ops allocate new storages that the caller owns', () => {
    const start = cpu.memory().liveBytes;
    const a = iota([3]);
    const e = a.expand([2, 3]); // a view: holds a reference on a's storage, allocates nothing
    const y = ops.add(a, e);
    expect(cpu.memory().liveBytes).toBe(start + 12 + 24);
    a.dispose();
    y.dispose();
    expect(cpu.memory().liveBytes).toBe(start + 12); // the expand view still holds a's storage
    e.dispose();
    expect(cpu.memory().liveBytes).toBe(start);
  });
});

describe('scopes', () => {
  it('dispose intermediates but not results (arrays and objects are searched)', () => {
    const start = cpu.memory().liveBytes;
    let mid: Tensor | undefined;
    const out = scope(() => {
      const a = iota([4]);
      mid = ops.mul(a, a);
      return { y: ops.add(mid, a), list: [a.reshape([2, 2])] };
    });
    expect(mid!.isDisposed).toBe(true);
    expect(out.y.isDisposed).toBe(false);
    expect(out.list[0]!.isDisposed).toBe(false);
    // y (16 bytes) and the view of a's storage (16 bytes) survive.
    expect(cpu.memory().liveBytes).toBe(start + 32);
    out.y.dispose();
    out.list[0]!.dispose();
    expect(cpu.memory().liveBytes).toBe(start);
  });

  it('keep() hands a tensor to the enclosing scope; nested results die with the outer scope', () => {
    const start = cpu.memory().liveBytes;
    let kept: Tensor | undefined, inner: Tensor | undefined;
    const outer = scope(() => {
      inner = scope(() => {
        kept = keep(iota([2]));
        iota([3]); // dropped
        return iota([5]);
      });
      expect(inner.isDisposed).toBe(false);
      expect(kept!.isDisposed).toBe(false);
      return iota([1]);
    });
    expect(inner!.isDisposed).toBe(true);
    expect(kept!.isDisposed).toBe(true);
    expect(outer.isDisposed).toBe(false);
    outer.dispose();
    expect(cpu.memory().liveBytes).toBe(start);
  });

  it('disposes everything when the body throws, sync and async', async () => {
    const start = cpu.memory().liveBytes;
    expect(() => scope(() => { iota([10]); throw new Error('boom'); })).toThrow('boom');
    expect(cpu.memory().liveBytes).toBe(start);
    await expect(scopeAsync(async () => { iota([10]); await Promise.resolve(); throw new Error('later'); })).rejects.toThrow('later');
    expect(cpu.memory().liveBytes).toBe(start);
    const r = await scopeAsync(async () => { const a = iota([2]); await Promise.resolve(); return ops.add(a, a); });
    expect(await values(r)).toEqual([0, 2]);
    r.dispose();
    expect(cpu.memory().liveBytes).toBe(start);
  });
});

describe('f16 conversions (IEEE binary16: 1 sign, 5 exponent bits with bias 15, 10 fraction bits)', () => {
  it('decodes the special and edge bit patterns exactly', () => {
    expect(f16BitsToNumber(0x0001)).toBe(2 ** -24); // smallest subnormal: 1 * 2^-24
    expect(f16BitsToNumber(0x03ff)).toBe(1023 * 2 ** -24); // largest subnormal
    expect(f16BitsToNumber(0x0400)).toBe(2 ** -14); // smallest normal
    expect(f16BitsToNumber(0x7bff)).toBe(65504); // max normal: (2 - 2^-10) * 2^15
    expect(f16BitsToNumber(0x3c00)).toBe(1);
    expect(f16BitsToNumber(0x7c00)).toBe(Infinity);
    expect(f16BitsToNumber(0xfc00)).toBe(-Infinity);
    expect(f16BitsToNumber(0x7e00)).toBeNaN();
    expect(f16BitsToNumber(0xfc01)).toBeNaN(); // any nonzero fraction with exponent 31
    expect(Object.is(f16BitsToNumber(0x8000), -0)).toBe(true);
    expect(f16BitsToNumber(0x8001)).toBe(-(2 ** -24));
  });

  it('encodes the special values', () => {
    expect(numberToF16Bits(2 ** -24)).toBe(0x0001);
    expect(numberToF16Bits(1023 * 2 ** -24)).toBe(0x03ff);
    expect(numberToF16Bits(65504)).toBe(0x7bff);
    expect(numberToF16Bits(Infinity)).toBe(0x7c00);
    expect(numberToF16Bits(-Infinity)).toBe(0xfc00);
    expect(numberToF16Bits(-0)).toBe(0x8000);
    expect(numberToF16Bits(0)).toBe(0x0000);
    const nan = numberToF16Bits(NaN);
    expect(nan & 0x7c00).toBe(0x7c00); // exponent all ones ...
    expect(nan & 0x03ff).not.toBe(0); // ... with a nonzero fraction
  });

  it('rounds to nearest, ties to even, in the normal and subnormal ranges and at overflow', () => {
    // Around 1 the f16 spacing is 2^-10; 1 + 2^-11 is the midpoint of 0x3C00 (even) and 0x3C01.
    expect(numberToF16Bits(1 + 2 ** -11)).toBe(0x3c00);
    // 1 + 3*2^-11 is the midpoint of 0x3C01 (odd) and 0x3C02 (even).
    expect(numberToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    // Just above the first midpoint rounds up (2^-20 is exact in f32 next to 1 + 2^-11).
    expect(numberToF16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01);
    // Subnormal spacing is 2^-24: 2^-25 is the midpoint of 0 (even) and 0x0001 -> 0.
    expect(numberToF16Bits(2 ** -25)).toBe(0x0000);
    expect(numberToF16Bits(-(2 ** -25))).toBe(0x8000);
    // 3 * 2^-25 is the midpoint of 0x0001 and 0x0002 (even) -> 0x0002.
    expect(numberToF16Bits(3 * 2 ** -25)).toBe(0x0002);
    expect(numberToF16Bits(2 ** -25 * (1 + 2 ** -10))).toBe(0x0001);
    // Largest subnormal + half a step = 1023.5 * 2^-24: ties to even carries into the smallest normal.
    expect(numberToF16Bits(1023.5 * 2 ** -24)).toBe(0x0400);
    // Above 65504 the step is 32: 65519 rounds down; 65520 is the midpoint of 65504 (0x7BFF, odd) and
    // 65536 (exponent 16, not representable), so ties-to-even goes up and overflows to inf.
    expect(numberToF16Bits(65519)).toBe(0x7bff);
    expect(numberToF16Bits(65520)).toBe(0x7c00);
    expect(numberToF16Bits(-65520)).toBe(0xfc00);
    expect(numberToF16Bits(1e6)).toBe(0x7c00);
    expect(numberToF16Bits(2 ** -30)).toBe(0x0000); // underflow keeps the sign
    expect(numberToF16Bits(-(2 ** -30))).toBe(0x8000);
  });

  it('round-trips all 65536 bit patterns (NaNs stay NaN)', () => {
    let mismatches = 0;
    for (let h = 0; h < 0x10000; h++) {
      const x = f16BitsToNumber(h);
      const back = numberToF16Bits(x);
      if (Number.isNaN(x) ? !Number.isNaN(f16BitsToNumber(back)) : back !== h) mismatches++;
    }
    expect(mismatches).toBe(0);
  });
});

describe('bf16 conversions (the top 16 bits of an f32: 8 exponent bits, 7 fraction bits)', () => {
  it('decodes and encodes the special and edge values', () => {
    expect(bf16BitsToNumber(0x3f80)).toBe(1);
    expect(bf16BitsToNumber(0x0001)).toBe(2 ** -133); // smallest subnormal: 2^-126 * 2^-7
    expect(bf16BitsToNumber(0x007f)).toBe(127 * 2 ** -133); // largest subnormal
    expect(bf16BitsToNumber(0x7f7f)).toBe((2 - 2 ** -7) * 2 ** 127); // max normal
    expect(bf16BitsToNumber(0x7f80)).toBe(Infinity);
    expect(bf16BitsToNumber(0xff80)).toBe(-Infinity);
    expect(bf16BitsToNumber(0x7fc0)).toBeNaN();
    expect(Object.is(bf16BitsToNumber(0x8000), -0)).toBe(true);
    expect(numberToBf16Bits(2 ** -133)).toBe(0x0001);
    expect(numberToBf16Bits((2 - 2 ** -7) * 2 ** 127)).toBe(0x7f7f);
    expect(numberToBf16Bits(Infinity)).toBe(0x7f80);
    expect(numberToBf16Bits(-Infinity)).toBe(0xff80);
    expect(numberToBf16Bits(-0)).toBe(0x8000);
    expect(bf16BitsToNumber(numberToBf16Bits(NaN))).toBeNaN();
  });

  it('rounds to nearest, ties to even (as torch .bfloat16())', () => {
    // Around 1 the bf16 spacing is 2^-7: 1 + 2^-8 is the midpoint of 0x3F80 (even) and 0x3F81.
    expect(numberToBf16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(numberToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // midpoint of 0x3F81 (odd) and 0x3F82
    expect(numberToBf16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    // Subnormal midpoint: 2^-134 is half of the smallest subnormal -> 0 (even).
    expect(numberToBf16Bits(2 ** -134)).toBe(0x0000);
    expect(numberToBf16Bits(3 * 2 ** -134)).toBe(0x0002);
    // f32 max = (2 - 2^-23) * 2^127 is above the midpoint between bf16 max and 2^128: -> inf.
    expect(numberToBf16Bits((2 - 2 ** -23) * 2 ** 127)).toBe(0x7f80);
    // The midpoint itself (2 - 2^-8) * 2^127: 0x7F7F is odd, so it rounds up to inf too.
    expect(numberToBf16Bits((2 - 2 ** -8) * 2 ** 127)).toBe(0x7f80);
    expect(numberToBf16Bits((2 - 2 ** -8 - 2 ** -20) * 2 ** 127)).toBe(0x7f7f);
  });

  it('round-trips all 65536 bit patterns (NaNs stay NaN)', () => {
    let mismatches = 0;
    for (let b = 0; b < 0x10000; b++) {
      const x = bf16BitsToNumber(b);
      const back = numberToBf16Bits(x);
      if (Number.isNaN(x) ? !Number.isNaN(bf16BitsToNumber(back)) : back !== b) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  it('array conversions agree with the scalar ones, and f16/bf16 tensors read back as f32', async () => {
    const xs = [0, -0, 1, -2.5, 65504, 1e-7, Infinity, NaN];
    const h = fromFloat32(xs, 'f16') as Uint16Array;
    expect(Array.from(h)).toEqual(xs.map(numberToF16Bits));
    expect(Array.from(toFloat32(h, 'f16'))).toEqual(xs.map((x) => f16BitsToNumber(numberToF16Bits(x))));
    const t = cpu.fromRaw(fromFloat32(xs, 'bf16'), [2, 4], 'bf16');
    expect(await values(t)).toEqual(xs.map((x) => bf16BitsToNumber(numberToBf16Bits(x))));
    const cast = ops.cast(t, 'f32');
    expect(cast.dtype).toBe('f32');
    expect(await values(cast)).toEqual(await values(t));
    t.dispose();
    cast.dispose();
  });
});
