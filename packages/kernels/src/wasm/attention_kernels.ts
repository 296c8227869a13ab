// Multi-head attention with a tiled online softmax (FlashAttention's recurrence: Dao et al., 2022,
// arXiv 2205.14135), heads interleaved in the channel dim as torch Linear outputs are:
// q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv] -> out [B, Lq, H, Dv]; scale; optional causal
// mask (key j > query i masked; Lq = Lk). The [Lq, Lk] score matrix never exists: a work item is one
// (b, h, block of BQ queries); it walks key blocks of BC keys, computing S = Q K^T with the GEMM
// micro-kernel (Q rows are the unpacked operand, K^T is pre-packed into key panels), updating the row
// max m, the row sum l and the output accumulator O (rescaled by exp(m_old - m_new)), then O += P V
// with the micro-kernel again (V pre-packed into Dv panels). Per row the kernel can also save (m, l),
// from which the backend forms the logsumexp m + ln l of the scaled scores [B, Lq, H].
//
// Two launches: attn_pack_task (t = (b, h, K or V): packs through gemm_pack_task), then
// attn_task(args, slot) with one task per thread: each slot owns a scratch area (S, O, m, l) and takes
// work items from an atomic counter, so per-thread scratch needs no allocation per item.

import { GEMM_MR, GEMM_NR, PACK_ARGS } from './gemm_kernels.js';
import { VectorMath } from './vector_math.js';
import { argF, fetchAdd1, type EmitOptions } from './emit_util.js';
import {
  ValType, block, br, br_if, call, f32, f32x4, forRange, get, i32, if_, loop, set, v128, type Code, type ModuleBuilder,
} from './wasm_binary.js';

export const ATTN_BQ = 64;
export const ATTN_BC = 128;

export const ATTN_ARGS = {
  q: 0, k: 1, v: 2, out: 3, B: 4, Lq: 5, Lk: 6, H: 7, D: 8, Dv: 9, scale: 10, causal: 11,
  kpack: 12, vpack: 13, scratch: 14, slotBytes: 15, counter: 16, stats: 17, packArgs: 18,
} as const;
export const ATTN_ARGS_LEN = 19 as const;

/** Bytes of one slot's scratch: S [BQ, BC], O [BQ, DvPad], m [BQ], l [BQ]. */
export function attentionSlotBytes(Dv: number): number {
  const dvPad = Math.ceil(Dv / GEMM_NR) * GEMM_NR;
  return 4 * (ATTN_BQ * ATTN_BC + ATTN_BQ * dvPad + 2 * ATTN_BQ);
}
/** Bytes of packed K^T and V for all (b, h). */
export function attentionPackBytes(B: number, H: number, Lk: number, D: number, Dv: number): { k: number; v: number } {
  const NR = GEMM_NR;
  return { k: 4 * B * H * Math.ceil(Lk / NR) * NR * D, v: 4 * B * H * Math.ceil(Dv / NR) * NR * Lk };
}

function emitPack(m: ModuleBuilder, pack: number): void {
  const f = m.func('attn_pack_task', [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [, kp, vp, , , , Lk, H, D, Dv] = f.argLocals(args, 10);
  const [bh, isV, pa, b, h, kpk, vpk] = f.locals(ValType.i32, 7);
  const NR = GEMM_NR;
  const field = (i: number, v: Code): Code => i32.store(get(pa), v, 4 * i);
  f.emit(
    set(kpk, i32.load(get(args), 4 * ATTN_ARGS.kpack)),
    set(vpk, i32.load(get(args), 4 * ATTN_ARGS.vpack)),
    set(bh, i32.shr_u(get(t), i32.const(1))),
    set(isV, i32.and(get(t), i32.const(1))),
    set(b, i32.div_u(get(bh), get(H))),
    set(h, i32.rem_u(get(bh), get(H))),
    // this task's pack argument struct (8 words per task)
    set(pa, i32.add(i32.load(get(args), 4 * ATTN_ARGS.packArgs), i32.shl(get(t), i32.const(5)))),
    if_(get(isV), [
      // V[b, j, h, :] as P[k = j, n = dv]: rows H*Dv apart, columns contiguous
      field(PACK_ARGS.src, i32.add(get(vp), i32.shl(i32.mul(i32.add(i32.mul(get(b), i32.mul(get(Lk), get(H))), get(h)), get(Dv)), i32.const(2)))),
      field(PACK_ARGS.rs, i32.mul(get(H), get(Dv))),
      field(PACK_ARGS.cs, i32.const(1)),
      field(PACK_ARGS.K, get(Lk)),
      field(PACK_ARGS.N, get(Dv)),
      field(PACK_ARGS.dst, i32.add(get(vpk), i32.mul(get(bh), i32.mul(i32.mul(i32.div_u(i32.add(get(Dv), i32.const(NR - 1)), i32.const(NR)), get(Lk)), i32.const(NR * 4))))),
    ], [
      // K^T: P[k = d, n = j] = K[b, j, h, d]: rows contiguous, columns H*D apart
      field(PACK_ARGS.src, i32.add(get(kp), i32.shl(i32.mul(i32.add(i32.mul(get(b), i32.mul(get(Lk), get(H))), get(h)), get(D)), i32.const(2)))),
      field(PACK_ARGS.rs, i32.const(1)),
      field(PACK_ARGS.cs, i32.mul(get(H), get(D))),
      field(PACK_ARGS.K, get(D)),
      field(PACK_ARGS.N, get(Lk)),
      field(PACK_ARGS.dst, i32.add(get(kpk), i32.mul(get(bh), i32.mul(i32.mul(i32.div_u(i32.add(get(Lk), i32.const(NR - 1)), i32.const(NR)), get(D)), i32.const(NR * 4))))),
    ]),
    field(PACK_ARGS.panelsPerTask, i32.const(0x7fffffff)),
    call(pack, get(pa), i32.const(0)),
  );
}

function emitAttention(m: ModuleBuilder, o: EmitOptions, micro: number): void {
  const f = m.func('attn_task', [ValType.i32, ValType.i32]);
  const [args, slot] = [0, 1];
  const [q, , , out, B, Lq, Lk, H, D, Dv] = f.argLocals(args, 10);
  const [causal, kpk, vpk, stats, counter] = f.locals(ValType.i32, 5);
  const [S, O, Mr, Lr, item, nItems, nQB, qb, bh, b, h, i0, rowsQ, qPtr, lda, kBase, vBase, nKP, nVP, ldO] = f.locals(ValType.i32, 20);
  const [j0, bc, nP, i, jp, jmax, j, e4, vp, tmp, rowS, rowO, ldS] = f.locals(ValType.i32, 13);
  const [scale, mOld, mNew, mx, sum, corr] = f.locals(ValType.f32, 6);
  const [vs, vmn, vacc, vx, vc] = f.locals(ValType.v128, 5);
  const vm = new VectorMath(f);
  const MR = GEMM_MR, NR = GEMM_NR, BQ = ATTN_BQ, BC = ATTN_BC;
  const fAt = (base: number, k: Code): Code => i32.add(get(base), i32.shl(k, i32.const(2)));
  const hmax = (v: number): Code => f32.max(f32.max(f32x4.extract_lane(get(v), 0), f32x4.extract_lane(get(v), 1)),
    f32.max(f32x4.extract_lane(get(v), 2), f32x4.extract_lane(get(v), 3)));
  const hsum = (v: number): Code => f32.add(f32.add(f32x4.extract_lane(get(v), 0), f32x4.extract_lane(get(v), 1)),
    f32.add(f32x4.extract_lane(get(v), 2), f32x4.extract_lane(get(v), 3)));

  // Online-softmax update of row i for the current key block (S row rowS holds raw scores).
  const rowUpdate: Code[] = [
    set(rowS, i32.add(get(S), i32.mul(get(i), get(ldS)))),
    set(rowO, i32.add(get(O), i32.mul(get(i), get(ldO)))),
    // valid keys of this row in the block: j < jmax
    set(jmax, get(bc)),
    if_(get(causal), [
      set(tmp, i32.add(i32.sub(i32.add(get(i0), get(i)), get(j0)), i32.const(1))),
      if_(i32.lt_s(get(tmp), get(jmax)), [set(jmax, get(tmp))]),
      if_(i32.lt_s(get(jmax), i32.const(0)), [set(jmax, i32.const(0))]),
    ]),
    set(e4, i32.and(get(jmax), i32.const(~3))),
    // row max of scale * s
    set(vacc, v128.const_f32x4(-Infinity)),
    forRange(j, i32.const(0), get(e4), 4, [set(vacc, f32x4.max(get(vacc), f32x4.mul(v128.load(fAt(rowS, get(j))), get(vs)))) ]),
    set(mx, hmax(vacc)),
    forRange(j, get(e4), get(jmax), 1, [set(mx, f32.max(get(mx), f32.mul(f32.load(fAt(rowS, get(j))), get(scale))))]),
    set(mOld, f32.load(fAt(Mr, get(i)))),
    set(mNew, f32.max(get(mOld), get(mx))),
    // p_j = exp(scale*s_j - m_new) for valid j, 0 past jmax (up to the padded block width)
    set(vmn, f32x4.splat(get(mNew))),
    set(vacc, v128.const_f32x4(0)),
    if_(f32.eq(get(mNew), f32.const(-Infinity)), [
      set(e4, i32.const(0)), set(jmax, i32.const(0)),
    ]),
    forRange(j, i32.const(0), get(e4), 4, [
      ...set(vx, vm.exp(f32x4.sub(f32x4.mul(v128.load(fAt(rowS, get(j))), get(vs)), get(vmn)))),
      ...v128.store(fAt(rowS, get(j)), get(vx)),
      ...set(vacc, f32x4.add(get(vacc), get(vx))),
    ]),
    set(sum, hsum(vacc)),
    forRange(j, get(e4), get(jmax), 1, [
      ...set(vx, vm.exp(f32x4.splat(f32.sub(f32.mul(f32.load(fAt(rowS, get(j))), get(scale)), get(mNew))))),
      ...f32.store(fAt(rowS, get(j)), f32x4.extract_lane(get(vx), 0)),
      ...set(sum, f32.add(get(sum), f32x4.extract_lane(get(vx), 0))),
    ]),
    forRange(j, get(jmax), i32.mul(get(nP), i32.const(NR)), 1, [f32.store(fAt(rowS, get(j)), f32.const(0))]),
    // corr = exp(m_old - m_new) (0 when m_old = -inf; 1 when nothing is valid yet)
    set(corr, f32.const(1)),
    if_(f32.ne(get(mNew), f32.const(-Infinity)), [
      set(corr, f32x4.extract_lane(vm.exp(f32x4.splat(f32.sub(get(mOld), get(mNew)))), 0)),
    ]),
    f32.store(fAt(Lr, get(i)), f32.add(f32.mul(f32.load(fAt(Lr, get(i))), get(corr)), get(sum))),
    f32.store(fAt(Mr, get(i)), get(mNew)),
    set(vc, f32x4.splat(get(corr))),
    forRange(j, i32.const(0), i32.mul(get(nVP), i32.const(NR)), 4, [
      v128.store(fAt(rowO, get(j)), f32x4.mul(v128.load(fAt(rowO, get(j))), get(vc))),
    ]),
  ];

  f.emit(
    set(causal, i32.load(get(args), 4 * ATTN_ARGS.causal)),
    set(kpk, i32.load(get(args), 4 * ATTN_ARGS.kpack)),
    set(vpk, i32.load(get(args), 4 * ATTN_ARGS.vpack)),
    set(stats, i32.load(get(args), 4 * ATTN_ARGS.stats)),
    set(counter, i32.load(get(args), 4 * ATTN_ARGS.counter)),
    set(scale, argF(args, ATTN_ARGS.scale)),
    set(vs, f32x4.splat(get(scale))),
    set(S, i32.add(i32.load(get(args), 4 * ATTN_ARGS.scratch), i32.mul(get(slot), i32.load(get(args), 4 * ATTN_ARGS.slotBytes)))),
    set(nKP, i32.div_u(i32.add(get(Lk), i32.const(NR - 1)), i32.const(NR))),
    set(nVP, i32.div_u(i32.add(get(Dv), i32.const(NR - 1)), i32.const(NR))),
    set(ldS, i32.const(BC * 4)),
    set(ldO, i32.mul(get(nVP), i32.const(NR * 4))),
    set(O, i32.add(get(S), i32.const(BQ * BC * 4))),
    set(Mr, i32.add(get(O), i32.mul(get(ldO), i32.const(BQ)))),
    set(Lr, i32.add(get(Mr), i32.const(BQ * 4))),
    set(nQB, i32.div_u(i32.add(get(Lq), i32.const(BQ - 1)), i32.const(BQ))),
    set(nItems, i32.mul(i32.mul(get(B), get(H)), get(nQB))),
    set(lda, i32.mul(i32.mul(get(H), get(D)), i32.const(4))),
    block(loop([
      set(item, fetchAdd1(o, get(counter), tmp)),
      br_if(1, i32.ge_s(get(item), get(nItems))),
      set(bh, i32.div_u(get(item), get(nQB))),
      set(qb, i32.rem_u(get(item), get(nQB))),
      set(b, i32.div_u(get(bh), get(H))),
      set(h, i32.rem_u(get(bh), get(H))),
      set(i0, i32.mul(get(qb), i32.const(BQ))),
      set(rowsQ, i32.sub(get(Lq), get(i0))),
      if_(i32.gt_s(get(rowsQ), i32.const(BQ)), [set(rowsQ, i32.const(BQ))]),
      set(qPtr, i32.add(get(q), i32.shl(i32.mul(i32.add(i32.mul(i32.add(i32.mul(get(b), get(Lq)), get(i0)), get(H)), get(h)), get(D)), i32.const(2)))),
      set(kBase, i32.add(get(kpk), i32.mul(get(bh), i32.mul(i32.mul(get(nKP), get(D)), i32.const(NR * 4))))),
      set(vBase, i32.add(get(vpk), i32.mul(get(bh), i32.mul(i32.mul(get(nVP), get(Lk)), i32.const(NR * 4))))),
      // m = -inf, l = 0, O = 0
      forRange(i, i32.const(0), i32.const(BQ), 1, [
        f32.store(fAt(Mr, get(i)), f32.const(-Infinity)),
        f32.store(fAt(Lr, get(i)), f32.const(0)),
      ]),
      forRange(j, i32.const(0), i32.mul(get(ldO), i32.const(BQ / 4)), 4, [v128.store(fAt(O, get(j)), v128.const_f32x4(0))]),
      forRange(j0, i32.const(0), get(Lk), BC, [
        // causal: blocks starting past the last query of this item are fully masked
        if_(i32.and(get(causal), i32.ge_s(get(j0), i32.add(get(i0), get(rowsQ)))), [set(j0, get(Lk))], [
          set(bc, i32.sub(get(Lk), get(j0))),
          if_(i32.gt_s(get(bc), i32.const(BC)), [set(bc, i32.const(BC))]),
          set(nP, i32.div_u(i32.add(get(bc), i32.const(NR - 1)), i32.const(NR))),
          // S = Q_blk K^T_blk
          forRange(i, i32.const(0), get(rowsQ), MR, [
            forRange(jp, i32.const(0), get(nP), 1, [
              call(micro,
                i32.add(get(qPtr), i32.mul(get(i), get(lda))), get(lda),
                i32.add(get(kBase), i32.mul(i32.add(i32.div_u(get(j0), i32.const(NR)), get(jp)), i32.mul(get(D), i32.const(NR * 4)))),
                i32.add(get(S), i32.add(i32.mul(get(i), get(ldS)), i32.mul(get(jp), i32.const(NR * 4)))),
                get(ldS), get(D), i32.const(0), i32.sub(get(rowsQ), get(i))),
            ]),
          ]),
          forRange(i, i32.const(0), get(rowsQ), 1, rowUpdate),
          // O += P V_blk
          forRange(i, i32.const(0), get(rowsQ), MR, [
            forRange(vp, i32.const(0), get(nVP), 1, [
              call(micro,
                i32.add(get(S), i32.mul(get(i), get(ldS))), get(ldS),
                i32.add(get(vBase), i32.mul(i32.add(i32.mul(get(vp), get(Lk)), get(j0)), i32.const(NR * 4))),
                i32.add(get(O), i32.add(i32.mul(get(i), get(ldO)), i32.mul(get(vp), i32.const(NR * 4)))),
                get(ldO), get(bc), i32.const(1), i32.sub(get(rowsQ), get(i))),
            ]),
          ]),
        ]),
      ]),
      // out[b, i0+i, h, :] = O[i, :] / l[i]
      forRange(i, i32.const(0), get(rowsQ), 1, [
        set(rowO, i32.add(get(O), i32.mul(get(i), get(ldO)))),
        set(tmp, i32.add(get(out), i32.shl(i32.mul(i32.add(i32.mul(i32.add(i32.mul(get(b), get(Lq)), i32.add(get(i0), get(i))), get(H)), get(h)), get(Dv)), i32.const(2)))),
        set(corr, f32.div(f32.const(1), f32.load(fAt(Lr, get(i))))),
        set(vc, f32x4.splat(get(corr))),
        set(e4, i32.and(get(Dv), i32.const(~3))),
        forRange(j, i32.const(0), get(e4), 4, [v128.store(fAt(tmp, get(j)), f32x4.mul(v128.load(fAt(rowO, get(j))), get(vc)))]),
        forRange(j, get(e4), get(Dv), 1, [f32.store(fAt(tmp, get(j)), f32.mul(f32.load(fAt(rowO, get(j))), get(corr)))]),
        if_(get(stats), [
          set(tmp, i32.add(get(stats), i32.shl(i32.add(i32.mul(i32.add(i32.mul(get(b), get(Lq)), i32.add(get(i0), get(i))), get(H)), get(h)), i32.const(3)))),
          f32.store(get(tmp), f32.load(fAt(Mr, get(i)))),
          f32.store(get(tmp), f32.load(fAt(Lr, get(i))), 4),
        ]),
      ]),
      br(0),
    ])),
  );
}

export function emitAttentionKernels(m: ModuleBuilder, o: EmitOptions, fns: { micro: number; pack: number }): void {
  emitPack(m, fns.pack);
  emitAttention(m, o, fns.micro);
}
