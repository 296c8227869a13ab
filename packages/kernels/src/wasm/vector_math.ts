// Transcendental functions on f32x4 lanes for the WebAssembly kernels: exp, sigmoid, tanh, erf and the
// activations built on them. WebAssembly has no vector exp, so these are the classic polynomial forms:
//  - exp: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, then Cephes' degree-6 expf
//    polynomial (S. Moshier, Cephes Math Library, expf.c); ~1-2 ulp in f32. x > 88.72 gives +inf,
//    x < -87.33 gives 0 (denormal results flushed: absolute error < 1.2e-38), NaN stays NaN.
//  - erfc for z >= 0: the Chebyshev-fitted erfcc of Numerical Recipes in C (2nd ed., section 6.2),
//    t = 1/(1 + z/2), erfc(z) = t exp(-z^2 - 1.26551223 + t P(t)), fractional error < 1.2e-7 everywhere.
//    GELU is 0.5 x erfc(|z|) for x < 0 and 0.5 x (2 - erfc(z)) for x >= 0 (z = x/sqrt 2), so neither
//    branch cancels: relative accuracy holds in the negative tail too, where an erf-based 1 + erf(z)
//    loses it (the elementwise test's dense [-12, 12] grid checks this).
//  - tanh(x) = 2 sigmoid(2x) - 1, so gelu_tanh(x) = x * sigmoid(2u) with u = sqrt(2/pi)(x + 0.044715x^3).
// Errors of these are a few f32 ulps of the result or ~1e-7 absolute, inside the f32 test tolerances.
//
// Each helper takes the input as code producing a v128 and returns code leaving the result on the
// stack; it uses scratch locals of the function it is emitted into (allocated once per function).

import {
  ValType, f32x4, get, i32, i32x4, set, tee, v128, type Code, type FunctionBuilder,
} from './wasm_binary.js';
import type { Activation, UnaryOp } from '@cnx/tensor';

const LOG2E = 1.44269504088896341;
const LN2_HI = 0.693359375;
const LN2_LO = -2.12194440e-4;
const EXP_P = [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1];
/** Numerical Recipes' erfcc coefficients, highest power of t last. */
const ERFC_C = [-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277];

const splat = (v: number): Code => v128.const_f32x4(v);

export class VectorMath {
  private readonly t: number[];
  constructor(f: FunctionBuilder) {
    this.t = f.locals(ValType.v128, 6);
  }

  /** e^x, lanewise, NaN lanes give 0 (see expNaN). Uses scratch locals 0..2. */
  exp(x: Code): Code {
    const [tx, tn, tp] = this.t as [number, number, number];
    const poly = EXP_P.slice(1).reduce<Code>((acc, c) => f32x4.add(f32x4.mul(acc, get(tp)), splat(c)), splat(EXP_P[0]!));
    return [
      ...set(tx, x),
      // n = round(x log2 e) on the clamped argument
      ...set(tn, f32x4.nearest(f32x4.mul(f32x4.max(f32x4.min(get(tx), splat(88.72283)), splat(-87.33654)), splat(LOG2E)))),
      // r = x - n ln2 (two-part constant), kept in tp
      ...set(tp, f32x4.sub(f32x4.sub(get(tx), f32x4.mul(get(tn), splat(LN2_HI))), f32x4.mul(get(tn), splat(LN2_LO)))),
      // p(r) = poly(r) r^2 + r + 1, then scale by 2^n through the exponent bits
      ...v128.bitselect(
        splat(Infinity),
        v128.and(
          f32x4.mul(
            f32x4.add(f32x4.add(f32x4.mul(poly, f32x4.mul(get(tp), get(tp))), get(tp)), splat(1)),
            i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(get(tn)), v128.const_i32x4(127)), i32.const(23)),
          ),
          f32x4.ge(get(tx), splat(-87.33654)), // all-ones where in range: below it the result is 0
        ),
        f32x4.gt(get(tx), splat(88.72283)),
      ),
    ];
  }

  /** exp with NaN passed through (x != x lanes return x). Uses scratch locals 0..3. */
  expNaN(x: Code): Code {
    const t3 = this.t[3]!;
    return v128.bitselect(get(t3), this.exp(tee(t3, x)), f32x4.ne(get(t3), get(t3)));
  }

  /** 1 / (1 + e^(-k x)) * x^withX; sigmoid for k = 1. Uses scratch locals 0..4. */
  private xSigmoid(x: Code, k: number, timesX: boolean): Code {
    const t4 = this.t[4]!;
    const den = f32x4.add(splat(1), this.expNaN(f32x4.mul(get(t4), splat(-k))));
    return [...set(t4, x), ...f32x4.div(timesX ? get(t4) : splat(1), den)];
  }

  sigmoid(x: Code): Code { return this.xSigmoid(x, 1, false); }
  silu(x: Code): Code { return this.xSigmoid(x, 1, true); }
  quickGelu(x: Code): Code { return this.xSigmoid(x, 1.702, true); }

  /** tanh(x) = 2 sigmoid(2x) - 1. */
  tanh(x: Code): Code {
    return f32x4.sub(f32x4.mul(this.xSigmoid(x, 2, false), splat(2)), splat(1));
  }

  /** x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)) = 0.5 x (1 + tanh(...)). Uses locals 0..5. */
  geluTanh(x: Code): Code {
    const [t4, t5] = [this.t[4]!, this.t[5]!];
    const c = Math.sqrt(2 / Math.PI) * 2;
    return [
      ...set(t5, x),
      ...set(t4, f32x4.mul(f32x4.add(get(t5), f32x4.mul(splat(0.044715), f32x4.mul(get(t5), f32x4.mul(get(t5), get(t5))))), splat(-c))),
      ...f32x4.div(get(t5), f32x4.add(splat(1), this.expNaN(get(t4)))),
    ];
  }

  /** 0.5 x (1 + erf(x / sqrt 2)) through erfc (see the header). Uses locals 0..5. */
  gelu(x: Code): Code {
    const [t4, t5] = [this.t[4]!, this.t[5]!];
    // t4 = z = |x| / sqrt 2, then t = 1 / (1 + z/2) in t3
    const t3 = this.t[3]!;
    const poly = ERFC_C.slice(0, -1).reverse().reduce<Code>(
      (acc, c) => f32x4.add(f32x4.mul(acc, get(t3)), splat(c)), splat(ERFC_C[ERFC_C.length - 1]!));
    return [
      ...set(t5, x),
      ...set(t4, f32x4.mul(f32x4.abs(get(t5)), splat(Math.SQRT1_2))),
      ...set(t3, f32x4.div(splat(1), f32x4.add(splat(1), f32x4.mul(splat(0.5), get(t4))))),
      // erfc(z) = t exp(-z^2 + P(t)) -> t4
      ...set(t4, f32x4.mul(get(t3), this.exp(f32x4.sub(poly, f32x4.mul(get(t4), get(t4)))))),
      // 0.5 x (x < 0 ? erfc : 2 - erfc)
      ...f32x4.mul(f32x4.mul(splat(0.5), get(t5)),
        v128.bitselect(get(t4), f32x4.sub(splat(2), get(t4)), f32x4.lt(get(t5), splat(0)))),
    ];
  }

  /** An epilogue activation. */
  activation(act: Activation, x: Code): Code {
    switch (act) {
      case 'none': return x;
      case 'relu': return f32x4.max(x, splat(0));
      case 'silu': return this.silu(x);
      case 'gelu': return this.gelu(x);
      case 'gelu_tanh': return this.geluTanh(x);
      case 'quick_gelu': return this.quickGelu(x);
    }
  }

  /** A unary op, or undefined when it has no vector form here (log, sin, cos run in JavaScript). */
  unary(op: UnaryOp, x: Code): Code | undefined {
    switch (op) {
      case 'neg': return f32x4.neg(x);
      case 'abs': return f32x4.abs(x);
      case 'exp': return this.expNaN(x);
      case 'sqrt': return f32x4.sqrt(x);
      case 'rsqrt': return f32x4.div(splat(1), f32x4.sqrt(x));
      case 'recip': return f32x4.div(splat(1), x);
      case 'square': { const t = this.t[5]!; return [...set(t, x), ...f32x4.mul(get(t), get(t))]; }
      case 'tanh': return this.tanh(x);
      case 'sigmoid': return this.sigmoid(x);
      case 'relu': return f32x4.max(x, splat(0));
      case 'silu': return this.silu(x);
      case 'gelu': return this.gelu(x);
      case 'gelu_tanh': return this.geluTanh(x);
      case 'quick_gelu': return this.quickGelu(x);
      default: return undefined;
    }
  }
}
