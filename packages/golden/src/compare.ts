// Comparison of produced values against references: max abs error, relative L2 error, NaN never passes.

export interface Comparison {
  maxAbs: number;
  relL2: number;
  /** First mismatching flat indices (|got - ref| > atol + rtol*|ref| or NaN), with values. */
  firstBad: { index: number; got: number; ref: number }[];
  nanCount: number;
}

export function compareArrays(got: Float32Array, ref: Float32Array, atol: number, rtol = 0, maxReport = 5): Comparison {
  let maxAbs = 0, num = 0, den = 0, nanCount = 0;
  const firstBad: Comparison['firstBad'] = [];
  for (let i = 0; i < ref.length; i++) {
    const g = got[i]!, r = ref[i]!;
    const d = Math.abs(g - r);
    if (Number.isNaN(g) !== Number.isNaN(r) || (Number.isNaN(d) && !(Number.isNaN(g) && Number.isNaN(r)))) nanCount++;
    if (!(d <= atol + rtol * Math.abs(r)) && !(Number.isNaN(g) && Number.isNaN(r)) && !(g === r)) {
      if (firstBad.length < maxReport) firstBad.push({ index: i, got: g, ref: r });
    }
    if (d > maxAbs) maxAbs = d;
    if (Number.isFinite(d)) num += d * d;
    if (Number.isFinite(r)) den += r * r;
  }
  const relL2 = den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
  return { maxAbs: nanCount ? NaN : maxAbs, relL2: nanCount ? NaN : relL2, firstBad, nanCount };
}

/** Unravel a flat row-major index into a multi-index for messages. */
export function unravel(index: number, shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    out[d] = index % shape[d]!;
    index = Math.floor(index / shape[d]!);
  }
  return out;
}
