// The fast CPU ops on heap pointers: each function plans an op (operand roles, blocking, task counts),
// takes scratch from the heap, launches the kernels of kernel_module.ts and releases the scratch. All
// tensors are contiguous f32 at byte addresses in the runtime's memory; shapes use named dims.
// The backend (wasm_backend.ts) owns tensor storage and calls these.

import type { Activation, BinaryOp, UnaryOp } from '@cnx/tensor';
import { ATTN_ARGS_LEN, attentionPackBytes, attentionSlotBytes } from './attention_kernels.js';
import { CONV_PACK_ARGS_LEN } from './conv_kernels.js';
import { COPY_ARGS, ELEMENTWISE_CHUNK, VECTOR_UNARY } from './elementwise_kernels.js';
import { BIAS, EPILOGUE_ARGS, epilogueName } from './epilogue_kernels.js';
import { GEMM_MR, GEMM_NR } from './gemm_kernels.js';
import type { WasmRuntime } from './runtime.js';
import {
  WINOGRAD_GEMM_ARGS_LEN, WINOGRAD_INPUT_ARGS_LEN, WINOGRAD_OUTPUT_ARGS_LEN, WINOGRAD_POINTS, WINOGRAD_WEIGHT_ARGS_LEN,
} from './winograd_kernels.js';

const MR = GEMM_MR, NR = GEMM_NR;
const KC = 256;
/** Largest packed block (K x task columns) run without k-blocking. */
const FULL_K_BYTES = 384 * 1024;
/** Below this many multiply-adds an op runs on the calling thread (waking the pool costs ~10-50 us). */
const SERIAL_MACS = 1 << 16;
/**
 * A Linear (b = weight [N, K]) with fewer rows than this runs as C^T = W @ x^T: the weight streams once,
 * in place, and the epilogue transposes. With more rows, packing W^T costs under ~1/T_FORM_MAX_M of the
 * product and the plain form avoids the transposing epilogue (~6 % of a [2048 x 320] @ [320 x 2560]).
 */
const T_FORM_MAX_M = 256;
/** Upper bound of packed panel floats per GEMM chunk (conv columns are chunked to stay under it). */
const PACK_CAP_FLOATS = 1 << 23;

/** Scratch blocks of one op, released together. */
class Scratch {
  private readonly blocks: [number, number][] = [];
  constructor(private readonly rt: WasmRuntime) {}
  alloc(bytes: number, what: string): number {
    const p = this.rt.heap.alloc(bytes, what);
    this.blocks.push([p, bytes]);
    return p;
  }
  release(): void {
    for (const [p, b] of this.blocks) this.rt.heap.release(p, b);
    this.blocks.length = 0;
  }
}

function ceilDiv(a: number, b: number): number {
  return Math.ceil(a / b);
}

/** Row/column task split of an M x (nPanels*NR) GEMM for `threads` threads. */
function gemmTasks(rt: WasmRuntime, M: number, nPanels: number): { MC: number; PC: number; rowTasks: number; colTasks: number } {
  const target = rt.threads > 1 ? rt.threads * 4 : 1;
  const MC = Math.max(MR, Math.ceil(Math.ceil(M / target) / MR) * MR);
  const rowTasks = ceilDiv(M, MC);
  let colTasks = Math.max(1, Math.min(nPanels, ceilDiv(target, rowTasks)));
  // A task's k-block of panels (KC x PC*NR floats) should stay in L2: at most 64 panels (512 KiB).
  colTasks = Math.max(colTasks, ceilDiv(nPanels, 64));
  const PC = ceilDiv(nPanels, colTasks);
  return { MC, PC, rowTasks, colTasks: ceilDiv(nPanels, PC) };
}

/** Pack P[k, n] = src[k*rs + n*cs] (element strides), k < K, n < N, into NR panels at dst. */
function packPanels(rt: WasmRuntime, src: number, rs: number, cs: number, K: number, N: number, dst: number, serial: boolean): void {
  const nPanels = ceilDiv(N, NR);
  const PT = Math.max(1, ceilDiv(nPanels, rt.threads * 4));
  rt.launch('gemm_pack_task', [src, rs, cs, K, N, dst, PT], ceilDiv(nPanels, PT), [], serial);
}

/**
 * Floats per row of the GEMM's C buffer: the padded width plus 16, so rows are not a power of two
 * apart (the transposing epilogue walks C down its columns; power-of-two strides map every row to the
 * same few cache sets).
 */
const ldcFloats = (nPanels: number): number => nPanels * NR + 16;
const cBytes = (M: number, nPanels: number): number => ceilDiv(M, MR) * MR * ldcFloats(nPanels) * 4;

/** C[Mp, ldc] = U[M, K] @ packed P. */
function gemmCore(rt: WasmRuntime, u: number, lda: number, M: number, K: number, p: number, nPanels: number, c: number, serial: boolean): void {
  if (K === 0) {
    rt.f32(c, cBytes(M, nPanels) / 4).fill(0); // an empty sum; the epilogue still runs
    return;
  }
  const t = gemmTasks(rt, M, nPanels);
  // k-blocking keeps a task's KC x PC*NR block of P in L2 while MR-row groups of U pass over it. When
  // the whole K x PC*NR block fits anyway (few columns: the weight-streaming GEMMs of small latents),
  // one pass over K streams each U row contiguously, which the prefetchers like better than 1 KiB
  // pieces of rows far apart.
  const kc = t.PC * NR * K * 4 <= FULL_K_BYTES ? K : KC;
  rt.launch('gemm_task', [u, lda, M, p, nPanels, K, c, ldcFloats(nPanels) * 4, t.MC, t.PC, kc, t.colTasks], t.rowTasks * t.colTasks, [], serial);
}

export interface EpilogueSpec {
  layout: 'seg' | 'trans';
  act: Activation;
  alpha: number;
  out: number;
  rowStride: number;
  /** seg: columns per segment and the output stride between segments. */
  S?: number;
  segStride?: number;
  bias: number;
  biasMode: number;
  res: number;
}

function epilogue(rt: WasmRuntime, c: number, ldcBytes: number, R: number, Nc: number, e: EpilogueSpec, serial: boolean): void {
  const along = e.layout === 'seg' ? R : Nc;
  const block = Math.max(1, ceilDiv(along, rt.threads * 4));
  const f: number[] = new Array(13).fill(0);
  f[EPILOGUE_ARGS.c] = c; f[EPILOGUE_ARGS.ldc] = ldcBytes; f[EPILOGUE_ARGS.R] = R; f[EPILOGUE_ARGS.Nc] = Nc;
  f[EPILOGUE_ARGS.out] = e.out; f[EPILOGUE_ARGS.rowStride] = e.rowStride; f[EPILOGUE_ARGS.S] = e.S ?? Nc;
  f[EPILOGUE_ARGS.segStride] = e.segStride ?? 0; f[EPILOGUE_ARGS.bias] = e.bias; f[EPILOGUE_ARGS.biasMode] = e.biasMode;
  f[EPILOGUE_ARGS.res] = e.res; f[EPILOGUE_ARGS.alpha] = e.alpha; f[EPILOGUE_ARGS.block] = block;
  rt.launch(epilogueName(e.layout, e.act), f, ceilDiv(along, block), [EPILOGUE_ARGS.alpha], serial);
}

export interface MatmulPlan {
  /** a: [Ba, M, K] ([Ba, K, M] with transA); b: [Bb, K, N] ([Bb, N, K] with transB). */
  Ba: number; Bb: number; M: number; N: number; K: number;
  transA: boolean; transB: boolean;
  alpha: number; act: Activation;
  /** [N] or 0. */
  bias: number;
  /** [B, M, N] or 0. */
  res: number;
}

/**
 * out [B, M, N] = act(alpha * a@b + bias) + res. The operand with k-contiguous rows and more elements
 * is read in place (U); the other is packed. A Linear (b = weight [N, K] shared by the batch) runs as
 * C^T = W @ x^T over all B*M rows at once, so its weight streams once per call.
 */
export function matmul(rt: WasmRuntime, a: number, b: number, out: number, p: MatmulPlan): void {
  const { Ba, Bb, M, N, K } = p;
  const B = Math.max(Ba, Bb);
  const s = new Scratch(rt);
  const serial = B * M * N * K < SERIAL_MACS;
  try {
    // U = b^T rows (b stored [N, K]), P = a^T: the "transposed" form
    const useT = p.transB && (p.transA || (N >= M && M < T_FORM_MAX_M));
    if (useT) {
      // Merge the batch into the columns when the weight is shared and a is [B*M, K] contiguous.
      const merge = Bb === 1 && !p.transA;
      const groups = merge ? 1 : B;
      const cols = merge ? B * M : M;
      const nPanels = ceilDiv(cols, NR);
      const pk = s.alloc(nPanels * NR * K * 4, 'matmul packed operand');
      const c = s.alloc(cBytes(N, nPanels), 'matmul tile buffer');
      for (let g = 0; g < groups; g++) {
        const aOff = a + (Ba === 1 ? 0 : g * M * K) * 4;
        const bOff = b + (Bb === 1 ? 0 : g * N * K) * 4;
        // P[k, m] = a[m, k] (rs 1, cs K) or, stored [K, M], a[k, m] (rs M, cs 1)
        packPanels(rt, aOff, p.transA ? M : 1, p.transA ? 1 : K, K, cols, pk, serial);
        gemmCore(rt, bOff, K * 4, N, K, pk, nPanels, c, serial);
        const o = g * M * N * 4;
        epilogue(rt, c, ldcFloats(nPanels) * 4, N, cols, {
          layout: 'trans', act: p.act, alpha: p.alpha, out: out + o, rowStride: N,
          bias: p.bias, biasMode: p.bias ? BIAS.row : BIAS.none, res: p.res ? p.res + o : 0,
        }, serial);
      }
      return;
    }
    // U = a rows [M, K]; needs a k-contiguous a: transposed a is copied first.
    let aRows = a;
    if (p.transA) {
      aRows = s.alloc(Ba * M * K * 4, 'matmul transposed a');
      for (let g = 0; g < Ba; g++) copyStrided(rt, a + g * K * M * 4, aRows + g * M * K * 4, [1, 1, M, K], [0, 0, 1, M]);
    }
    const nPanels = ceilDiv(N, NR);
    const pk = s.alloc(nPanels * NR * K * 4, 'matmul packed operand');
    const c = s.alloc(cBytes(M, nPanels), 'matmul tile buffer');
    let packedFor = -1;
    for (let g = 0; g < B; g++) {
      const bi = Bb === 1 ? 0 : g;
      const bOff = b + bi * K * N * 4;
      if (packedFor !== bi) {
        packPanels(rt, bOff, p.transB ? 1 : N, p.transB ? K : 1, K, N, pk, serial);
        packedFor = bi;
      }
      gemmCore(rt, aRows + (Ba === 1 ? 0 : g * M * K) * 4, K * 4, M, K, pk, nPanels, c, serial);
      const o = g * M * N * 4;
      epilogue(rt, c, ldcFloats(nPanels) * 4, M, N, {
        layout: 'seg', act: p.act, alpha: p.alpha, out: out + o, rowStride: N, S: N, segStride: 0,
        bias: p.bias, biasMode: p.bias ? BIAS.col : BIAS.none, res: p.res ? p.res + o : 0,
      }, serial);
    }
  } finally {
    s.release();
  }
}

export interface Conv2dPlan {
  N: number; C: number; H: number; W: number;
  O: number; KH: number; KW: number;
  stride: readonly [number, number];
  padding: readonly [number, number, number, number];
  groups: number;
  act: Activation;
  bias: number;
  res: number;
}

export function conv2dOutSize(p: Conv2dPlan): [number, number] {
  const [sh, sw] = p.stride;
  const [pt, pb, pl, pr] = p.padding;
  return [Math.floor((p.H + pt + pb - p.KH) / sh) + 1, Math.floor((p.W + pl + pr - p.KW) / sw) + 1];
}

/** Winograd F(2x2, 3x3) can compute this conv: 3x3 kernel, stride 1, one group. */
export function winogradApplies(p: Conv2dPlan): boolean {
  return p.KH === 3 && p.KW === 3 && p.stride[0] === 1 && p.stride[1] === 1 && p.groups === 1;
}

/** The conv runs as Winograd F(2x2, 3x3) under the runtime's mode (see WINOGRAD_MIN_*). */
export function useWinograd(rt: WasmRuntime, p: Conv2dPlan): boolean {
  if (rt.winograd === 'never' || !winogradApplies(p)) return false;
  if (rt.winograd === 'always') return true;
  const [Ho, Wo] = conv2dOutSize(p);
  const tiles = p.N * Math.ceil(Ho / 2) * Math.ceil(Wo / 2);
  return tiles >= WINOGRAD_MIN_TILES && p.C >= WINOGRAD_MIN_CHANNELS;
}

/** out [N, O, Ho, Wo] = act(conv(x [N, C, H, W], w [O, C/groups, KH, KW]) + bias) + res. */
export function conv2d(rt: WasmRuntime, x: number, w: number, out: number, p: Conv2dPlan): void {
  if (useWinograd(rt, p)) {
    conv2dWinograd(rt, x, w, out, p);
    return;
  }
  const [Ho, Wo] = conv2dOutSize(p);
  const P = Ho * Wo, G = p.groups, Cg = p.C / G, Og = p.O / G, K = Cg * p.KH * p.KW;
  const serial = p.N * p.O * P * K < SERIAL_MACS;
  // Column chunks: whole samples when a sample fits the cap, else row bands of one sample.
  const capCols = Math.max(NR, Math.floor(PACK_CAP_FLOATS / K / NR) * NR);
  const chunks: [number, number][] = [];
  if (P <= capCols) {
    const ns = Math.max(1, Math.floor(capCols / P));
    for (let n0 = 0; n0 < p.N; n0 += ns) chunks.push([n0 * P, Math.min(ns, p.N - n0) * P]);
  } else {
    for (let n = 0; n < p.N; n++) for (let p0 = 0; p0 < P; p0 += capCols) chunks.push([n * P + p0, Math.min(capCols, P - p0)]);
  }
  const maxCols = Math.max(...chunks.map((c) => c[1]));
  const s = new Scratch(rt);
  try {
    const nPanelsMax = ceilDiv(maxCols, NR);
    const pk = s.alloc(nPanelsMax * NR * K * 4, 'conv2d packed columns');
    const c = s.alloc(cBytes(Og, nPanelsMax), 'conv2d tile buffer');
    for (const [col0, nCols] of chunks) {
      const nPanels = ceilDiv(nCols, NR);
      for (let g = 0; g < G; g++) {
        const PT = Math.max(1, ceilDiv(nPanels, rt.threads * 4));
        // channel block: ~256 packed rows, i.e. a few input rows of CB channels stay in cache for all panels
        const CB = Math.max(1, Math.floor(256 / (p.KH * p.KW)));
        const args = [x, p.C, p.H, p.W, p.KH, p.KW, p.stride[0], p.stride[1], p.padding[0], p.padding[2], Ho, Wo,
          col0, nCols, Cg, g * Cg, pk, PT, CB];
        if (args.length !== CONV_PACK_ARGS_LEN) throw new Error('conv2d: argument struct mismatch');
        rt.launch('conv_pack_task', args, ceilDiv(nPanels, PT), [], serial);
        gemmCore(rt, w + g * Og * K * 4, K * 4, Og, K, pk, nPanels, c, serial);
        // C [Og, nCols] -> out[n, g*Og + r, p]
        const n0 = Math.floor(col0 / P), p0 = col0 % P;
        const o = ((n0 * p.O + g * Og) * P + p0) * 4;
        epilogue(rt, c, ldcFloats(nPanels) * 4, Og, nCols, {
          layout: 'seg', act: p.act, alpha: 1, out: out + o, rowStride: P, S: p0 === 0 ? P : nCols, segStride: p.O * P,
          bias: p.bias ? p.bias + g * Og * 4 : 0, biasMode: p.bias ? BIAS.row : BIAS.none, res: p.res ? p.res + o : 0,
        }, serial);
      }
    }
  } finally {
    s.release();
  }
}

/**
 * Winograd thresholds, from timing both paths on the UNet's 3x3 conv shapes (2-core Xeon, 2 threads,
 * N = 2, loaded box, so +-15 %; bench/README.md). The weight transform (O C filters) is paid per call and
 * amortised over the tiles; fused with the GEMMs it stays cheap down to a few tiles: 1280 -> 1280 and
 * 2560 -> 1280 channels at 4x4 pixels (8 tiles) run 1.5-1.6x the im2col path's speed, 640 -> 640 2.5x,
 * 320 -> 320 1.2x; at 2x2 pixels (2 tiles) 0.2-0.6x. 32 tiles: 1.8x; 128: ~2x; 512: 2.1-2.3x. With few
 * input channels the GEMMs are short in K = C while the output transform still costs O(O) per tile:
 * C = 32 runs 0.8x, C = 64 1.2x (O = 320, 512 tiles). Few output channels are a weak point of the
 * im2col GEMM too: O = 3 with C = 128 runs 1.3x.
 */
const WINOGRAD_MIN_TILES = 8;
const WINOGRAD_MIN_CHANNELS = 64;
/**
 * Up to this many tiles per call the weight transform runs fused with the GEMMs (winograd_gemm_task):
 * with few tiles the transformed weight is the GEMMs' streamed operand, and writing it out and reading it
 * back costs as much as the GEMMs (1280 -> 1280 channels at 4x4 pixels, N = 2: separate transform 18 ms
 * + GEMMs 16 ms; fused 22 ms).
 */
const WINOGRAD_FUSED_MAX_TILES = 128;

/**
 * The conv as Winograd F(2x2, 3x3) (winograd_kernels.ts): U [O, 16, C] = G w G^T, then per chunk of
 * tiles V = B^T d B into 16 packed panel sets, 16 GEMMs M_xi [O, tiles] = U_xi @ V_xi, Y = A^T M A into
 * pixel rows, and the usual epilogue (bias, activation, residual) on Y. Chunks are whole samples, or
 * bands of tile rows of one sample, so each chunk's pixels are one contiguous range of columns.
 */
function conv2dWinograd(rt: WasmRuntime, x: number, w: number, out: number, p: Conv2dPlan): void {
  const [Ho, Wo] = conv2dOutSize(p);
  const { N, C, O } = p;
  const P = Ho * Wo, TH = Math.ceil(Ho / 2), TW = Math.ceil(Wo / 2), T1 = TH * TW;
  const serial = p.N * p.O * P * C * 9 < SERIAL_MACS;
  const XI = WINOGRAD_POINTS;
  // tiles per chunk: the 16 panel sets (16 C floats per tile) and the 16 C buffers (16 O floats per tile)
  // each stay under the GEMM's packing cap
  const capTiles = Math.max(NR, Math.floor(PACK_CAP_FLOATS / (XI * Math.max(C, O)) / NR) * NR);
  const chunks: { tile0: number; nTiles: number; pix0: number; nPix: number; whole: boolean }[] = [];
  if (T1 <= capTiles) {
    const ns = Math.max(1, Math.floor(capTiles / T1));
    for (let n0 = 0; n0 < N; n0 += ns) {
      const k = Math.min(ns, N - n0);
      chunks.push({ tile0: n0 * T1, nTiles: k * T1, pix0: n0 * P, nPix: k * P, whole: true });
    }
  } else {
    const bandRows = Math.max(1, Math.floor(capTiles / TW));
    for (let n = 0; n < N; n++) {
      for (let ty0 = 0; ty0 < TH; ty0 += bandRows) {
        const ty1 = Math.min(TH, ty0 + bandRows);
        const y0 = 2 * ty0, y1 = Math.min(Ho, 2 * ty1);
        chunks.push({ tile0: n * T1 + ty0 * TW, nTiles: (ty1 - ty0) * TW, pix0: n * P + y0 * Wo, nPix: (y1 - y0) * Wo, whole: ty0 === 0 && ty1 === TH });
      }
    }
  }
  const maxTiles = Math.max(...chunks.map((c) => c.nTiles));
  const maxPix = Math.max(...chunks.map((c) => c.nPix));
  const s = new Scratch(rt);
  try {
    const nPanelsMax = ceilDiv(maxTiles, NR);
    // Few tiles: the weight transform fused with the GEMMs (winograd_gemm_task), groups of R output
    // channels transformed into a per-thread slot of ~1 MiB and used while in cache; R a multiple of MR
    // (a group's last micro-tile must not write the next group's rows) and small enough for 2 groups
    // per thread.
    const fused = maxTiles <= WINOGRAD_FUSED_MAX_TILES;
    const R = Math.max(MR, Math.min(Math.floor((1 << 20) / (XI * C * 4) / MR) * MR, Math.floor(O / (2 * rt.threads) / MR) * MR));
    const slots = rt.threads;
    const u = fused ? s.alloc(slots * R * XI * C * 4 + 64, 'winograd transformed weight slots') : s.alloc(XI * O * C * 4, 'winograd transformed weight');
    const v = s.alloc(XI * nPanelsMax * NR * C * 4, 'winograd transformed input panels');
    const cPoint = cBytes(O, nPanelsMax);
    const cb = s.alloc(XI * cPoint, 'winograd point products');
    const ldy = (maxPix + 16) * 4; // + 16 floats: rows not a power of two apart
    const y = s.alloc(O * ldy, 'winograd output rows');
    if (!fused) {
      const OB = Math.max(1, ceilDiv(O, rt.threads * 4));
      const wArgs = [w, O, C, u, OB];
      if (wArgs.length !== WINOGRAD_WEIGHT_ARGS_LEN) throw new Error('conv2d winograd: argument struct mismatch');
      rt.launch('winograd_weight_task', wArgs, ceilDiv(O, OB), [], serial);
    }
    for (const ch of chunks) {
      const nPanels = ceilDiv(ch.nTiles, NR);
      const vPoint = nPanels * NR * C * 4;
      const PT = Math.max(1, ceilDiv(nPanels, rt.threads * 4));
      const inArgs = [x, C, p.H, p.W, p.padding[0], p.padding[2], TH, TW, ch.tile0, ch.nTiles, v, vPoint, PT];
      if (inArgs.length !== WINOGRAD_INPUT_ARGS_LEN) throw new Error('conv2d winograd: argument struct mismatch');
      rt.launch('winograd_input_task', inArgs, ceilDiv(nPanels, PT), [], serial);
      if (fused) {
        const slotBytes = R * XI * C * 4, counter = u + slots * slotBytes;
        rt.u8(counter, 4).fill(0);
        const kc = nPanels * NR * C * 4 <= FULL_K_BYTES ? C : KC;
        const gArgs = [w, O, C, v, vPoint, nPanels, cb, cPoint, ldcFloats(nPanels) * 4, R, u, slotBytes, counter, kc, ceilDiv(O, R)];
        if (gArgs.length !== WINOGRAD_GEMM_ARGS_LEN) throw new Error('conv2d winograd: argument struct mismatch');
        rt.launch('winograd_gemm_task', gArgs, slots, [], serial);
      } else {
        for (let xi = 0; xi < XI; xi++) gemmCore(rt, u + xi * C * 4, XI * C * 4, O, C, v + xi * vPoint, nPanels, cb + xi * cPoint, serial);
      }
      const groups = ceilDiv(ch.nTiles, 4);
      const GB = Math.max(1, ceilDiv(groups, rt.threads * 4));
      const outArgs = [cb, ldcFloats(nPanels) * 4, cPoint, O, TH, TW, Ho, Wo, ch.tile0, ch.nTiles, y, ldy, ch.pix0, GB];
      if (outArgs.length !== WINOGRAD_OUTPUT_ARGS_LEN) throw new Error('conv2d winograd: argument struct mismatch');
      rt.launch('winograd_output_task', outArgs, ceilDiv(groups, GB), [], serial);
      // Y [O, nPix] -> out[n, o, p]: segments of P pixels (whole samples) or one band of one sample
      const o = ch.pix0 * 4 + Math.floor(ch.pix0 / P) * (O - 1) * P * 4;
      epilogue(rt, y, ldy, O, ch.nPix, {
        layout: 'seg', act: p.act, alpha: 1, out: out + o, rowStride: P, S: ch.whole ? P : ch.nPix, segStride: O * P,
        bias: p.bias, biasMode: p.bias ? BIAS.row : BIAS.none, res: p.res ? p.res + o : 0,
      }, serial);
    }
  } finally {
    s.release();
  }
}

export interface AttentionPlan {
  B: number; Lq: number; Lk: number; H: number; D: number; Dv: number;
  scale: number; causal: boolean;
}

/**
 * out [B, Lq, H, Dv] = softmax(scale q k^T) v per (b, h); with `stats` (a pointer to [B, Lq, H, 2]
 * floats) the row max m and sum l are saved there (logsumexp = m + ln l).
 */
export function attention(rt: WasmRuntime, q: number, k: number, v: number, out: number, p: AttentionPlan, stats = 0): void {
  const s = new Scratch(rt);
  try {
    const pb = attentionPackBytes(p.B, p.H, p.Lk, p.D, p.Dv);
    const kp = s.alloc(pb.k, 'attention packed keys');
    const vp = s.alloc(pb.v, 'attention packed values');
    const slots = rt.threads;
    const slotBytes = attentionSlotBytes(p.Dv);
    const scratch = s.alloc(slots * slotBytes + 64, 'attention scratch');
    const counter = scratch + slots * slotBytes;
    const packArgs = s.alloc(2 * p.B * p.H * 32, 'attention pack arguments');
    rt.u8(counter, 4).fill(0);
    const args = [q, k, v, out, p.B, p.Lq, p.Lk, p.H, p.D, p.Dv, p.scale, p.causal ? 1 : 0, kp, vp, scratch, slotBytes, counter, stats, packArgs];
    if (args.length !== ATTN_ARGS_LEN) throw new Error('attention: argument struct mismatch');
    const serial = p.B * p.H * p.Lq * p.Lk * (p.D + p.Dv) < SERIAL_MACS;
    rt.launch('attn_pack_task', args, 2 * p.B * p.H, [10], serial);
    rt.launch('attn_task', args, serial ? 1 : slots, [10], serial);
  } finally {
    s.release();
  }
}

export interface GroupNormPlan { N: number; C: number; S: number; G: number; eps: number; silu: boolean; weight: number; bias: number }

/** out [N, C, S] = groupnorm(x) (in place allowed); mean/rstd [N, G] when non-zero pointers. */
export function groupNorm(rt: WasmRuntime, x: number, out: number, p: GroupNormPlan, mean = 0, rstd = 0): void {
  rt.launch(p.silu ? 'groupnorm_silu' : 'groupnorm_plain', [x, out, p.C, p.S, p.G, p.weight, p.bias, mean, rstd, p.eps], p.N * p.G, [9],
    p.N * p.C * p.S < 1 << 15);
}

/** out [rows, D] = layernorm(x) over D; mean/rstd [rows] when non-zero pointers. */
export function layerNorm(rt: WasmRuntime, x: number, out: number, rows: number, D: number, weight: number, bias: number, eps: number,
  mean = 0, rstd = 0): void {
  const block = Math.max(1, ceilDiv(rows, rt.threads * 8));
  const s = new Scratch(rt);
  try {
    // The kernel reads weight and bias per element: an absent affine is ones and zeros.
    if (!weight) { weight = s.alloc(D * 4, 'layer norm unit weight'); rt.f32(weight, D).fill(1); }
    if (!bias) { bias = s.alloc(D * 4, 'layer norm zero bias'); rt.f32(bias, D).fill(0); }
    rt.launch('layernorm', [x, out, rows, D, weight, bias, mean, rstd, eps, block], ceilDiv(rows, block), [8], rows * D < 1 << 15);
  } finally {
    s.release();
  }
}

export function softmax(rt: WasmRuntime, x: number, out: number, rows: number, D: number): void {
  const block = Math.max(1, ceilDiv(rows, rt.threads * 8));
  rt.launch('softmax', [x, out, rows, D, block], ceilDiv(rows, block), [], rows * D < 1 << 15);
}

export const hasVectorUnary = (op: UnaryOp): boolean => VECTOR_UNARY.includes(op);

export function unary(rt: WasmRuntime, op: UnaryOp, x: number, out: number, n: number): void {
  rt.launch(`unary_${op}`, [x, x, out, n], ceilDiv(n, ELEMENTWISE_CHUNK), [], n < 1 << 15);
}

export function binary(rt: WasmRuntime, op: BinaryOp, a: number, b: number, out: number, n: number): void {
  rt.launch(`binary_${op}`, [a, b, out, n], ceilDiv(n, ELEMENTWISE_CHUNK), [], n < 1 << 15);
}

export function affine(rt: WasmRuntime, x: number, out: number, n: number, mul: number, add: number): void {
  rt.launch('affine', [x, x, out, n, mul, add], ceilDiv(n, ELEMENTWISE_CHUNK), [4, 5], n < 1 << 15);
}

/** out [rows, F] = h[:, :F] * gelu(h[:, F:]) for h [rows, 2F]. */
export function geglu(rt: WasmRuntime, h: number, out: number, rows: number, F: number): void {
  const block = Math.max(1, ceilDiv(rows, rt.threads * 8));
  rt.launch('geglu', [h, out, rows, F, block], ceilDiv(rows, block), [], rows * F < 1 << 14);
}

/** dst (contiguous, shape d) = src viewed with element strides s; rank 4 (pad with leading 1s / 0 strides). */
export function copyStrided(rt: WasmRuntime, src: number, dst: number, d: readonly number[], s: readonly number[]): void {
  const f = new Array(10).fill(0);
  f[COPY_ARGS.src] = src; f[COPY_ARGS.dst] = dst;
  f[COPY_ARGS.d0] = d[0]; f[COPY_ARGS.d1] = d[1]; f[COPY_ARGS.d2] = d[2]; f[COPY_ARGS.d3] = d[3];
  f[COPY_ARGS.s0] = s[0]; f[COPY_ARGS.s1] = s[1]; f[COPY_ARGS.s2] = s[2]; f[COPY_ARGS.s3] = s[3];
  const n = d[0]! * d[1]! * d[2]! * d[3]!;
  rt.launch('copy_strided', f, d[0]! * d[1]!, [], n < 1 << 15);
}
