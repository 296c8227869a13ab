// WGSL helpers shared by the cross-normalisation forward (cross_norm.ts) and its fused backward
// (cross_norm_backward_wgsl.ts): torch's adaptive_avg_pool2d bins and the pooled control value. The
// control map [N', C, hc, wc] is pooled to the feature size [h, w] when they differ (spec section 2.7).

/** Adaptive-pool bin of output index i (of outSize) over inSize inputs: [start, end), torch's rule. */
export const ADAPTIVE_POOL_BINS = /* wgsl */ `
fn binStart(i: u32, inSize: u32, outSize: u32) -> u32 { return (i * inSize) / outSize; }
fn binEnd(i: u32, inSize: u32, outSize: u32) -> u32 { return ((i + 1u) * inSize + outSize - 1u) / outSize; }`;

/**
 * pooled(ncIdx, e): mean of control sample ncIdx over the bin of pooled element e = (ch, i, j) of
 * [C, h, w]. Needs the control bound as `Ctl` and uniforms `u` with c, h, w, hc, wc.
 */
export const POOLED_CONTROL = /* wgsl */ `${ADAPTIVE_POOL_BINS}
fn pooled(ncIdx: u32, e: u32) -> f32 {
  let j = e % u.w;
  let i = (e / u.w) % u.h;
  let ch = e / (u.w * u.h);
  let y0 = binStart(i, u.hc, u.h); let y1 = binEnd(i, u.hc, u.h);
  let x0 = binStart(j, u.wc, u.w); let x1 = binEnd(j, u.wc, u.w);
  let base = (ncIdx * u.c + ch) * u.hc;
  var s = 0.0;
  for (var y = y0; y < y1; y++) {
    let row = (base + y) * u.wc;
    for (var x = x0; x < x1; x++) { s += Ctl[row + x]; }
  }
  return s / f32((y1 - y0) * (x1 - x0));
}
`;
