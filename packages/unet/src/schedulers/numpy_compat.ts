// The few NumPy routines the diffusers schedulers use to build their timestep and sigma tables,
// reproduced operation for operation in float64 so that integer timesteps come out identical
// (`np.round` rounds half to even; `np.linspace` computes start + i*step and pins the endpoint).

/** np.linspace(start, stop, num) with endpoint=True. */
export function linspace(start: number, stop: number, num: number): number[] {
  if (num <= 0) return [];
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out = Array.from({ length: num }, (_, i) => i * step + start);
  out[num - 1] = stop;
  return out;
}

/** np.arange(start, stop, step) for a non-zero step: ceil((stop - start) / step) values start + i*step. */
export function arange(start: number, stop: number, step: number): number[] {
  const n = Math.max(0, Math.ceil((stop - start) / step));
  return Array.from({ length: n }, (_, i) => start + i * step);
}

/** np.round / np.rint: round half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round rounds .5 up; move exact ties that landed on an odd integer back down.
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * np.interp(x, xp, fp) for increasing xp: linear interpolation, clamped to fp[0] / fp[last] outside.
 * NumPy's form: slope = (fp[j+1] - fp[j]) / (xp[j+1] - xp[j]); fp[j] + slope * (x - xp[j]).
 */
export function interp(x: number, xp: ArrayLike<number>, fp: ArrayLike<number>): number {
  const n = xp.length;
  if (x <= xp[0]!) return fp[0]!;
  if (x >= xp[n - 1]!) return fp[n - 1]!;
  let lo = 0, hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xp[mid]! <= x) lo = mid; else hi = mid;
  }
  const slope = (fp[lo + 1]! - fp[lo]!) / (xp[lo + 1]! - xp[lo]!);
  return slope * (x - xp[lo]!) + fp[lo]!;
}

/** Float32 rounding of every value (what `.astype(np.float32)` / a float32 torch tensor stores). */
export function toFloat32(xs: readonly number[]): number[] {
  return xs.map((v) => Math.fround(v));
}
