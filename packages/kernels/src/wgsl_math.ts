// WGSL math snippets shared by kernel families: an f32-accurate erf and exact GELU (WGSL has no erf), an overflow-safe
// tanh, an accurately range-reduced sin/cos, a workgroup tree sum, and the activation functions of the
// Backend's epilogues.
// Each snippet is a WGSL source string that defines one or more functions; a kernel concatenates the
// snippets it needs into its module. Every definition agrees with the CPU reference's `applyUnary`
// (packages/tensor/src/cpu/cpu_backend.ts) to f32 accuracy.

import type { Activation } from '@cnx/tensor';

/**
 * fn erf_f32(x: f32) -> f32 and fn gelu_erf(x: f32) -> f32 (the exact GELU, torch's default), from
 * W. J. Cody's rational Chebyshev approximations (Math. Comp. 23, 1969) evaluated in f32: the same
 * coefficients as the CPU reference's cpu/erf.ts, relative error a few f32 ulp. gelu_erf uses erfc
 * directly for x < 0 (0.5 x erfc(-x/sqrt2)) so the tail keeps its relative accuracy instead of
 * cancelling in 1 + erf. erfc_pos(y) (y > 0.46875) and erf_small(x) (|x| <= 0.46875) are helpers.
 */
export const ERF_WGSL = /* wgsl */ `
fn erfc_pos(y: f32) -> f32 {
  // erfc(y) for y > 0.46875
  var r: f32;
  if (y <= 4.0) {
    var num = 2.15311535474403846e-8 * y;
    var den = y;
    num = (num + 0.564188496988670089) * y; den = (den + 15.7449261107098347) * y;
    num = (num + 8.88314979438837594) * y;  den = (den + 117.693950891312499) * y;
    num = (num + 66.1191906371416295) * y;  den = (den + 537.181101862009858) * y;
    num = (num + 298.635138197400131) * y;  den = (den + 1621.38957456669019) * y;
    num = (num + 881.95222124176909) * y;   den = (den + 3290.79923573345963) * y;
    num = (num + 1712.04761263407058) * y;  den = (den + 4362.61909014324716) * y;
    num = (num + 2051.07837782607147) * y;  den = (den + 3439.36767414372164) * y;
    r = (num + 1230.33935479799725) / (den + 1230.33935480374942);
  } else {
    if (y >= 10.0) { return 0.0; } // erfc(10) = 2e-45: below the f32 range
    let z = 1.0 / (y * y);
    var num = 0.0163153871373020978 * z;
    var den = z;
    num = (num + 0.305326634961232344) * z;  den = (den + 2.56852019228982242) * z;
    num = (num + 0.360344899949804439) * z;  den = (den + 1.87295284992346725) * z;
    num = (num + 0.125781726111229246) * z;  den = (den + 0.527905102951428412) * z;
    num = (num + 0.0160837851487422766) * z; den = (den + 0.0605183413124413191) * z;
    r = (z * (num + 6.58749161529837803e-4)) / (den + 0.00233520497626869185);
    r = (0.56418958354775628695 - r) / y;
  }
  // exp(-y^2) split as exp(-ysq^2) exp(-(y-ysq)(y+ysq)) with ysq = y rounded down to 1/16 (Cody), so
  // that the large exponent is exact.
  let ysq = trunc(y * 16.0) / 16.0;
  let del = (y - ysq) * (y + ysq);
  return exp(-ysq * ysq) * exp(-del) * r;
}
fn erf_small(x: f32) -> f32 {
  // |x| <= 0.46875
  let z = x * x;
  var num = 0.185777706184603153 * z;
  var den = z;
  num = (num + 3.1611237438705656) * z;  den = (den + 23.6012909523441209) * z;
  num = (num + 113.864154151050156) * z; den = (den + 244.024637934444173) * z;
  num = (num + 377.485237685302021) * z; den = (den + 1282.61652607737228) * z;
  return x * (num + 3209.37758913846947) / (den + 2844.23683343917062);
}
fn erf_f32(x: f32) -> f32 {
  let y = abs(x);
  if (y <= 0.46875) { return erf_small(x); }
  let c = erfc_pos(y);
  return select(c - 1.0, 1.0 - c, x > 0.0);
}
fn gelu_erf(x: f32) -> f32 {
  let z = x * 0.70710678118654752;
  if (abs(z) <= 0.46875) { return 0.5 * x * (1.0 + erf_small(z)); }
  if (x < 0.0) { return 0.5 * x * erfc_pos(-z); }
  return 0.5 * x * (2.0 - erfc_pos(z));
}
`;

/**
 * fn tanh_f32(x: f32) -> f32 that cannot overflow: WGSL's tanh may be lowered to sinh/cosh, which
 * give inf/inf = NaN for |x| > ~89. 1 - 2/(exp(2|x|) + 1) saturates to 1 instead; its absolute error
 * is a few ulp of 1, which is what gelu_tanh needs (it multiplies by x/2).
 */
export const TANH_WGSL = /* wgsl */ `
fn tanh_f32(x: f32) -> f32 {
  let e = exp(2.0 * abs(x));
  let t = 1.0 - 2.0 / (e + 1.0);
  return select(t, -t, x < 0.0);
}
`;

/**
 * fn sincos_f32(x: f32) -> vec2<f32> = (sin x, cos x) with about 1e-7 absolute error for |x| up to
 * 8192. WGSL only promises 2^-11 absolute error for sin/cos on [-pi, pi] (and nothing outside), and
 * the timestep embedding needs arguments up to ~1000 rad. Cephes' sinf/cosf method (S. L. Moshier):
 * reduction to an octant with pi/4 split into three f32 parts (DP1 has 8 significant bits, so j*DP1 is
 * exact), then the minimax polynomials of sin and cos on [-pi/4, pi/4].
 */
export const SINCOS_WGSL = /* wgsl */ `
fn sincos_f32(xx: f32) -> vec2<f32> {
  let x = abs(xx);
  var j = u32(x * 1.27323954473516);   // floor(x / (pi/4))
  j = j + (j & 1u);                      // map to the even octant: the remainder lies in [-pi/4, pi/4]
  let y = f32(j);
  let r = ((x - y * 0.78515625) - y * 2.4187564849853515625e-4) - y * 3.77489497744594108e-8;
  let z = r * r;
  let ps = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
  let pc = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
  var sc: vec2<f32>;
  switch (j & 7u) {
    case 0u: { sc = vec2<f32>(ps, pc); }
    case 2u: { sc = vec2<f32>(pc, -ps); }
    case 4u: { sc = vec2<f32>(-ps, -pc); }
    default: { sc = vec2<f32>(-pc, ps); }
  }
  return vec2<f32>(select(sc.x, -sc.x, xx < 0.0), sc.y);
}
`;

/** Tree sum over the workgroup (every thread gets the total); needs `var<workgroup> red: array<f32, WG>`. */
export const WORKGROUP_SUM = /* wgsl */ `
fn workgroupSum(v: f32, tid: u32) -> f32 {
  red[tid] = v;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (tid < stride) { red[tid] = red[tid] + red[tid + stride]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}`;


/**
 * WGSL source defining `fn <name>(x: f32) -> f32` for an epilogue activation, with the helper
 * functions it needs (so include it once per module). Formulas as in the CPU reference's applyUnary:
 * gelu is exact (erf), gelu_tanh the tanh approximation, quick_gelu x*sigmoid(1.702x) (CLIP).
 */
export function activationWgsl(act: Activation, name = 'activation'): string {
  switch (act) {
    case 'none': return `fn ${name}(x: f32) -> f32 { return x; }\n`;
    // select keeps NaN -> 0 as the reference's `x > 0 ? x : 0` does (max() is unspecified for NaN).
    case 'relu': return `fn ${name}(x: f32) -> f32 { return select(0.0, x, x > 0.0); }\n`;
    case 'silu': return `fn ${name}(x: f32) -> f32 { return x / (1.0 + exp(-x)); }\n`;
    case 'quick_gelu': return `fn ${name}(x: f32) -> f32 { return x / (1.0 + exp(-1.702 * x)); }\n`;
    case 'gelu': return `${ERF_WGSL}\nfn ${name}(x: f32) -> f32 { return gelu_erf(x); }\n`;
    case 'gelu_tanh':
      return `${TANH_WGSL}\nfn ${name}(x: f32) -> f32 {\n  return 0.5 * x * (1.0 + tanh_f32(0.7978845608028654 * (x + 0.044715 * x * x * x)));\n}\n`;
  }
}
