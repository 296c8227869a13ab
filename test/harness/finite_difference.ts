// Gradient checks: an analytic backward against central finite differences of a forward. Two forms share
// this file (one central-difference helper for the whole repository):
//  - finiteDifferenceGrad / expectGradMatchesFd: an f32 forward (the CPU reference backend's ops and op
//    definitions, which accumulate in float64 and round their outputs once to f32), with exact steps and
//    a per-element error model (below);
//  - finiteDifferenceVjp / worstRatio: a float64 forward (the *F64 reference functions), plain central
//    differences with a relative step (error model at finiteDifferenceVjp).
//
// The f32 form:
// For a forward y = f(inputs) and an upstream gradient gy, the checked quantity is the gradient of the
// scalar L = sum_j gy_j * y_j (summed in float64) wrt one input, element by element:
//   D(h) = (L(x + h e_i) - L(x - h e_i)) / 2h,   FD = (4 D(h) - D(2h)) / 3   (one Richardson step),
// whose truncation error is O(h^4). The steps are exact: inputs are snapped to a grid of 2^-12 (see
// `gridded`) and h = 2^-7, so x +- h and x +- 2h are exact f32 values.
//
// Error model: the forward's outputs carry f32 rounding, |err_j| <= 2^-24 |y_j| (half an ulp), which
// does not cancel between the four evaluations for the outputs that change when x_i moves. With those
// errors independent and uniform, L's error has std sigma = 2^-24 sqrt(sum_{changed j} (gy_j y_j)^2 / 3),
// and FD's error std is sqrt((4/3)^2 / 2 + (1/3)^2 / 8) sigma / h = 0.95 sigma / h. The tolerance is 6
// of those std (many elements are checked per test) plus rtol 1e-4 for the O(h^4) truncation and the
// analytic result's own f32 rounding, plus an absolute floor of 1e-6 * max|analytic| (gradients that
// vanish mathematically come out as rounding noise of that size).

import { expect } from 'vitest';

export const FD_STEP = 2 ** -7;

/** Round every value to a multiple of 2^-12, so that steps of FD_STEP and 2*FD_STEP are exact in f32. */
export function gridded(a: Float32Array): Float32Array {
  return a.map((v) => Math.round(v * 4096) / 4096);
}

export interface FdResult {
  /** Richardson-extrapolated central differences, one per element of the checked input. */
  fd: Float64Array;
  /** Per-element tolerance from the error model above, before the relative and floor terms. */
  noise: Float64Array;
}

/** Finite-difference gradient of sum(gy * f(inputs)) wrt inputs[which]. */
export function finiteDifferenceGrad(
  f: (inputs: Float32Array[]) => Float32Array, inputs: readonly Float32Array[], gy: Float32Array, which: number, h = FD_STEP,
): FdResult {
  const xs = inputs.map((a) => a.slice());
  const x = xs[which]!;
  const loss = (y: Float32Array): number => {
    if (y.length !== gy.length) throw new Error(`finite differences: forward gave ${y.length} values, gy has ${gy.length}`);
    let s = 0;
    for (let j = 0; j < y.length; j++) s += gy[j]! * y[j]!;
    return s;
  };
  const fd = new Float64Array(x.length), noise = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i]!;
    const at = (d: number): Float32Array => {
      x[i] = x0 + d;
      if (x[i] !== x0 + d) throw new Error(`finite differences: step ${d} from ${x0} is not exact in f32 (grid the inputs)`);
      return f(xs);
    };
    const yp = at(h), ym = at(-h), yp2 = at(2 * h), ym2 = at(-2 * h);
    x[i] = x0;
    const d1 = (loss(yp) - loss(ym)) / (2 * h), d2 = (loss(yp2) - loss(ym2)) / (4 * h);
    fd[i] = (4 * d1 - d2) / 3;
    let ss = 0;
    for (let j = 0; j < yp.length; j++) {
      if (yp[j] !== ym[j] || yp2[j] !== ym2[j] || yp[j] !== yp2[j]) {
        const m = Math.max(Math.abs(yp[j]!), Math.abs(ym[j]!), Math.abs(yp2[j]!), Math.abs(ym2[j]!));
        ss += (gy[j]! * m) ** 2;
      }
    }
    noise[i] = (6 * 0.95 * 2 ** -24 * Math.sqrt(ss / 3)) / h;
  }
  return { fd, noise };
}

/** Expect an analytic gradient to match finite differences of f (see the error model above). */
export function expectGradMatchesFd(
  what: string, analytic: ArrayLike<number>, f: (inputs: Float32Array[]) => Float32Array, inputs: readonly Float32Array[],
  gy: Float32Array, which: number,
): void {
  const { fd, noise } = finiteDifferenceGrad(f, inputs, gy, which);
  if (analytic.length !== fd.length) expect.fail(`${what}: analytic gradient has ${analytic.length} values, the input ${fd.length}`);
  let scale = 0;
  for (let i = 0; i < analytic.length; i++) scale = Math.max(scale, Math.abs(analytic[i]!));
  const bad: string[] = [];
  for (let i = 0; i < fd.length && bad.length < 8; i++) {
    const a = analytic[i]!, r = fd[i]!;
    const tol = noise[i]! + 1e-4 * Math.abs(r) + 1e-6 * scale;
    if (!(Math.abs(a - r) <= tol)) bad.push(`[${i}] analytic ${a} fd ${r} (|d|=${Math.abs(a - r).toExponential(3)}, tol ${tol.toExponential(3)})`);
  }
  if (bad.length) expect.fail(`${what}: gradient differs from finite differences, first bad:\n  ${bad.join('\n  ')}`);
}

// ---------------------------------------------------------------- float64 forwards

// For a forward f(inputs) -> outputs and upstream gradients w (one per output), the vector-Jacobian
// product the backward returns for input a, element i, is d/dx_i sum_o <w_o, f_o(x)>; here it is
// estimated as (L(x + h e_i) - L(x - h e_i)) / 2h.
// Error model (all float64): truncation h^2/6 * |d^3 L / dx_i^3| plus rounding ~ eps64 * sum|w f| / h.
// With h = 1e-4 * max(1, |x_i|), O(1) inputs and sums of at most a few thousand O(1) terms both are
// below ~1e-8 (truncation is 1e-8 times a third derivative of order one; rounding 2.2e-16 * 1e3 / 1e-4
// = 2e-9), so a correct backward agrees to ~1e-7 while a wrong term is off by O(1e-2) or more.

export type Forward = (inputs: Float64Array[]) => Float64Array[];

/** Estimated gradient of sum_o <w[o], f(inputs)[o]> with respect to inputs[which]. */
export function finiteDifferenceVjp(f: Forward, inputs: readonly Float64Array[], w: readonly ArrayLike<number>[], which: number, relStep = 1e-4): Float64Array {
  const xs = inputs.map((a) => Float64Array.from(a));
  const x = xs[which]!;
  const loss = () => {
    const outs = f(xs);
    let s = 0;
    outs.forEach((o, k) => { for (let i = 0; i < o.length; i++) s += w[k]![i]! * o[i]!; });
    return s;
  };
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i]!;
    const h = relStep * Math.max(1, Math.abs(x0));
    x[i] = x0 + h;
    const lp = loss();
    x[i] = x0 - h;
    const lm = loss();
    x[i] = x0;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

/** Largest |a_i - b_i| / (atol + rtol |b_i|); <= 1 passes. NaN gives Infinity. */
export function worstRatio(a: ArrayLike<number>, b: ArrayLike<number>, atol: number, rtol: number): { ratio: number; index: number } {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let ratio = 0, index = -1;
  for (let i = 0; i < a.length; i++) {
    const r = Math.abs(a[i]! - b[i]!) / (atol + rtol * Math.abs(b[i]!));
    const rr = Number.isNaN(r) ? Infinity : r;
    if (rr > ratio) { ratio = rr; index = i; }
  }
  return { ratio, index };
}
