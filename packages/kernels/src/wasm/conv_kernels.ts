// conv2d as an implicit GEMM: per group g, out[n, g*Og + o, oy, ox] = sum_k W[g*Og + o, k] *
// cols[k, (n, oy, ox)] with k = (c, ky, kx) over Cg*KH*KW, cols[k, col] = x[n, g*Cg + c, oy*sh - pt +
// ky, ox*sw - pl + kx] (0 outside the input). The weight is the GEMM's unpacked U operand (rows are
// output channels, k contiguous in the OIHW layout), so weights are read in place; this file's packer
// writes the im2col columns straight into the GEMM's NR-wide panels (gemm_kernels.ts), so the column
// matrix never exists unpacked. Columns run over (n, oy, ox) of a chunk of samples, so the small latent
// maps of a UNet's low-resolution blocks still give wide products.
//
// conv_pack_task(args, t): panels [t*PT, t*PT+PT) of the chunk, in blocks of CB input channels: for
// each channel block, every panel of the task takes its rows of that block, so a block's input rows
// stay in cache for all panels (walking all channels for one panel before the next streams the whole
// input once per panel). Per panel, the NR columns' sources are kept as i32x4 lane vectors (sample and
// channel base, top-left input row and column, column valid):
//  - row panels (stride 1, the NR columns consecutive in one output row): per (c, ky, kx) two v128 loads
//    of the input row at ix = ix0 + kx, lanes outside [0, W) or outside the rows zeroed by a mask. The
//    loads may touch up to NR-1 floats before or after the row: that is other data or the heap's slack
//    (heap.ts keeps 64 bytes of readable memory past the top), never used unmasked;
//  - any other panel (strides > 1, panels straddling rows or samples on small maps): per lane the
//    address is computed in i32x4 lanes, masked to 0 where outside, and 4 scalar loads fill a vector.

import { GEMM_NR } from './gemm_kernels.js';
import {
  ValType, forRange, get, i32, i32x4, if_, set, v128, type Code, type ModuleBuilder,
} from './wasm_binary.js';

/** Fields of conv_pack_task's argument struct (i32, element units unless noted). */
export const CONV_PACK_ARGS = {
  x: 0, C: 1, H: 2, W: 3, KH: 4, KW: 5, sh: 6, sw: 7, pt: 8, pl: 9, Ho: 10, Wo: 11,
  col0: 12, nCols: 13, Cg: 14, c0: 15, dst: 16, PT: 17, CB: 18,
} as const;
export const CONV_PACK_ARGS_LEN = 19 as const;

export function emitConvKernels(m: ModuleBuilder, NR = GEMM_NR): void {
  if (NR !== 8) throw new Error('conv_pack_task is written for NR = 8 (two i32x4 lane groups)');
  const f = m.func('conv_pack_task', [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [x, C, H, W, KH, KW, sh, sw, pt, pl, Ho, Wo, col0, nCols, Cg, c0, dst, PT, CB] = f.argLocals(args, CONV_PACK_ARGS_LEN);
  const [jp, jStart, jEnd, out, P, HW, c, ky, kx, col, n, p, cb0, cbEnd, KK, rowPanel, off, nPanels] = f.locals(ValType.i32, 18);
  const [base0, base1, iy0, iy1, ix0, ix1, ok0, ok1] = f.locals(ValType.v128, 8);
  const [m0, m1, a0, v, vH, vW] = f.locals(ValType.v128, 6);
  const [b0s, iy0s, ix0s] = f.locals(ValType.i32, 3);
  const base = [base0, base1], iyv = [iy0, iy1], ixv = [ix0, ix1], okv = [ok0, ok1];

  // Per panel: lane vectors of the NR columns' sources.
  const laneSetup: Code[] = [];
  for (let j = 0; j < NR; j++) {
    const g = j >> 2, l = j & 3;
    const oy = i32.div_u(get(p), get(Wo)), ox = i32.rem_u(get(p), get(Wo));
    laneSetup.push(
      set(col, i32.add(get(col0), i32.add(i32.mul(get(jp), i32.const(NR)), i32.const(j)))),
      set(n, i32.div_u(get(col), get(P))),
      set(p, i32.rem_u(get(col), get(P))),
      set(iy0s, i32.sub(i32.mul(oy, get(sh)), get(pt))),
      set(ix0s, i32.sub(i32.mul(ox, get(sw)), get(pl))),
      set(b0s, i32.mul(i32.add(i32.mul(get(n), get(C)), get(c0)), get(HW))),
      set(base[g]!, i32x4.replace_lane(get(base[g]!), l, get(b0s))),
      set(iyv[g]!, i32x4.replace_lane(get(iyv[g]!), l, get(iy0s))),
      set(ixv[g]!, i32x4.replace_lane(get(ixv[g]!), l, get(ix0s))),
      set(okv[g]!, i32x4.replace_lane(get(okv[g]!), l,
        i32.sub(i32.const(0), i32.lt_s(i32.sub(get(col), get(col0)), get(nCols))))), // -1 (all bits) or 0
    );
  }
  // A row panel: same sample and row in every lane, consecutive columns, stride 1, all columns valid.
  const lane = (vec: number, l: number): Code => i32x4.extract_lane(get(vec), l);
  const rowPanelCond: Code = i32.and(
    i32.and(i32.eq(get(sw), i32.const(1)), i32.eq(lane(ok1, 3), i32.const(-1))),
    i32.and(
      i32.and(i32.eq(lane(iy0, 0), lane(iy1, 3)), i32.eq(lane(base0, 0), lane(base1, 3))),
      i32.eq(i32.add(lane(ix0, 0), i32.const(NR - 1)), lane(ix1, 3)),
    ),
  );

  // Lane masks: all bits where 0 <= iy + ky < H and 0 <= ix + kx < W and the column is valid.
  const inside = (g: number): Code => v128.and(get(okv[g]!), v128.and(
    i32x4.lt_u(i32x4.add(get(iyv[g]!), i32x4.splat(get(ky))), get(vH)),
    i32x4.lt_u(i32x4.add(get(ixv[g]!), i32x4.splat(get(kx))), get(vW)),
  ));
  const rowBody: Code[] = [
    // ix = ix0 + kx for lane 0; lanes ix .. ix+7 of input row iy0 + ky of channel c
    set(m0, inside(0)),
    set(m1, inside(1)),
    set(off, i32.add(i32.add(i32.add(lane(base0, 0), i32.mul(get(c), get(HW))),
      i32.mul(i32.add(lane(iy0, 0), get(ky)), get(W))), i32.add(lane(ix0, 0), get(kx)))),
    // an all-outside row reads nothing (its address may be far outside the input)
    if_(v128.any_true(v128.or(get(m0), get(m1))), [
      v128.store(get(out), v128.and(v128.load(i32.add(get(x), i32.shl(get(off), i32.const(2)))), get(m0))),
      v128.store(get(out), v128.and(v128.load(i32.add(get(x), i32.shl(get(off), i32.const(2))), 16), get(m1)), 16),
    ], [
      v128.store(get(out), v128.const_i32x4(0)),
      v128.store(get(out), v128.const_i32x4(0), 16),
    ]),
  ];
  const gatherBody: Code[] = [];
  for (let g = 0; g < 2; g++) {
    // element offsets of the 4 lanes (0 where outside), then 4 scalar loads, then the mask
    gatherBody.push(
      set(m0, inside(g)),
      set(a0, v128.and(get(m0), i32x4.add(get(base[g]!), i32x4.add(i32x4.splat(i32.mul(get(c), get(HW))),
        i32x4.add(i32x4.mul(i32x4.add(get(iyv[g]!), i32x4.splat(get(ky))), get(vW)), i32x4.add(get(ixv[g]!), i32x4.splat(get(kx)))))))),
      set(v, v128.load32_splat(i32.add(get(x), i32.shl(i32x4.extract_lane(get(a0), 0), i32.const(2))))),
      ...[1, 2, 3].map((l) => set(v, i32x4.replace_lane(get(v), l,
        i32.load(i32.add(get(x), i32.shl(i32x4.extract_lane(get(a0), l), i32.const(2))))))),
      v128.store(get(out), v128.and(get(v), get(m0)), 16 * g),
    );
  }
  f.emit(
    set(HW, i32.mul(get(H), get(W))),
    set(P, i32.mul(get(Ho), get(Wo))),
    set(KK, i32.mul(get(KH), get(KW))),
    set(vH, i32x4.splat(get(H))),
    set(vW, i32x4.splat(get(W))),
    set(nPanels, i32.div_u(i32.add(get(nCols), i32.const(NR - 1)), i32.const(NR))),
    set(jStart, i32.mul(get(t), get(PT))),
    set(jEnd, i32.add(get(jStart), get(PT))),
    if_(i32.gt_s(get(jEnd), get(nPanels)), [set(jEnd, get(nPanels))]),
    forRange(cb0, i32.const(0), get(Cg), get(CB), [
      set(cbEnd, i32.add(get(cb0), get(CB))),
      if_(i32.gt_s(get(cbEnd), get(Cg)), [set(cbEnd, get(Cg))]),
      forRange(jp, get(jStart), get(jEnd), 1, [
        ...laneSetup,
        set(rowPanel, rowPanelCond),
        // rows (cb0*KH*KW ..) of panel jp, which holds K*NR floats
        set(out, i32.add(get(dst), i32.mul(i32.add(i32.mul(get(jp), i32.mul(get(Cg), get(KK))), i32.mul(get(cb0), get(KK))), i32.const(NR * 4)))),
        forRange(c, get(cb0), get(cbEnd), 1, [
          forRange(ky, i32.const(0), get(KH), 1, [
            forRange(kx, i32.const(0), get(KW), 1, [
              if_(get(rowPanel), rowBody, gatherBody),
              set(out, i32.add(get(out), i32.const(NR * 4))),
            ]),
          ]),
        ]),
      ]),
    ]),
  );
}
