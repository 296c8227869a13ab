// conv2d as an implicit GEMM: per group g, out[n, g*Og + o, oy, ox] = sum_k W[g*Og + o, k] *
// cols[k, (n, oy, ox)] with k = (c, ky, kx) over Cg*KH*KW, cols[k, col] = x[n, g*Cg + c, oy*sh - pt +
// ky, ox*sw - pl + kx] (0 outside the input). The weight is the GEMM's unpacked U operand (rows are
// output channels, k contiguous in the OIHW layout), so weights are read in place; this file's packer
// writes the im2col columns straight into the GEMM's NR-wide panels (gemm_kernels.ts), so the column
// matrix never exists unpacked. Columns run over (n, oy, ox) of a chunk of samples, so the small latent
// maps of a UNet's low-resolution blocks still give wide products.
//
// conv_pack_task(args, t): panels [t*PT, t*PT+PT) of the chunk. Fast path: stride-1 convolutions whose
// NR columns lie in one output row copy two v128 per (c, ky, kx) (border lanes fixed up by selects);
// the general path computes each lane's source (or zero) with selects, no branches per element.

import { GEMM_NR } from './gemm_kernels.js';
import {
  ValType, f32, forRange, get, i32, if_, select, set, v128, type Code, type ModuleBuilder,
} from './wasm_binary.js';

/** Fields of conv_pack_task's argument struct (i32, element units unless noted). */
export const CONV_PACK_ARGS = {
  x: 0, C: 1, H: 2, W: 3, KH: 4, KW: 5, sh: 6, sw: 7, pt: 8, pl: 9, Ho: 10, Wo: 11,
  col0: 12, nCols: 13, Cg: 14, c0: 15, dst: 16, PT: 17,
} as const;
export const CONV_PACK_ARGS_LEN = 18 as const;

export function emitConvKernels(m: ModuleBuilder, NR = GEMM_NR): void {
  const f = m.func('conv_pack_task', [ValType.i32, ValType.i32]);
  const [args, t] = [0, 1];
  const [x, C, H, W, KH, KW, sh, sw, pt, pl, Ho, Wo, col0, nCols, Cg, c0, dst, PT] = f.argLocals(args, CONV_PACK_ARGS_LEN);
  const [jp, jEnd, out, P, HW, c, ky, kx, col, n, p, oy, ox, fastRow, src, iy, ix, nPanels] = f.locals(ValType.i32, 18);
  // Per lane: base element offset (sample + channel c0 + iy0*W + ix0), iy0, ix0, column valid.
  const base: number[] = f.locals(ValType.i32, NR);
  const iy0: number[] = f.locals(ValType.i32, NR);
  const ix0: number[] = f.locals(ValType.i32, NR);
  const ok: number[] = f.locals(ValType.i32, NR);
  const [va, vb, z] = f.locals(ValType.v128, 3);

  const laneSetup: Code[] = [];
  for (let j = 0; j < NR; j++) {
    laneSetup.push(
      set(col, i32.add(i32.add(get(col0), i32.mul(get(jp), i32.const(NR))), i32.const(j))),
      set(ok[j]!, i32.lt_s(i32.sub(get(col), get(col0)), get(nCols))),
      set(n, i32.div_u(get(col), get(P))),
      set(p, i32.rem_u(get(col), get(P))),
      set(oy, i32.div_u(get(p), get(Wo))),
      set(ox, i32.rem_u(get(p), get(Wo))),
      set(iy0[j]!, i32.sub(i32.mul(get(oy), get(sh)), get(pt))),
      set(ix0[j]!, i32.sub(i32.mul(get(ox), get(sw)), get(pl))),
      set(base[j]!, i32.add(i32.add(i32.mul(get(n), i32.mul(get(C), get(HW))), i32.mul(get(c0), get(HW))),
        i32.add(i32.mul(get(iy0[j]!), get(W)), get(ix0[j]!)))),
    );
    if (j === 0) laneSetup.push(set(fastRow, i32.const(1)));
    else {
      // fast: same sample and output row as lane 0, consecutive ox (stride 1), and a valid column
      laneSetup.push(set(fastRow, i32.and(get(fastRow), i32.and(get(ok[j]!),
        i32.and(i32.eq(get(iy0[j]!), get(iy0[0]!)), i32.eq(get(base[j]!), i32.add(get(base[0]!), i32.const(j))))))));
    }
  }
  // One lane's value: x[base + c*HW + ky*W + kx] if inside, else 0.
  const laneValue = (j: number): Code => {
    const inside = i32.and(i32.and(get(ok[j]!), i32.lt_u(i32.add(get(iy0[j]!), get(ky)), get(H))),
      i32.lt_u(i32.add(get(ix0[j]!), get(kx)), get(W)));
    return select(
      f32.load(i32.add(get(x), i32.shl(select(i32.add(get(src), get(base[j]!)), i32.const(0), inside), i32.const(2)))),
      f32.const(0),
      inside,
    );
  };
  const general: Code[] = [];
  for (let j = 0; j < NR; j++) general.push(f32.store(get(out), laneValue(j), 4 * j));
  // Fast path: lane j reads x[base0 + j + off]; both vectors in one row when the row is interior.
  const fast: Code[] = [
    set(iy, i32.add(get(iy0[0]!), get(ky))),
    set(ix, i32.add(get(ix0[0]!), get(kx))),
    if_(i32.ge_u(get(iy), get(H)), [
      v128.store(get(out), get(z)),
      ...Array.from({ length: NR / 4 - 1 }, (_, q) => v128.store(get(out), get(z), 16 * (q + 1))),
    ], [
      if_(i32.and(i32.ge_s(get(ix), i32.const(0)), i32.le_s(i32.add(get(ix), i32.const(NR)), get(W))), [
        set(va, v128.load(i32.add(get(x), i32.shl(i32.add(get(src), get(base[0]!)), i32.const(2))))),
        v128.store(get(out), get(va)),
        ...Array.from({ length: NR / 4 - 1 }, (_, q) =>
          v128.store(get(out), v128.load(i32.add(get(x), i32.shl(i32.add(get(src), get(base[0]!)), i32.const(2))), 16 * (q + 1)), 16 * (q + 1))),
      ], general),
    ]),
  ];
  void vb;
  f.emit(
    set(HW, i32.mul(get(H), get(W))),
    set(P, i32.mul(get(Ho), get(Wo))),
    set(z, v128.const_f32x4(0)),
    set(nPanels, i32.div_u(i32.add(get(nCols), i32.const(NR - 1)), i32.const(NR))),
    set(jp, i32.mul(get(t), get(PT))),
    set(jEnd, i32.add(get(jp), get(PT))),
    if_(i32.gt_s(get(jEnd), get(nPanels)), [set(jEnd, get(nPanels))]),
    forRange(jp, get(jp), get(jEnd), 1, [
      ...laneSetup,
      ...set(fastRow, i32.and(get(fastRow), i32.eq(get(sw), i32.const(1)))),
      // panel jp of K*NR floats
      ...set(out, i32.add(get(dst), i32.mul(i32.mul(get(jp), i32.mul(get(Cg), i32.mul(get(KH), get(KW)))), i32.const(NR * 4)))),
      ...forRange(c, i32.const(0), get(Cg), 1, [
        ...forRange(ky, i32.const(0), get(KH), 1, [
          ...forRange(kx, i32.const(0), get(KW), 1, [
            // src = c*HW + ky*W + kx (added to each lane's base)
            ...set(src, i32.add(i32.add(i32.mul(get(c), get(HW)), i32.mul(get(ky), get(W))), get(kx))),
            ...if_(get(fastRow), fast, general),
            ...set(out, i32.add(get(out), i32.const(NR * 4))),
          ]),
        ]),
      ]),
    ]),
  );
}
