// Normalisation kernels on contiguous f32 data: group norm (+ fused SiLU), layer norm, softmax over the
// last dim. Statistics accumulate in float64 lanes (f64x2.promote_low_f32x4), two passes (mean, then
// the sum of squared deviations), as the reference does (packages/tensor/src/cpu/cpu_backend.ts), so
// the only f32 error is the final rounding of each output; the passes are memory-bound, the f64 adds
// cost nothing measurable. Saved statistics (DESIGN.md, "saved statistics"): group norm writes mean
// and rstd [N, G], layer norm [rows], when their pointers are non-zero.
//
//  - groupnorm_<plain|silu>(args, t): task t = (n, g); x [N, C, S] with S the spatial size.
//  - layernorm(args, t): rows [t*block, t*block + block) of x [rows, D]; weight and bias pointers must
//    be valid (the caller passes ones / zeros for an absent affine).
//  - softmax(args, t): rows as layernorm; y = exp(x - max) / sum.

import { argF } from './emit_util.js';
import { VectorMath } from './vector_math.js';
import {
  ValType, f32, f32x4, f64, f64x2, forRange, get, i32, if_, set, v128, type Code, type FunctionBuilder, type ModuleBuilder,
} from './wasm_binary.js';

export const GROUPNORM_ARGS = { x: 0, out: 1, C: 2, S: 3, G: 4, weight: 5, bias: 6, mean: 7, rstd: 8, eps: 9 } as const;
export const LAYERNORM_ARGS = { x: 0, out: 1, rows: 2, D: 3, weight: 4, bias: 5, mean: 6, rstd: 7, eps: 8, block: 9 } as const;
export const SOFTMAX_ARGS = { x: 0, out: 1, rows: 2, D: 3, block: 4 } as const;

const HIGH_TO_LOW = [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7];

/**
 * Code computing (mean, sum of squared deviations) of len floats at ptr into f64 locals mu and ss,
 * plus the number of elements as f64 in nf.
 */
function emitStats(f: FunctionBuilder, ptr: number, len: number, mu: number, ss: number): Code[] {
  const [i, e4] = f.locals(ValType.i32, 2);
  const [acc, x, d, vm] = f.locals(ValType.v128, 4);
  const [tail] = f.locals(ValType.f64, 1);
  const lo = (v: Code): Code => f64x2.promote_low_f32x4(v);
  const hi = (v: Code): Code => f64x2.promote_low_f32x4(v128.shuffle(v, v, HIGH_TO_LOW));
  const addr = (k: Code): Code => i32.add(get(ptr), i32.shl(k, i32.const(2)));
  const hsum = (v: Code): Code => f64.add(f64x2.extract_lane(v, 0), f64x2.extract_lane(v, 1));
  return [
    set(e4, i32.and(get(len), i32.const(~3))),
    // pass 1: sum
    set(acc, f64x2.splat(f64.const(0))),
    forRange(i, i32.const(0), get(e4), 4, [
      ...set(x, v128.load(addr(get(i)))),
      ...set(acc, f64x2.add(get(acc), f64x2.add(lo(get(x)), hi(get(x))))),
    ]),
    set(tail, f64.const(0)),
    forRange(i, get(e4), get(len), 1, [set(tail, f64.add(get(tail), f64.promote_f32(f32.load(addr(get(i))))))]),
    set(mu, f64.div(f64.add(hsum(get(acc)), get(tail)), f64.convert_i32_s(get(len)))),
    // pass 2: sum of squared deviations
    set(vm, f64x2.splat(get(mu))),
    set(acc, f64x2.splat(f64.const(0))),
    forRange(i, i32.const(0), get(e4), 4, [
      ...set(x, v128.load(addr(get(i)))),
      ...set(d, f64x2.sub(lo(get(x)), get(vm))),
      ...set(acc, f64x2.add(get(acc), f64x2.mul(get(d), get(d)))),
      ...set(d, f64x2.sub(hi(get(x)), get(vm))),
      ...set(acc, f64x2.add(get(acc), f64x2.mul(get(d), get(d)))),
    ]),
    set(tail, f64.const(0)),
    forRange(i, get(e4), get(len), 1, [
      ...set(tail, f64.add(get(tail), f64.mul(
        f64.sub(f64.promote_f32(f32.load(addr(get(i)))), get(mu)),
        f64.sub(f64.promote_f32(f32.load(addr(get(i)))), get(mu))))),
    ]),
    set(ss, f64.add(hsum(get(acc)), get(tail))),
  ];
}

/** y[i] = act(x[i] * scale + shift) for len floats (scale, shift f32 locals). */
function emitAffineRun(f: FunctionBuilder, vmath: VectorMath, src: number, dst: number, len: number, scale: number, shift: number,
  silu: boolean, perElement?: { w: number; b: number }): Code[] {
  const [i, e4] = f.locals(ValType.i32, 2);
  const [vs, vb, y] = f.locals(ValType.v128, 3);
  const addr = (base: number, k: Code): Code => i32.add(get(base), i32.shl(k, i32.const(2)));
  const act = (v: Code): Code => (silu ? vmath.silu(v) : v);
  // Per-element weight/bias (layer norm; both pointers valid, the caller substitutes ones / zeros):
  // y = (x - mu) * rstd * w[j] + b[j] = x*(rstd*w[j]) + (b[j] - mu*rstd*w[j]).
  const vecScale = (k: Code): Code => perElement ? f32x4.mul(get(vs), v128.load(addr(perElement.w, k))) : get(vs);
  const vecShift = (k: Code): Code => perElement
    ? f32x4.add(v128.load(addr(perElement.b, k)), f32x4.mul(get(vb), v128.load(addr(perElement.w, k))))
    : get(vb);
  return [
    set(vs, f32x4.splat(get(scale))),
    set(vb, f32x4.splat(get(shift))),
    set(e4, i32.and(get(len), i32.const(~3))),
    forRange(i, i32.const(0), get(e4), 4, [
      ...set(y, f32x4.add(f32x4.mul(v128.load(addr(src, get(i))), vecScale(get(i))), vecShift(get(i)))),
      ...v128.store(addr(dst, get(i)), act(get(y))),
    ]),
    forRange(i, get(e4), get(len), 1, [
      ...set(y, f32x4.add(f32x4.mul(f32x4.splat(f32.load(addr(src, get(i)))), scalarOf(vecScale, i)), scalarOf(vecShift, i))),
      ...f32.store(addr(dst, get(i)), f32x4.extract_lane(act(get(y)), 0)),
    ]),
  ];
}

/** The vector expression at element index local i, evaluated on a splat (lane 0 is the scalar). */
function scalarOf(vec: (k: Code) => Code, i: number): Code {
  // For per-element operands a v128.load at i reads 4 elements; only lane 0 is used by the caller.
  return vec(get(i));
}

function emitGroupNorm(m: ModuleBuilder, silu: boolean): void {
  const f = m.func(`groupnorm_${silu ? 'silu' : 'plain'}`, [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [x, out, C, S, G, weight, bias, meanP, rstdP] = f.argLocals(args, 9);
  const [Cg, g, n, start, len, c, ch, src, dst] = f.locals(ValType.i32, 9);
  const [mu, ss, rstd] = f.locals(ValType.f64, 3);
  const [scale, shift, eps] = f.locals(ValType.f32, 3);
  const vmath = new VectorMath(f);
  f.emit(
    set(eps, argF(args, GROUPNORM_ARGS.eps)),
    set(Cg, i32.div_u(get(C), get(G))),
    set(n, i32.div_u(get(t), get(G))),
    set(g, i32.rem_u(get(t), get(G))),
    set(start, i32.add(get(x), i32.shl(i32.mul(i32.add(i32.mul(get(n), get(C)), i32.mul(get(g), get(Cg))), get(S)), i32.const(2)))),
    set(len, i32.mul(get(Cg), get(S))),
    ...emitStats(f, start, len, mu, ss),
    set(rstd, f64.div(f64.const(1), f64.sqrt(f64.add(f64.div(get(ss), f64.convert_i32_s(get(len))), f64.promote_f32(get(eps)))))),
    if_(get(meanP), [
      f32.store(i32.add(get(meanP), i32.shl(get(t), i32.const(2))), f32.demote_f64(get(mu))),
      f32.store(i32.add(get(rstdP), i32.shl(get(t), i32.const(2))), f32.demote_f64(get(rstd))),
    ]),
    forRange(c, i32.const(0), get(Cg), 1, [
      ...set(ch, i32.add(i32.mul(get(g), get(Cg)), get(c))),
      // scale = rstd * w[ch], shift = b[ch] - mu * scale (computed in f64, rounded once)
      ...set(scale, f32.demote_f64(f64.mul(get(rstd), f64.promote_f32(
        selectF(get(weight), f32.load(i32.add(get(weight), i32.shl(get(ch), i32.const(2)))), f32.const(1)))))),
      ...set(shift, f32.demote_f64(f64.sub(
        f64.promote_f32(selectF(get(bias), f32.load(i32.add(get(bias), i32.shl(get(ch), i32.const(2)))), f32.const(0))),
        f64.mul(get(mu), f64.mul(get(rstd), f64.promote_f32(selectF(get(weight), f32.load(i32.add(get(weight), i32.shl(get(ch), i32.const(2)))), f32.const(1)))))))),
      ...set(src, i32.add(get(start), i32.shl(i32.mul(get(c), get(S)), i32.const(2)))),
      ...set(dst, i32.add(get(src), i32.sub(get(out), get(x)))),
      ...emitAffineRun(f, vmath, src, dst, S, scale, shift, silu),
    ]),
  );
}

/** cond ? a : b for f32, where `a` may only be evaluated when cond holds (it may read address 0). */
function selectF(cond: Code, a: Code, b: Code): Code {
  // Reading address 0 is always in bounds, so a plain select is safe; pointers are 0 when absent.
  return [...a, ...b, ...cond, 0x1b];
}

function emitLayerNorm(m: ModuleBuilder): void {
  const f = m.func('layernorm', [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [x, out, rows, D, weight, bias, meanP, rstdP] = f.argLocals(args, 8);
  const [block, r, rEnd, src, dst] = f.locals(ValType.i32, 5);
  const [mu, ss, rstd] = f.locals(ValType.f64, 3);
  const [scale, shift, eps] = f.locals(ValType.f32, 3);
  const vmath = new VectorMath(f);
  f.emit(
    set(eps, argF(args, LAYERNORM_ARGS.eps)),
    set(block, i32.load(get(args), 4 * LAYERNORM_ARGS.block)),
    set(r, i32.mul(get(t), get(block))),
    set(rEnd, i32.add(get(r), get(block))),
    if_(i32.gt_s(get(rEnd), get(rows)), [set(rEnd, get(rows))]),
    forRange(r, get(r), get(rEnd), 1, [
      ...set(src, i32.add(get(x), i32.shl(i32.mul(get(r), get(D)), i32.const(2)))),
      ...set(dst, i32.add(get(out), i32.shl(i32.mul(get(r), get(D)), i32.const(2)))),
      ...emitStats(f, src, D, mu, ss),
      ...set(rstd, f64.div(f64.const(1), f64.sqrt(f64.add(f64.div(get(ss), f64.convert_i32_s(get(D))), f64.promote_f32(get(eps)))))),
      ...if_(get(meanP), [
        f32.store(i32.add(get(meanP), i32.shl(get(r), i32.const(2))), f32.demote_f64(get(mu))),
        f32.store(i32.add(get(rstdP), i32.shl(get(r), i32.const(2))), f32.demote_f64(get(rstd))),
      ]),
      // y = x*(rstd*w) + (b - mu*rstd*w): scale = rstd, shift = -mu*rstd, then per element w, b
      ...set(scale, f32.demote_f64(get(rstd))),
      ...set(shift, f32.demote_f64(f64.neg(f64.mul(get(mu), get(rstd))))),
      ...emitAffineRun(f, vmath, src, dst, D, scale, shift, false, { w: weight, b: bias }),
    ]),
  );
}

function emitSoftmax(m: ModuleBuilder): void {
  const f = m.func('softmax', [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [x, out, rows, D, block] = f.argLocals(args, 5);
  const [r, rEnd, src, dst, i, e4] = f.locals(ValType.i32, 6);
  const [vmax, e, acc] = f.locals(ValType.v128, 3);
  const [mx, inv] = f.locals(ValType.f32, 2);
  const [sum] = f.locals(ValType.f64, 1);
  const vmath = new VectorMath(f);
  const addr = (base: number, k: Code): Code => i32.add(get(base), i32.shl(k, i32.const(2)));
  const lo = (v: Code): Code => f64x2.promote_low_f32x4(v);
  const hi = (v: Code): Code => f64x2.promote_low_f32x4(v128.shuffle(v, v, HIGH_TO_LOW));
  f.emit(
    set(r, i32.mul(get(t), get(block))),
    set(rEnd, i32.add(get(r), get(block))),
    if_(i32.gt_s(get(rEnd), get(rows)), [set(rEnd, get(rows))]),
    set(e4, i32.and(get(D), i32.const(~3))),
    forRange(r, get(r), get(rEnd), 1, [
      ...set(src, i32.add(get(x), i32.shl(i32.mul(get(r), get(D)), i32.const(2)))),
      ...set(dst, i32.add(get(out), i32.shl(i32.mul(get(r), get(D)), i32.const(2)))),
      ...set(vmax, v128.const_f32x4(-Infinity)),
      ...forRange(i, i32.const(0), get(e4), 4, [set(vmax, f32x4.max(get(vmax), v128.load(addr(src, get(i)))))]),
      ...forRange(i, get(e4), get(D), 1, [set(vmax, f32x4.max(get(vmax), f32x4.splat(f32.load(addr(src, get(i))))))]),
      ...set(mx, f32.max(f32.max(f32x4.extract_lane(get(vmax), 0), f32x4.extract_lane(get(vmax), 1)),
        f32.max(f32x4.extract_lane(get(vmax), 2), f32x4.extract_lane(get(vmax), 3)))),
      ...set(vmax, f32x4.splat(get(mx))),
      ...set(acc, f64x2.splat(f64.const(0))),
      ...forRange(i, i32.const(0), get(e4), 4, [
        ...set(e, vmath.expNaN(f32x4.sub(v128.load(addr(src, get(i))), get(vmax)))),
        ...v128.store(addr(dst, get(i)), get(e)),
        ...set(acc, f64x2.add(get(acc), f64x2.add(lo(get(e)), hi(get(e))))),
      ]),
      ...set(sum, f64.add(f64x2.extract_lane(get(acc), 0), f64x2.extract_lane(get(acc), 1))),
      ...forRange(i, get(e4), get(D), 1, [
        ...set(e, vmath.expNaN(f32x4.sub(f32x4.splat(f32.load(addr(src, get(i)))), get(vmax)))),
        ...f32.store(addr(dst, get(i)), f32x4.extract_lane(get(e), 0)),
        ...set(sum, f64.add(get(sum), f64.promote_f32(f32x4.extract_lane(get(e), 0)))),
      ]),
      ...set(inv, f32.demote_f64(f64.div(f64.const(1), get(sum)))),
      ...set(vmax, f32x4.splat(get(inv))),
      ...forRange(i, i32.const(0), get(e4), 4, [v128.store(addr(dst, get(i)), f32x4.mul(v128.load(addr(dst, get(i))), get(vmax)))]),
      ...forRange(i, get(e4), get(D), 1, [f32.store(addr(dst, get(i)), f32.mul(f32.load(addr(dst, get(i))), get(inv)))]),
    ]),
  );
}

export function emitNormKernels(m: ModuleBuilder): void {
  emitGroupNorm(m, false);
  emitGroupNorm(m, true);
  emitLayerNorm(m);
  emitSoftmax(m);
}
