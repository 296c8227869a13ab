// allclose with a tolerance model: |got - ref| <= atol + rtol*|ref| elementwise, NaN never passes.
// Failures print the first mismatching indices. Presets scale with the dtype and the reduction length:
// an f32 sum of n terms has rounding error growing like sqrt(n)*eps*|terms| for random data.

import { expect } from 'vitest';
import type { Tensor } from '@cnx/tensor';

export interface Tol { atol: number; rtol: number }

const EPS = { f32: 1.19e-7, f16: 9.77e-4, bf16: 7.81e-3 } as const;

/** Tolerance for a result accumulated over `reduction` terms of magnitude ~`scale`, in `dtype`. */
export function tolFor(dtype: keyof typeof EPS, reduction = 1, scale = 1): Tol {
  const e = EPS[dtype];
  return { atol: 8 * e * Math.sqrt(Math.max(reduction, 1)) * scale, rtol: 8 * e };
}

export function mismatchReport(got: ArrayLike<number>, ref: ArrayLike<number>, tol: Tol, max = 8): string[] {
  const bad: string[] = [];
  if (got.length !== ref.length) return [`length ${got.length} != ${ref.length}`];
  for (let i = 0; i < ref.length && bad.length < max; i++) {
    const g = got[i]!, r = ref[i]!;
    if (!(Math.abs(g - r) <= tol.atol + tol.rtol * Math.abs(r))) bad.push(`[${i}] got ${g} ref ${r} (|d|=${Math.abs(g - r)})`);
  }
  return bad;
}

export function expectAllClose(got: ArrayLike<number>, ref: ArrayLike<number>, tol: Tol, what = 'values'): void {
  const bad = mismatchReport(got, ref, tol);
  if (bad.length) expect.fail(`${what}: mismatch (atol ${tol.atol}, rtol ${tol.rtol}), first bad:\n  ${bad.join('\n  ')}`);
}

export async function expectTensorClose(got: Tensor, ref: Tensor | ArrayLike<number>, tol: Tol, what = 'tensor'): Promise<void> {
  const r = 'backend' in (ref as object) ? await (ref as Tensor).data() : (ref as ArrayLike<number>);
  expectAllClose(await got.data(), r, tol, what);
}

/** Deterministic pseudo-random values (mulberry32), for reproducible test inputs. */
export function randomArray(n: number, seed = 1, scale = 1, shift = 0): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale + shift;
  }
  return out;
}
