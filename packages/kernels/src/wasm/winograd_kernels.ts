// Winograd convolution F(2x2, 3x3) for 3x3, stride-1 convolutions (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", CVPR 2016, section 4.1). Each 2x2 block ("tile") of outputs is
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A
// with d the tile's 4x4 input patch, g a 3x3 filter and (.) the elementwise product of 4x4 matrices:
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1].
// Summed over input channels, the elementwise product becomes 16 independent GEMMs, one per transform
// point xi = (i, j) of the 4x4 matrices: M_xi [O, tiles] = U_xi [O, C] @ V_xi [C, tiles]. They cost
// 16 C multiply-adds per tile and output channel where the direct convolution costs 4 * 9 C: 2.25x
// fewer. The kernels here are the transforms around those GEMMs (wasm_ops.ts runs them and the GEMMs
// through gemm_kernels.ts), and a task that fuses the weight transform with the GEMMs:
//  - winograd_weight_task: U [O, 16, C] = G g G^T per (o, c); a task is a block of output channels.
//    Point xi's GEMM operand U_xi is rows of C floats 16 C apart (the GEMM reads U unpacked, any row
//    stride): o-major keeps one output channel's 16 point rows in one small block, so the transform
//    writes 16 nearby streams; an xi-major [16, O, C] layout put them O C floats apart, and 16 far-apart
//    4-byte store streams (more than the core's line-fill buffers) made the transform several times
//    slower (a 1280 -> 1280 conv on 4x4 pixels, mostly weight transform: 105 ms, now 40 ms).
//  - winograd_gemm_task: for calls with few tiles, the weight transform of a group of output channels
//    into a per-thread slot, then those rows of all 16 GEMMs (the GEMM micro-kernel), so the transformed
//    weight never leaves the cache (see the function).
//  - winograd_input_task: V = B^T d B per (tile, c), written straight into the GEMM's packed-panel
//    layout (gemm_kernels.ts), one panel set per point: point xi at dst + xi * pointStride bytes,
//    panel jp of it holding V_xi[c, jp*8 .. jp*8+8) for c < C. Four tiles go in the four lanes of a
//    vector; their 4x4 patches are gathered lane by lane with masks for the zero padding, so any
//    padding, odd sizes and partial tiles at the right and bottom edges need no special case. A task
//    is a block of panels.
//  - winograd_output_task: Y = A^T M A per (o, tile) from the 16 GEMM results (row o of point xi at
//    c + xi * pointStride + o * ldc), written as rows of output pixels [O, pixels] for the usual conv
//    epilogue (bias, activation, residual; epilogue_kernels.ts). A task is a block of 4-tile groups.
// Tiles are numbered n * TH * TW + ty * TW + tx (TH = ceil(Ho/2), TW = ceil(Wo/2)); a call handles the
// tiles [tile0, tile0 + nTiles) and the pixel columns from pix0 on (pixel column n * Ho * Wo + y * Wo + x).

import { fetchAdd1, type EmitOptions } from './emit_util.js';
import {
  ValType, block, br, br_if, call, f32, f32x4, forRange, get, i32, i32x4, if_, loop, set, v128, type Code, type ModuleBuilder,
} from './wasm_binary.js';

export const WINOGRAD_WEIGHT_ARGS_LEN = 5 as const;
export const WINOGRAD_INPUT_ARGS_LEN = 13 as const;
export const WINOGRAD_OUTPUT_ARGS_LEN = 14 as const;
export const WINOGRAD_GEMM_ARGS_LEN = 15 as const;
/** Transform points (4x4). */
export const WINOGRAD_POINTS = 16;

/**
 * winograd_weight_rows(w, u, rows, C) (internal): U[r, xi, c] at u for the filters w [rows, C, 3, 3].
 * Four input channels at a time in the lanes of f32x4 (their filters are 36 consecutive floats, gathered
 * lane by lane), then a scalar tail.
 */
function emitWeightRows(m: ModuleBuilder): number {
  const f = m.func('winograd_weight_rows', [ValType.i32, ValType.i32, ValType.i32, ValType.i32], [], false);
  const [w, u, rows, C] = [0, 1, 2, 3];
  const [o, c, c4, src, dst, C4] = f.locals(ValType.i32, 6);
  const body = (vec: boolean): Code[] => {
    const F = vec ? f32x4 : f32;
    const g = f.locals(vec ? ValType.v128 : ValType.f32, 9);
    const gg = f.locals(vec ? ValType.v128 : ValType.f32, 12); // G g: 4 rows x 3 columns
    const half = vec ? v128.const_f32x4(0.5) : f32.const(0.5);
    const code: Code[] = [];
    for (let e = 0; e < 9; e++) {
      if (!vec) code.push(set(g[e]!, f32.load(get(src), e * 4)));
      else {
        // lane l: filter c + l, element e, at src + 36 l + 4 e
        code.push(set(g[e]!, v128.load32_splat(get(src), e * 4)));
        for (let l = 1; l < 4; l++) code.push(set(g[e]!, f32x4.replace_lane(get(g[e]!), l, f32.load(get(src), 36 * l + e * 4))));
      }
    }
    // rows of G g: g0, (g0 + g1 + g2)/2, (g0 - g1 + g2)/2, g2 (gk = row k of g)
    for (let col = 0; col < 3; col++) {
      const [a, b, cc] = [g[col]!, g[3 + col]!, g[6 + col]!];
      code.push(
        set(gg[col]!, get(a)),
        set(gg[3 + col]!, F.mul(F.add(F.add(get(a), get(cc)), get(b)), half)),
        set(gg[6 + col]!, F.mul(F.sub(F.add(get(a), get(cc)), get(b)), half)),
        set(gg[9 + col]!, get(cc)),
      );
    }
    // (G g) G^T: row (a, b, c) -> (a, (a + b + c)/2, (a - b + c)/2, c); U[o, xi = 4i + j, c] at dst + xi*C*4
    const at = (xi: number): Code => i32.add(get(dst), i32.mul(i32.const(xi), get(C4)));
    const store = vec ? v128.store : f32.store;
    for (let i = 0; i < 4; i++) {
      const [a, b, cc] = [gg[3 * i]!, gg[3 * i + 1]!, gg[3 * i + 2]!];
      code.push(
        store(at(4 * i), get(a)),
        store(at(4 * i + 1), F.mul(F.add(F.add(get(a), get(cc)), get(b)), half)),
        store(at(4 * i + 2), F.mul(F.sub(F.add(get(a), get(cc)), get(b)), half)),
        store(at(4 * i + 3), get(cc)),
      );
    }
    return code;
  };
  const vecBody = body(true), scalarBody = body(false);
  f.emit(
    set(C4, i32.shl(get(C), i32.const(2))),
    set(c4, i32.and(get(C), i32.const(~3))),
    forRange(o, i32.const(0), get(rows), 1, [
      ...set(src, i32.add(get(w), i32.mul(i32.mul(get(o), get(C)), i32.const(36)))),
      ...set(dst, i32.add(get(u), i32.shl(i32.mul(i32.mul(get(o), get(C)), i32.const(16)), i32.const(2)))),
      ...forRange(c, i32.const(0), get(c4), 4, [
        ...vecBody.flat(),
        ...set(src, i32.add(get(src), i32.const(4 * 36))),
        ...set(dst, i32.add(get(dst), i32.const(16))),
      ]),
      ...forRange(c, get(c4), get(C), 1, [
        ...scalarBody.flat(),
        ...set(src, i32.add(get(src), i32.const(36))),
        ...set(dst, i32.add(get(dst), i32.const(4))),
      ]),
    ]),
  );
  return f.index;
}

/** winograd_weight_task(args = [w, O, C, u, OB], t): U[o, xi, c] for o in [t*OB, t*OB + OB). */
function emitWeightTask(m: ModuleBuilder, rowsFn: number): void {
  const f = m.func('winograd_weight_task', [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [w, O, C, u, OB] = f.argLocals(args, WINOGRAD_WEIGHT_ARGS_LEN);
  const [o, oEnd] = f.locals(ValType.i32, 2);
  f.emit(
    set(o, i32.mul(get(t), get(OB))),
    set(oEnd, i32.add(get(o), get(OB))),
    if_(i32.gt_s(get(oEnd), get(O)), [set(oEnd, get(O))]),
    if_(i32.lt_s(get(o), get(oEnd)), [
      call(rowsFn,
        i32.add(get(w), i32.mul(i32.mul(get(o), get(C)), i32.const(36))),
        i32.add(get(u), i32.shl(i32.mul(i32.mul(get(o), get(C)), i32.const(16)), i32.const(2))),
        i32.sub(get(oEnd), get(o)), get(C)),
    ]),
  );
}

/**
 * winograd_gemm_task(args = [w, O, C, v, vPoint, nPanels, cb, cPoint, ldc, R, scratch, slotBytes, counter,
 * KC, nGroups], slot): the weight transform fused with the 16 point GEMMs, for calls with few tiles, where
 * the separate transform (write 16/9 of the weight, then stream it back through the GEMM) costs as much
 * as the GEMMs. One task per thread owns a scratch slot and takes groups of R output channels from an
 * atomic counter: it transforms their filters into the slot (R x 16 x C floats, cache-resident) and
 * runs the 16 GEMMs' rows of the group, M_xi[r, tiles] = U_xi[r, :] @ V_xi (micro-kernel of
 * gemm_kernels.ts, k-blocked by KC), into the same C buffers the unfused path fills.
 */
function emitGemmTask(m: ModuleBuilder, o: EmitOptions, rowsFn: number, micro: number, MR: number, NR: number): void {
  const f = m.func('winograd_gemm_task', [ValType.i32, ValType.i32]);
  const [args, slot] = [0, 1];
  const [w, O, C, v, vPoint, nPanels, cb, cPoint, ldc, R, scratch, slotBytes, counter, KC, nGroups] = f.argLocals(args, WINOGRAD_GEMM_ARGS_LEN);
  const [us, item, r0, r1, xi, k0, kc, i, j, lda, tmp] = f.locals(ValType.i32, 11);
  f.emit(
    set(us, i32.add(get(scratch), i32.mul(get(slot), get(slotBytes)))),
    set(lda, i32.shl(get(C), i32.const(6))), // 16 C floats between rows of U_xi
    block(loop([
      set(item, fetchAdd1(o, get(counter), tmp)),
      br_if(1, i32.ge_s(get(item), get(nGroups))),
      set(r0, i32.mul(get(item), get(R))),
      set(r1, i32.add(get(r0), get(R))),
      if_(i32.gt_s(get(r1), get(O)), [set(r1, get(O))]),
      call(rowsFn, i32.add(get(w), i32.mul(i32.mul(get(r0), get(C)), i32.const(36))), get(us), i32.sub(get(r1), get(r0)), get(C)),
      forRange(xi, i32.const(0), i32.const(16), 1, [
        ...forRange(k0, i32.const(0), get(C), get(KC), [
          ...set(kc, i32.sub(get(C), get(k0))),
          ...if_(i32.gt_s(get(kc), get(KC)), [set(kc, get(KC))]),
          ...forRange(i, get(r0), get(r1), MR, [
            ...forRange(j, i32.const(0), get(nPanels), 1, [
              ...call(micro,
                // U_xi row i, from k0: slot + ((i - r0) * 16 + xi) * C * 4 + k0 * 4
                i32.add(get(us), i32.shl(i32.add(i32.mul(i32.add(i32.shl(i32.sub(get(i), get(r0)), i32.const(4)), get(xi)), get(C)), get(k0)), i32.const(2))),
                get(lda),
                i32.add(i32.add(get(v), i32.mul(get(xi), get(vPoint))), i32.mul(i32.add(i32.mul(get(j), get(C)), get(k0)), i32.const(NR * 4))),
                i32.add(i32.add(get(cb), i32.mul(get(xi), get(cPoint))), i32.add(i32.mul(get(i), get(ldc)), i32.mul(get(j), i32.const(NR * 4)))),
                get(ldc),
                get(kc),
                get(k0),
                i32.sub(get(r1), get(i))),
            ]),
          ]),
        ]),
      ]),
      br(0),
    ])),
  );
}

/**
 * winograd_input_task(args = [x, C, H, W, pt, pl, TH, TW, tile0, nTiles, dst, pointStride, PT], t):
 * V for the panels [t*PT, t*PT + PT) of the call's tiles; x is [N, C, H, W].
 */
function emitInputTask(m: ModuleBuilder, NR: number): void {
  if (NR !== 8) throw new Error('winograd_input_task is written for NR = 8 (two 4-lane halves per panel)');
  const f = m.func('winograd_input_task', [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [x, C, H, W, pt, pl, TH, TW, tile0, nTiles, dst, pointStride, PT] = f.argLocals(args, WINOGRAD_INPUT_ARGS_LEN);
  const [jp, jEnd, nPanels, h, c, HW, tiles1, tile, n, rem, ty, tx, out, lane] = f.locals(ValType.i32, 14);
  const [iy0, ix0, base, ok, vH, vW, cOff, a] = f.locals(ValType.v128, 8);
  const offs = f.locals(ValType.v128, 16); // element offsets of d[r][s] per lane (0 where masked)
  const masks = f.locals(ValType.v128, 16); // all bits where d[r][s] is inside the input
  const d = f.locals(ValType.v128, 16);
  const tt = f.locals(ValType.v128, 16);
  // lane setup: tile = tile0 + jp*8 + h*4 + l
  const laneSetup: Code[] = [];
  for (let l = 0; l < 4; l++) {
    laneSetup.push(
      set(lane, i32.add(i32.add(i32.mul(get(jp), i32.const(NR)), i32.shl(get(h), i32.const(2))), i32.const(l))),
      set(tile, i32.add(get(tile0), get(lane))),
      set(n, i32.div_u(get(tile), get(tiles1))),
      set(rem, i32.rem_u(get(tile), get(tiles1))),
      set(ty, i32.div_u(get(rem), get(TW))),
      set(tx, i32.rem_u(get(rem), get(TW))),
      set(iy0, i32x4.replace_lane(get(iy0), l, i32.sub(i32.shl(get(ty), i32.const(1)), get(pt)))),
      set(ix0, i32x4.replace_lane(get(ix0), l, i32.sub(i32.shl(get(tx), i32.const(1)), get(pl)))),
      set(base, i32x4.replace_lane(get(base), l, i32.mul(i32.mul(get(n), get(C)), get(HW)))),
      set(ok, i32x4.replace_lane(get(ok), l, i32.sub(i32.const(0), i32.lt_s(get(lane), get(nTiles))))), // -1 or 0
    );
  }
  for (let r = 0; r < 4; r++) {
    for (let s = 0; s < 4; s++) {
      const iy = i32x4.add(get(iy0), v128.const_i32x4(r)), ix = i32x4.add(get(ix0), v128.const_i32x4(s));
      laneSetup.push(
        // unsigned compares reject negative coordinates too
        set(masks[4 * r + s]!, v128.and(get(ok), v128.and(i32x4.lt_u(iy, get(vH)), i32x4.lt_u(ix, get(vW))))),
        set(offs[4 * r + s]!, v128.and(get(masks[4 * r + s]!), i32x4.add(get(base), i32x4.add(i32x4.mul(iy, get(vW)), ix)))),
      );
    }
  }
  // per channel: gather d (masked-out lanes read channel c's first element, then are zeroed)
  const chan: Code[] = [set(cOff, i32x4.splat(i32.mul(get(c), get(HW))))];
  const addrOf = (l: number): Code => i32.add(get(x), i32.shl(i32x4.extract_lane(get(a), l), i32.const(2)));
  for (let e = 0; e < 16; e++) {
    chan.push(
      set(a, i32x4.add(get(offs[e]!), get(cOff))),
      set(d[e]!, v128.load32_splat(addrOf(0))),
      ...[1, 2, 3].map((l) => set(d[e]!, f32x4.replace_lane(get(d[e]!), l, f32.load(addrOf(l))))),
      set(d[e]!, v128.and(get(d[e]!), get(masks[e]!))),
    );
  }
  // B^T d: over rows r, per column s
  for (let s = 0; s < 4; s++) {
    const dr = (r: number): Code => get(d[4 * r + s]!);
    chan.push(
      set(tt[s]!, f32x4.sub(dr(0), dr(2))),
      set(tt[4 + s]!, f32x4.add(dr(1), dr(2))),
      set(tt[8 + s]!, f32x4.sub(dr(2), dr(1))),
      set(tt[12 + s]!, f32x4.sub(dr(1), dr(3))),
    );
  }
  // (B^T d) B: over columns, per row i; V[4i + j] stored at point 4i + j's panel jp, row c, half h
  for (let i = 0; i < 4; i++) {
    const ts = (s: number): Code => get(tt[4 * i + s]!);
    const v = [f32x4.sub(ts(0), ts(2)), f32x4.add(ts(1), ts(2)), f32x4.sub(ts(2), ts(1)), f32x4.sub(ts(1), ts(3))];
    v.forEach((val, j) => chan.push(v128.store(i32.add(get(out), i32.mul(i32.const(4 * i + j), get(pointStride))), val)));
  }
  chan.push(set(out, i32.add(get(out), i32.const(NR * 4))));
  f.emit(
    set(HW, i32.mul(get(H), get(W))),
    set(tiles1, i32.mul(get(TH), get(TW))),
    set(vH, i32x4.splat(get(H))),
    set(vW, i32x4.splat(get(W))),
    set(nPanels, i32.div_u(i32.add(get(nTiles), i32.const(NR - 1)), i32.const(NR))),
    set(jp, i32.mul(get(t), get(PT))),
    set(jEnd, i32.add(get(jp), get(PT))),
    if_(i32.gt_s(get(jEnd), get(nPanels)), [set(jEnd, get(nPanels))]),
    forRange(jp, get(jp), get(jEnd), 1, [
      ...forRange(h, i32.const(0), i32.const(2), 1, [
        ...laneSetup.flat(),
        // panel jp holds C rows of NR floats; this half is lanes 4h .. 4h+3
        ...set(out, i32.add(get(dst), i32.add(i32.mul(i32.mul(get(jp), get(C)), i32.const(NR * 4)), i32.shl(get(h), i32.const(4))))),
        ...forRange(c, i32.const(0), get(C), 1, chan),
      ]),
    ]),
  );
}

/**
 * winograd_output_task(args = [c, ldc, pointStride, O, TH, TW, Ho, Wo, tile0, nTiles, y, ldy, pix0, GB], t):
 * Y for the 4-tile groups [t*GB, t*GB + GB): y[o * ldy/4 + pixel column - pix0] for every o < O.
 */
function emitOutputTask(m: ModuleBuilder): void {
  const f = m.func('winograd_output_task', [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [cb, ldc, pointStride, O, TH, TW, Ho, Wo, tile0, nTiles, y, ldy, pix0, GB] = f.argLocals(args, WINOGRAD_OUTPUT_ARGS_LEN);
  const [grp, gEnd, o, src, dst, tiles1, tile, n, rem, ty, tx, fast, Wo4, tx0] = f.locals(ValType.i32, 14);
  const pix = f.locals(ValType.i32, 4); // pixel column of each lane's (0, 0) output, relative to pix0
  const ok = f.locals(ValType.i32, 4); // lane holds a tile
  const dx = f.locals(ValType.i32, 4); // the tile's right column exists (2 tx + 1 < Wo)
  const dy = f.locals(ValType.i32, 4); // the tile's bottom row exists
  const mv = f.locals(ValType.v128, 16);
  const [t00, t01, t02, t03, t10, t11, t12, t13, y00, y01, y10, y11] = f.locals(ValType.v128, 12);
  const setup: Code[] = [];
  for (let l = 0; l < 4; l++) {
    setup.push(
      set(tile, i32.add(get(tile0), i32.add(i32.shl(get(grp), i32.const(2)), i32.const(l)))),
      set(ok[l]!, i32.lt_s(i32.add(i32.shl(get(grp), i32.const(2)), i32.const(l)), get(nTiles))),
      set(n, i32.div_u(get(tile), get(tiles1))),
      set(rem, i32.rem_u(get(tile), get(tiles1))),
      set(ty, i32.div_u(get(rem), get(TW))),
      set(tx, i32.rem_u(get(rem), get(TW))),
      set(pix[l]!, i32.sub(i32.add(i32.mul(get(n), i32.mul(get(Ho), get(Wo))),
        i32.add(i32.mul(i32.shl(get(ty), i32.const(1)), get(Wo)), i32.shl(get(tx), i32.const(1)))), get(pix0))),
      set(dx[l]!, i32.lt_s(i32.add(i32.shl(get(tx), i32.const(1)), i32.const(1)), get(Wo))),
      set(dy[l]!, i32.lt_s(i32.add(i32.shl(get(ty), i32.const(1)), i32.const(1)), get(Ho))),
    );
    if (l === 0) setup.push(set(tx0, get(tx)));
  }
  // fast: four whole tiles side by side in one tile row (tx0 + 3 < TW: the lanes are tiles tx0 .. tx0+3
  // of lane 0's row; lane 3 valid with its right column and the row's bottom row present)
  setup.push(set(fast, i32.and(i32.and(get(ok[3]!), get(dx[3]!)),
    i32.and(get(dy[0]!), i32.lt_s(i32.add(get(tx0), i32.const(3)), get(TW))))));
  // 16 M vectors (4 tiles each) of row o, then A^T M A
  const perO: Code[] = [];
  for (let xi = 0; xi < 16; xi++) {
    perO.push(set(mv[xi]!, v128.load(i32.add(get(src), i32.mul(i32.const(xi), get(pointStride))))));
  }
  const M = (i: number, j: number): Code => get(mv[4 * i + j]!);
  const tRow0 = [t00, t01, t02, t03], tRow1 = [t10, t11, t12, t13];
  for (let j = 0; j < 4; j++) {
    // A^T M: row 0 = M0 + M1 + M2, row 1 = M1 - M2 - M3
    perO.push(
      set(tRow0[j]!, f32x4.add(f32x4.add(M(0, j), M(1, j)), M(2, j))),
      set(tRow1[j]!, f32x4.sub(f32x4.sub(M(1, j), M(2, j)), M(3, j))),
    );
  }
  for (const [row, y0, y1] of [[tRow0, y00, y01], [tRow1, y10, y11]] as const) {
    perO.push(
      set(y0, f32x4.add(f32x4.add(get(row[0]!), get(row[1]!)), get(row[2]!))),
      set(y1, f32x4.sub(f32x4.sub(get(row[1]!), get(row[2]!)), get(row[3]!))),
    );
  }
  // lanes (f32) 0,4,1,5 and 2,6,3,7 of (a, b): a tile row's outputs interleaved into pixel order
  const bytes = (lanes: number[]): number[] => lanes.flatMap((q) => [4 * q, 4 * q + 1, 4 * q + 2, 4 * q + 3]);
  const lo = bytes([0, 4, 1, 5]), hi = bytes([2, 6, 3, 7]);
  const at = (p: Code): Code => i32.add(get(dst), i32.shl(p, i32.const(2)));
  const slow: Code[] = [];
  for (let l = 0; l < 4; l++) {
    slow.push(if_(get(ok[l]!), [
      f32.store(at(get(pix[l]!)), f32x4.extract_lane(get(y00), l)),
      if_(get(dx[l]!), [f32.store(at(i32.add(get(pix[l]!), i32.const(1))), f32x4.extract_lane(get(y01), l))]),
      if_(get(dy[l]!), [
        f32.store(at(i32.add(get(pix[l]!), get(Wo))), f32x4.extract_lane(get(y10), l)),
        if_(get(dx[l]!), [f32.store(at(i32.add(i32.add(get(pix[l]!), get(Wo)), i32.const(1))), f32x4.extract_lane(get(y11), l))]),
      ]),
    ]));
  }
  perO.push(if_(get(fast), [
    v128.store(at(get(pix[0]!)), v128.shuffle(get(y00), get(y01), lo)),
    v128.store(at(get(pix[0]!)), v128.shuffle(get(y00), get(y01), hi), 16),
    v128.store(i32.add(at(get(pix[0]!)), get(Wo4)), v128.shuffle(get(y10), get(y11), lo)),
    v128.store(i32.add(at(get(pix[0]!)), get(Wo4)), v128.shuffle(get(y10), get(y11), hi), 16),
  ], slow));
  const nGroups = i32.shr_u(i32.add(get(nTiles), i32.const(3)), i32.const(2));
  f.emit(
    set(tiles1, i32.mul(get(TH), get(TW))),
    set(Wo4, i32.shl(get(Wo), i32.const(2))),
    set(grp, i32.mul(get(t), get(GB))),
    set(gEnd, i32.add(get(grp), get(GB))),
    if_(i32.gt_s(get(gEnd), nGroups), [set(gEnd, nGroups)]),
    forRange(grp, get(grp), get(gEnd), 1, [
      ...setup.flat(),
      ...forRange(o, i32.const(0), get(O), 1, [
        // row o of every point's C at the group's first tile column; output row o of y
        ...set(src, i32.add(get(cb), i32.add(i32.mul(get(o), get(ldc)), i32.shl(get(grp), i32.const(4))))),
        ...set(dst, i32.add(get(y), i32.mul(get(o), get(ldy)))),
        ...perO.flat(),
      ]),
    ]),
  );
}

export function emitWinogradKernels(m: ModuleBuilder, o: EmitOptions, gemm: { micro: number }, MR: number, NR: number): void {
  const rows = emitWeightRows(m);
  emitWeightTask(m, rows);
  emitGemmTask(m, o, rows, gemm.micro, MR, NR);
  emitInputTask(m, NR);
  emitOutputTask(m);
}
