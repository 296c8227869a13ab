// Central finite differences of a float64 forward, for gradient checks of the CPU backward references.
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
