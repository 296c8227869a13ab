// GEMM epilogue: out = act(alpha * C + bias) + residual, mapping the GEMM's row-major scratch C
// (gemm_kernels.ts; R rows, Nc columns, ldc bytes per row) to the op's output layout:
//  - 'seg' layout: the columns of C form segments of S columns (a conv's samples, S = Ho*Wo; a plain
//    matmul has one segment, S = Nc); out[(c / S) * segStride + r * rowStride + c % S]. Vector path
//    within a segment, scalar tail.
//  - 'trans' layout: out[c * rowStride + r] (a Linear computed as W @ x^T, so C holds the output
//    transposed); four rows of one column gather into a vector.
// Bias: per row of C (a conv's output channel; a transposed Linear's feature), per column (a plain
// matmul's N), or none. Residual: same layout as out, or none (pointer 0). One exported function per
// activation and layout: epilogue_<layout>_<act>(args, t), task = a block of rows ('seg') or of C
// columns ('trans').

import type { Activation } from '@cnx/tensor';
import { argF } from './emit_util.js';
import { VectorMath } from './vector_math.js';
import {
  ValType, f32, f32x4, forRange, get, i32, if_, set, v128, type Code, type ModuleBuilder,
} from './wasm_binary.js';

export const EPILOGUE_ARGS = {
  c: 0, ldc: 1, R: 2, Nc: 3, out: 4, rowStride: 5, S: 6, segStride: 7, bias: 8, biasMode: 9,
  res: 10, alpha: 11, block: 12,
} as const;
export const EPILOGUE_ARGS_LEN = 13 as const;
/** biasMode values. */
export const BIAS = { none: 0, row: 1, col: 2 } as const;
export const ACTIVATIONS: readonly Activation[] = ['none', 'relu', 'silu', 'gelu', 'gelu_tanh', 'quick_gelu'];

export const epilogueName = (layout: 'seg' | 'trans', act: Activation): string => `epilogue_${layout}_${act}`;

function emitSeg(m: ModuleBuilder, act: Activation): void {
  const f = m.func(epilogueName('seg', act), [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [c, ldc, R, Nc, out, rowStride, S, segStride, bias, biasMode, res] = f.argLocals(args, 11);
  const [block, r, rEnd, s0, j, segEnd, src, dst, e4] = f.locals(ValType.i32, 9);
  const [alpha, brow] = f.locals(ValType.f32, 2);
  const [valpha, vb, v] = f.locals(ValType.v128, 3);
  const vm = new VectorMath(f);
  // one element or vector: y = act(alpha*C + b) (+ res)
  const vecBody = (colIdx: Code): Code[] => [
    set(v, f32x4.mul(v128.load(i32.add(get(src), i32.shl(colIdx, i32.const(2)))), get(valpha))),
    if_(i32.eq(get(biasMode), i32.const(2)), [set(v, f32x4.add(get(v), v128.load(i32.add(get(bias), i32.shl(colIdx, i32.const(2))))))],
      [set(v, f32x4.add(get(v), get(vb)))]),
    set(v, vm.activation(act, get(v))),
    if_(get(res), [set(v, f32x4.add(get(v), v128.load(i32.add(get(res), i32.sub(get(dst), get(out))))))]),
    v128.store(get(dst), get(v)),
  ];
  const scalarBody = (colIdx: Code): Code[] => [
    set(v, f32x4.splat(f32.mul(f32.load(i32.add(get(src), i32.shl(colIdx, i32.const(2)))), get(alpha)))),
    if_(i32.eq(get(biasMode), i32.const(2)), [set(v, f32x4.add(get(v), f32x4.splat(f32.load(i32.add(get(bias), i32.shl(colIdx, i32.const(2)))))))],
      [set(v, f32x4.add(get(v), get(vb)))]),
    set(v, vm.activation(act, get(v))),
    if_(get(res), [set(v, f32x4.add(get(v), f32x4.splat(f32.load(i32.add(get(res), i32.sub(get(dst), get(out)))))))]),
    f32.store(get(dst), f32x4.extract_lane(get(v), 0)),
  ];
  f.emit(
    set(alpha, argF(args, EPILOGUE_ARGS.alpha)),
    set(valpha, f32x4.splat(get(alpha))),
    set(block, i32.load(get(args), 4 * EPILOGUE_ARGS.block)),
    set(r, i32.mul(get(t), get(block))),
    set(rEnd, i32.add(get(r), get(block))),
    if_(i32.gt_s(get(rEnd), get(R)), [set(rEnd, get(R))]),
    forRange(r, get(r), get(rEnd), 1, [
      ...set(brow, f32.const(0)),
      ...if_(i32.eq(get(biasMode), i32.const(1)), [set(brow, f32.load(i32.add(get(bias), i32.shl(get(r), i32.const(2)))))]),
      ...set(vb, f32x4.splat(get(brow))),
      ...forRange(s0, i32.const(0), get(Nc), get(S), [
        // segment [s0, s0+S): src row r of C at column s0; dst = out + (s0/S)*segStride + r*rowStride
        ...set(src, i32.add(get(c), i32.add(i32.mul(get(r), get(ldc)), i32.shl(get(s0), i32.const(2))))),
        ...set(segEnd, get(S)),
        ...set(e4, i32.and(get(segEnd), i32.const(~3))),
        ...set(dst, i32.add(get(out), i32.shl(i32.add(i32.mul(i32.div_u(get(s0), get(S)), get(segStride)), i32.mul(get(r), get(rowStride))), i32.const(2)))),
        // bias per column indexes by the column within the segment
        ...forRange(j, i32.const(0), get(e4), 4, [
          ...vecBody(get(j)),
          ...set(dst, i32.add(get(dst), i32.const(16))),
        ]),
        ...forRange(j, get(e4), get(segEnd), 1, [
          ...scalarBody(get(j)),
          ...set(dst, i32.add(get(dst), i32.const(4))),
        ]),
      ]),
    ]),
  );
}

function emitTrans(m: ModuleBuilder, act: Activation): void {
  const f = m.func(epilogueName('trans', act), [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [c, ldc, R, Nc, out, rowStride, , , bias, biasMode, res] = f.argLocals(args, 11);
  const [block, col, cEnd, r, r4, src, dst, ldc2, ldc3] = f.locals(ValType.i32, 9);
  const [alpha] = f.locals(ValType.f32, 1);
  const [valpha, v] = f.locals(ValType.v128, 2);
  const vm = new VectorMath(f);
  const finish = (vec: boolean, rIdx: Code): Code[] => [
    if_(i32.eq(get(biasMode), i32.const(1)), [set(v, f32x4.add(get(v),
      vec ? v128.load(i32.add(get(bias), i32.shl(rIdx, i32.const(2)))) : f32x4.splat(f32.load(i32.add(get(bias), i32.shl(rIdx, i32.const(2)))))))]),
    set(v, vm.activation(act, get(v))),
    if_(get(res), [set(v, f32x4.add(get(v),
      vec ? v128.load(i32.add(get(res), i32.sub(get(dst), get(out)))) : f32x4.splat(f32.load(i32.add(get(res), i32.sub(get(dst), get(out)))))))]),
    vec ? v128.store(get(dst), get(v)) : f32.store(get(dst), f32x4.extract_lane(get(v), 0)),
  ];
  f.emit(
    set(alpha, argF(args, EPILOGUE_ARGS.alpha)),
    set(valpha, f32x4.splat(get(alpha))),
    set(block, i32.load(get(args), 4 * EPILOGUE_ARGS.block)),
    set(ldc2, i32.shl(get(ldc), i32.const(1))),
    set(ldc3, i32.add(get(ldc2), get(ldc))),
    set(col, i32.mul(get(t), get(block))),
    set(cEnd, i32.add(get(col), get(block))),
    if_(i32.gt_s(get(cEnd), get(Nc)), [set(cEnd, get(Nc))]),
    set(r4, i32.and(get(R), i32.const(~3))),
    forRange(col, get(col), get(cEnd), 1, [
      ...set(dst, i32.add(get(out), i32.shl(i32.mul(get(col), get(rowStride)), i32.const(2)))),
      ...set(src, i32.add(get(c), i32.shl(get(col), i32.const(2)))),
      ...forRange(r, i32.const(0), get(r4), 4, [
        // gather C[r..r+3, col]
        ...set(v, v128.load32_splat(get(src))),
        ...set(v, f32x4.replace_lane(get(v), 1, f32.load(i32.add(get(src), get(ldc))))),
        ...set(v, f32x4.replace_lane(get(v), 2, f32.load(i32.add(get(src), get(ldc2))))),
        ...set(v, f32x4.replace_lane(get(v), 3, f32.load(i32.add(get(src), get(ldc3))))),
        ...set(v, f32x4.mul(get(v), get(valpha))),
        ...finish(true, get(r)),
        ...set(src, i32.add(get(src), i32.shl(get(ldc), i32.const(2)))),
        ...set(dst, i32.add(get(dst), i32.const(16))),
      ]),
      ...forRange(r, get(r4), get(R), 1, [
        ...set(v, f32x4.splat(f32.mul(f32.load(get(src)), get(alpha)))),
        ...finish(false, get(r)),
        ...set(src, i32.add(get(src), get(ldc))),
        ...set(dst, i32.add(get(dst), i32.const(4))),
      ]),
    ]),
  );
}

export function emitEpilogueKernels(m: ModuleBuilder): void {
  for (const act of ACTIVATIONS) {
    emitSeg(m, act);
    emitTrans(m, act);
  }
}
