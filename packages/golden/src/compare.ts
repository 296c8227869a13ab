// Comparison of produced values against references: max abs error, relative L2 error. NaN never
// passes: a NaN on either side is a mismatch (NaN against NaN too: a reference holding NaN is a broken
// case), and so is an infinity unless both sides hold the same one (then the difference is not NaN).

export interface Comparison {
  maxAbs: number;
  relL2: number;
  /** First mismatching flat indices (|got - ref| > atol + rtol*|ref|, or a NaN / infinity mismatch), with values. */
  firstBad: { index: number; got: number; ref: number }[];
  /** Elements whose difference is NaN: a NaN on either side, or unequal infinities. */
  nanCount: number;
}

export function compareArrays(got: Float32Array, ref: Float32Array, atol: number, rtol = 0, maxReport = 5): Comparison {
  if (got.length !== ref.length) throw new Error(`compareArrays: ${got.length} values produced, ${ref.length} expected`);
  let maxAbs = 0, num = 0, den = 0, nanCount = 0;
  const firstBad: Comparison['firstBad'] = [];
  for (let i = 0; i < ref.length; i++) {
    const g = got[i]!, r = ref[i]!;
    if (g === r) { if (Number.isFinite(r)) den += r * r; continue; } // exact (equal infinities included)
    const d = Math.abs(g - r);
    if (Number.isNaN(d)) nanCount++;
    if (!(d <= atol + rtol * Math.abs(r)) && firstBad.length < maxReport) firstBad.push({ index: i, got: g, ref: r });
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
