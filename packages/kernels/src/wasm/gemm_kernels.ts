// Packed, register-blocked f32 GEMM in WebAssembly SIMD: C[Mp, Np] = U[M, K] @ P[K, N] (+= C), the
// GotoBLAS/BLIS structure (Goto & van de Geijn, "Anatomy of high-performance matrix multiplication",
// ACM TOMS 2008) with 128-bit vectors.
//
// Operands:
//  - U: M rows of K contiguous f32 (row stride `lda` bytes), read UNPACKED by the micro-kernel as
//    broadcast scalars (v128.load32_splat). The runtime puts the large, rarely reused operand here
//    (weights: a conv's [O, C*kh*kw], a Linear's [N, K]), so weights are streamed once per product and
//    never copied. MR rows of a k-block (MR x KC floats) stay in L1 across all column panels.
//  - P: packed by `gemm_pack_task` (or by the conv's im2col packer, or the Winograd input transform of
//    winograd_kernels.ts) into column panels of NR floats,
//    k-major inside a panel: panel j holds P[k, j*NR .. j*NR+NR) for k = 0..K-1, zero-padded past N.
//    A k-block of all panels (KC x N) stays in L2 while MR-row groups of U pass over it.
//  - C: row-major scratch with ldc bytes per row, rows padded to a multiple of MR and columns to a
//    multiple of NR; the epilogue (epilogue_kernels.ts) maps it to the output layout with alpha, bias,
//    activation and residual.
//
// The micro-kernel keeps an MR x NR tile of C in MR*NR/4 v128 registers: per k step NR/4 vector loads
// of P and MR broadcast loads of U feed MR*NR/4 multiply-adds (relaxed_madd when available). x86-64
// exposes 16 xmm registers to V8, so MR x NR = 4 x 8 (8 accumulators) leaves room for the operands.
// Measured on the dev box (AMD EPYC, Zen 4; best of 15 interleaved runs, CPU time, relaxed FMA):
// 4x8, 5x8 and 3x16 all reach 31-33 GFLOP per CPU-second with k unrolled by 4; 6x8 and 4x12 spill
// (26-30), 4x4 is load-bound (18).
//
// The k loop is NOT unrolled. V8's TurboFan (Node 20) schedules the loads of all unrolled steps to the
// top of the loop body, which needs far more than 16 xmm registers, so it spills operands and
// accumulators to the stack (seen with `node --no-liftoff --no-wasm-lazy-compilation
// --print-wasm-code`: an unrolled-by-4 body had ~40 stack moves for 32 FMAs; the plain body has none:
// 2 loads, 4 broadcasts, 8 vfmadd231ps and the pointer increments). In one process, interleaved, best of
// 7 on an L1-resident tile (kc = 256, 64, 40): unrolled by 4 22.6-31.5 GFLOP/s, by 2 21-23, not unrolled
// 32-46, so the plain loop is ~1.45x faster (2026-12-07, AMD EPYC Zen 4, Node 20.20).
//
// Tasks: t -> (row block, column block): rows [rb*MC, rb*MC+MC), panels [cb*PC, cb*PC+PC); a task runs
// every k-block of its rectangle, so tasks write disjoint parts of C.

import { madd, type EmitOptions } from './emit_util.js';
import {
  ValType, call, f32, forRange, get, i32, if_, select, set, v128, type Code, type ModuleBuilder,
} from './wasm_binary.js';

export const GEMM_MR = 4;
export const GEMM_NR = 8;

/** Field indices of gemm_task's argument struct. */
export const GEMM_ARGS = {
  u: 0, lda: 1, M: 2, p: 3, nPanels: 4, K: 5, c: 6, ldc: 7, MC: 8, PC: 9, KC: 10, colTasks: 11,
} as const;
export const GEMM_ARGS_LEN = 12 as const;

/** Field indices of gemm_pack_task's argument struct (element strides, not bytes). */
export const PACK_ARGS = { src: 0, rs: 1, cs: 2, K: 3, N: 4, dst: 5, panelsPerTask: 6 } as const;
export const PACK_ARGS_LEN = 7 as const;

/**
 * micro(a, lda, b, c, ldc, kc, accumulate, rows): C[0..MR, 0..NR) (+)= U[rows of a][0..kc] @ panel b.
 * Rows at or past `rows` repeat the last valid row (their C rows are padding and never read).
 */
function emitMicro(m: ModuleBuilder, o: EmitOptions, MR: number, NR: number): number {
  const f = m.func(`gemm_micro_${MR}x${NR}`, [ValType.i32, ValType.i32, ValType.i32, ValType.i32, ValType.i32, ValType.i32, ValType.i32, ValType.i32], [], false);
  const [a, lda, b, c, ldc, kc, accum, rows] = [0, 1, 2, 3, 4, 5, 6, 7];
  const NV = NR / 4;
  const ar: number[] = f.locals(ValType.i32, MR);
  const acc: number[] = f.locals(ValType.v128, MR * NV);
  const bv: number[] = f.locals(ValType.v128, NV);
  const av = f.local(ValType.v128);
  const k = f.local(ValType.i32);
  for (let r = 0; r < MR; r++) {
    // ar[r] = a + min(r, rows - 1) * lda
    f.emit(set(ar[r]!, i32.add(get(a), i32.mul(
      r === 0 ? i32.const(0) : select(i32.const(r), i32.sub(get(rows), i32.const(1)), i32.lt_s(i32.const(r), i32.sub(get(rows), i32.const(1)))),
      get(lda)))));
  }
  const zero = v128.const_f32x4(0);
  f.emit(if_(get(accum),
    acc.map((l, i) => set(l, v128.load(i32.add(get(c), i32.mul(i32.const(Math.floor(i / NV)), get(ldc))), (i % NV) * 16))),
    acc.map((l) => set(l, zero))));
  const step = (): Code[] => {
    const code: Code[] = [];
    for (let j = 0; j < NV; j++) code.push(set(bv[j]!, v128.load(get(b), j * 16)));
    for (let r = 0; r < MR; r++) {
      code.push(set(av, v128.load32_splat(get(ar[r]!))));
      for (let j = 0; j < NV; j++) code.push(set(acc[r * NV + j]!, madd(o, get(av), get(bv[j]!), get(acc[r * NV + j]!))));
    }
    return code;
  };
  const advance: Code[] = [
    ...ar.map((p) => set(p, i32.add(get(p), i32.const(4)))),
    set(b, i32.add(get(b), i32.const(4 * NR))),
  ];
  f.emit(forRange(k, i32.const(0), get(kc), 1, [...step(), ...advance]));
  for (let i = 0; i < MR * NV; i++) {
    f.emit(v128.store(i32.add(get(c), i32.mul(i32.const(Math.floor(i / NV)), get(ldc))), get(acc[i]!), (i % NV) * 16));
  }
  return f.index;
}

/** gemm_task(args, t): one (row block, column block) rectangle of C over all of K. */
function emitGemmTask(m: ModuleBuilder, micro: number, MR: number, NR: number): void {
  const f = m.func('gemm_task', [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [u, lda, M, p, nPanels, K, c, ldc, MC, PC, KC, colTasks] = f.argLocals(args, GEMM_ARGS_LEN);
  const [r0, r1, j0, j1, k0, kc, i, j, rows] = f.locals(ValType.i32, 9);
  const minI = (x: Code, y: Code): Code => {
    const tx = f.local(ValType.i32), ty = f.local(ValType.i32);
    return [...set(tx, x), ...set(ty, y), ...select(get(tx), get(ty), i32.lt_s(get(tx), get(ty)))];
  };
  f.emit(
    set(r0, i32.mul(i32.div_u(get(t), get(colTasks)), get(MC))),
    set(r1, minI(i32.add(get(r0), get(MC)), get(M))),
    set(j0, i32.mul(i32.rem_u(get(t), get(colTasks)), get(PC))),
    set(j1, minI(i32.add(get(j0), get(PC)), get(nPanels))),
    forRange(k0, i32.const(0), get(K), get(KC), [
      ...set(kc, minI(get(KC), i32.sub(get(K), get(k0)))),
      ...forRange(i, get(r0), get(r1), MR, [
        ...set(rows, i32.sub(get(M), get(i))),
        ...forRange(j, get(j0), get(j1), 1, [
          ...call(micro,
            i32.add(i32.add(get(u), i32.mul(get(i), get(lda))), i32.shl(get(k0), i32.const(2))),
            get(lda),
            i32.add(get(p), i32.mul(i32.add(i32.mul(get(j), get(K)), get(k0)), i32.const(NR * 4))),
            i32.add(get(c), i32.add(i32.mul(get(i), get(ldc)), i32.mul(get(j), i32.const(NR * 4)))),
            get(ldc),
            get(kc),
            get(k0),
            get(rows)),
        ]),
      ]),
    ]),
  );
}

/**
 * gemm_pack_task(args, t): panels [t*PT, t*PT+PT) of P from a strided source
 * src[k*rs + n*cs] (element strides), k < K, n < N; zero past N.
 */
function emitPackTask(m: ModuleBuilder, NR: number): number {
  const f = m.func('gemm_pack_task', [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [src, rs, cs, K, N, dst, PT] = f.argLocals(args, PACK_ARGS_LEN);
  const [jp, jEnd, n0, cols, k, jj, out, sk, rsB, csB] = f.locals(ValType.i32, 10);
  const nPanels = i32.div_u(i32.add(get(N), i32.const(NR - 1)), i32.const(NR));
  f.emit(
    set(rsB, i32.shl(get(rs), i32.const(2))),
    set(csB, i32.shl(get(cs), i32.const(2))),
    set(jp, i32.mul(get(t), get(PT))),
    set(jEnd, i32.add(get(jp), get(PT))),
    if_(i32.gt_s(get(jEnd), nPanels), [set(jEnd, nPanels)]),
    forRange(jp, get(jp), get(jEnd), 1, [
      ...set(n0, i32.mul(get(jp), i32.const(NR))),
      ...set(cols, i32.sub(get(N), get(n0))),
      ...set(out, i32.add(get(dst), i32.mul(i32.mul(get(jp), get(K)), i32.const(NR * 4)))),
      ...if_(i32.and(i32.eq(get(cs), i32.const(1)), i32.ge_s(get(cols), i32.const(NR))), [
        // contiguous full panel: NR/4 vector copies per k
        ...forRange(k, i32.const(0), get(K), 1, [
          ...set(sk, i32.add(get(src), i32.shl(i32.add(i32.mul(get(k), get(rs)), get(n0)), i32.const(2)))),
          ...Array.from({ length: NR / 4 }, (_, q) => v128.store(get(out), v128.load(get(sk), q * 16), q * 16)).flat(),
          ...set(out, i32.add(get(out), i32.const(NR * 4))),
        ]),
      ], [
        // general: column by column (a transposed source reads each column contiguously)
        ...if_(i32.gt_s(get(cols), i32.const(NR)), [set(cols, i32.const(NR))]),
        ...forRange(jj, i32.const(0), i32.const(NR), 1, [
          ...set(sk, i32.add(get(src), i32.mul(i32.add(get(n0), get(jj)), get(csB)))),
          ...if_(i32.lt_s(get(jj), get(cols)), [
            ...forRange(k, i32.const(0), get(K), 1, [
              ...f32.store(i32.add(get(out), i32.shl(i32.add(i32.mul(get(k), i32.const(NR)), get(jj)), i32.const(2))), f32.load(get(sk))),
              ...set(sk, i32.add(get(sk), get(rsB))),
            ]),
          ], [
            ...forRange(k, i32.const(0), get(K), 1, [
              ...f32.store(i32.add(get(out), i32.shl(i32.add(i32.mul(get(k), i32.const(NR)), get(jj)), i32.const(2))), f32.const(0)),
            ]),
          ]),
        ]),
      ]),
    ]),
  );
  return f.index;
}


/** Emits gemm_task and gemm_pack_task; returns the function indices other kernels call. */
export function emitGemmKernels(m: ModuleBuilder, o: EmitOptions, MR = GEMM_MR, NR = GEMM_NR): { micro: number; pack: number } {
  const micro = emitMicro(m, o, MR, NR);
  emitGemmTask(m, micro, MR, NR);
  const pack = emitPackTask(m, NR);
  return { micro, pack };
}
