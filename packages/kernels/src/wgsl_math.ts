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

/**
 * WGSL defining `fn <name>(v: T, tid: u32) -> T`: the sum of v over the workgroup's WG threads, returned
 * to every thread, and the workgroup array it works in (`<name>Red`, WG + 1 slots, declared here so its
 * size cannot be wrong). Needs `const WG` (a power of two >= 2) and a call in uniform control flow.
 *
 * The tree is in place (step `stride`: thread t < stride adds slot t + stride into its own slot t, so no
 * slot is read by one thread and written by another between two barriers), and the last pair sum goes to
 * the extra slot [WG], which every thread then reads. WHY the extra slot: the next call's first store
 * (`red[tid] = v`, all of [0, WG)) must not touch the slot the threads read the total from.
 * The earlier form read red[0] and relied on a trailing workgroupBarrier to keep the next call's
 * red[0] = v' away from that read. On Dawn's OpenGL ES backend (Mesa llvmpipe) that gave wrong
 * statistics: Tint lowers workgroupBarrier to GLSL barrier(), which in GLSL ES orders execution but not
 * shared-memory accesses (GLSL ES 3.20, "barrier() does not order memory transactions"), and the
 * load of red[0] took effect after the barrier. llvmpipe runs a workgroup as 8-lane fibers that switch
 * at barriers, so fiber 0 ran on into the next call and stored its new partial in red[0] before threads
 * 8.. read the "total" (measured: those threads got thread 0's next partial; a doubled trailing barrier
 * changed nothing; a plain two-half ping-pong tree still failed whenever log2(WG) is even, as its total
 * then lands in the half the next call stores to). Slot [WG] is next written in a later call's last
 * step, log2(WG) barriers after that call's first store, which comes after the read in every thread's
 * program (test/norm_llvmpipe.test.ts checks every thread's copy of chained sums on llvmpipe).
 * The summation order is unchanged (the same tree), so results are bit-identical elsewhere.
 */
export function workgroupSumWgsl(name = 'workgroupSum', type = 'f32'): string {
  const red = `${name}Red`;
  return /* wgsl */ `
var<workgroup> ${red}: array<${type}, WG + 1u>;
fn ${name}(v: ${type}, tid: u32) -> ${type} {
  ${red}[tid] = v;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 1u; stride = stride / 2u) {
    if (tid < stride) { ${red}[tid] = ${red}[tid] + ${red}[tid + stride]; }
    workgroupBarrier();
  }
  if (tid == 0u) { ${red}[WG] = ${red}[0] + ${red}[1]; }
  workgroupBarrier();
  return ${red}[WG];
}`;
}

/**
 * fn workgroupSum(v: f32, tid: u32) -> f32 over the workgroup (every thread gets the total), with its own
 * workgroup array (see workgroupSumWgsl); needs `const WG`. A module-level `red` array the caller may
 * still declare for it (the old contract) is simply unused.
 */
export const WORKGROUP_SUM = workgroupSumWgsl();

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
