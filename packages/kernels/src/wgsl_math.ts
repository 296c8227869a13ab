// WGSL math snippets shared by kernel families: an f32-accurate erf (WGSL has none), an overflow-safe
// tanh, an accurately range-reduced sin/cos, and the activation functions of the Backend's epilogues.
// Each snippet is a WGSL source string that defines one or more functions; a kernel concatenates the
// snippets it needs into its module. Every definition agrees with the CPU reference's `applyUnary`
// (packages/tensor/src/cpu/cpu_backend.ts) to f32 accuracy.

import type { Activation } from '@cnx/tensor';

/**
 * fn erf_f32(a: f32) -> f32, max error about 1 ulp over the real line. Minimax approximation by
 * N. Juffa (published as an erff() implementation, Stack Overflow, 2015; also used by Apple MLX's
 * Metal kernels): an odd polynomial for |a| <= 0.927734375 and 1 - exp(poly(|a|)) beyond, so the
 * tail keeps full absolute accuracy. fma() keeps the Horner steps as accurate as the reference.
 */
export const ERF_WGSL = /* wgsl */ `
fn erf_f32(a: f32) -> f32 {
  let t = abs(a);
  let s = a * a;
  if (t > 0.927734375) {
    var r = fma(-1.72853470e-5, t, 3.83197126e-4);
    let u = fma(-3.88396438e-3, t, 2.42546219e-2);
    r = fma(r, s, u);
    r = fma(r, t, -1.06777877e-1);
    r = fma(r, t, -6.34846687e-1);
    r = fma(r, t, -1.28717512e-1);
    r = fma(r, t, -t);
    let e = 1.0 - exp(r);
    return select(e, -e, a < 0.0);
  }
  var r = -5.96761703e-4;
  r = fma(r, s, 4.99119423e-3);
  r = fma(r, s, -2.67681349e-2);
  r = fma(r, s, 1.12819925e-1);
  r = fma(r, s, -3.76125336e-1);
  r = fma(r, s, 1.28379166e-1);
  return fma(r, a, a);
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
    case 'gelu': return `${ERF_WGSL}\nfn ${name}(x: f32) -> f32 { return 0.5 * x * (1.0 + erf_f32(x * 0.7071067811865476)); }\n`;
    case 'gelu_tanh':
      return `${TANH_WGSL}\nfn ${name}(x: f32) -> f32 {\n  return 0.5 * x * (1.0 + tanh_f32(0.7978845608028654 * (x + 0.044715 * x * x * x)));\n}\n`;
  }
}
