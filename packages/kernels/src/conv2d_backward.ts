// conv2d backward (NCHW, zero padding [top, bottom, left, right], stride, groups, dilation 1) as implicit
// GEMMs on the GPU, the same tiling as the forward (conv2d.ts): nothing im2col-like is materialised.
//
// Forward: y[n, o, oy, ox] = b[o] + sum_{c, ky, kx} w[o, c, ky, kx] x[n, g*Cg + c, oy*sh - pt + ky, ox*sw - pl + kx],
// x [N, C, H, W], w [O, Cg, KH, KW], dy = dL/dy [N, O, Ho, Wo]. CPU reference: @cnx/tensor
// cpu/conv2d_backward.ts. Per group g:
//  - 'grad_input' (a transposed convolution): dX_g [M = Cg, cols = N*H*W] = W_g^T [Cg, K] @ G [K, cols],
//    K = Og*KH*KW, G[(o, ky, kx), (n, iy, ix)] = dy[n, g*Og + o, (iy + pt - ky)/sh, (ix + pl - kx)/sw]
//    when both divisions are exact and land inside [0, Ho) x [0, Wo), else 0. Input rows/columns that no
//    window reads (the forward dropped them) get 0. Stride 2 gathers zeros for 3/4 of (k, col) pairs;
//    the GEMM still runs at tile speed (a sub-pixel split into sh*sw dense GEMMs would save that work).
//  - 'grad_weight' (the correlation of input and output gradient): dW_g [M = Og, cols = Cg*KH*KW] =
//    dY_g [Og, K] @ X_col^T [K, cols], K = N*Ho*Wo (the reduction runs over the batch and every output
//    position), X_col^T[(n, oy, ox), (c, ky, kx)] = x[n, g*Cg + c, oy*sh - pt + ky, ox*sw - pl + kx].
//    The reduction is long (2 * 4096 at SD1.5 64x64 latents, 2 * 262144 for ControlNeXt's convs at 512x512)
//    and the output small, so split-K over N*Ho*Wo is what fills the GPU: S workgroups per output tile
//    each reduce a K slice into a scratch [S, O, Cg*KH*KW], and 'splitk_reduce' adds the S partials.
//  - 'bias_partials' / 'bias_finish': db[o] = sum over n, oy, ox of dy: one workgroup per (chunk, o) sums
//    a chunk of the N*Ho*Wo values (tree sum), then one thread per o adds the chunks.
// Tiles (ConvBackwardTile): a workgroup computes a BM x BN block of the GEMM; each of its 256 threads owns
// a TM x TN micro-tile strided by BM/TM rows and BN/TN columns (as conv2d.ts). Operands are staged k-major
// in workgroup memory: A k-fastest (w rows and dy rows are contiguous along K), B column-fastest for
// grad_input (dy along the image row) and k-fastest for grad_weight (x along the output row).
// 'wide' (64x64, 4x4 per thread) serves SD's 320-1280 channels, 'narrow' (32x64) and 'thin' (16x64)
// GEMMs of <= 32 and <= 16 rows (ControlNeXt's 16/32-channel convs, C = 3 inputs).
// Limits: f32 contiguous tensors; every flat index < 2^32; column tiles over x/y (split past 65535),
// row tiles * groups * K slices over z (<= maxComputeWorkgroupsPerDimension: the plan lowers the split).

import type { Conv2dOptions, Tensor } from '@cnx/tensor';
import { gridFor, packUniforms, type GpuContext } from './webgpu/context.js';

export interface ConvBackwardTile {
  bm: number;
  bn: number;
  bk: number;
  tm: number;
  tn: number;
}

export const CONV_BACKWARD_TILES = {
  wide: { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 },
  narrow: { bm: 32, bn: 64, bk: 16, tm: 2, tn: 4 },
  thin: { bm: 16, bn: 64, bk: 16, tm: 1, tn: 4 },
} as const satisfies Record<string, ConvBackwardTile>;

export type ConvGeometry = Pick<Conv2dOptions, 'stride' | 'padding' | 'groups'>;

export interface Conv2dBackwardParams {
  variant: 'grad_input' | 'grad_weight';
  tile: ConvBackwardTile;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  pt: number;
  pl: number;
  /** K slices (1: the GEMM writes the gradient; else partials for wgslSplitKReduce). */
  splitK: number;
}

const UNIFORMS = /* wgsl */ `
struct U { n: u32, c: u32, h: u32, w: u32, o: u32, ho: u32, wo: u32, cg: u32,
           og: u32, kdim: u32, rows: u32, cols: u32, colTiles: u32, mTiles: u32, kPer: u32, total: u32 }`;

/** Operand loads (A(m, k), B(k, col)) and the output index of each variant, bounds-checked. */
function operandsWgsl(p: Conv2dBackwardParams): { bindings: string; loads: string; outIndex: string; bColFast: boolean } {
  if (p.variant === 'grad_input') {
    return {
      bindings: `@group(0) @binding(0) var<storage, read> Wt: array<f32>;
@group(0) @binding(1) var<storage, read> DY: array<f32>;`,
      loads: /* wgsl */ `
// A(m, k) = w[g*Og + o, m, ky, kx] with k = (o, ky, kx)
fn loadA(m: u32, k: u32, g: u32, kEnd: u32) -> f32 {
  if (m >= u.rows || k >= kEnd) { return 0.0; }
  return Wt[((g * u.og + k / KHW) * u.cg + m) * KHW + k % KHW];
}
// B(k, col) = dy[n, g*Og + o, oy, ox] where oy*sh - pt + ky = iy and ox*sw - pl + kx = ix, else 0
fn loadB(k: u32, col: u32, g: u32, kEnd: u32) -> f32 {
  if (col >= u.cols || k >= kEnd) { return 0.0; }
  let hw = u.h * u.w;
  let n = col / hw;
  let pix = col % hw;
  let o = k / KHW;
  let r = k % KHW;
  let ty = i32(pix / u.w) + PT - i32(r / KW);
  let tx = i32(pix % u.w) + PL - i32(r % KW);
  if (ty < 0 || tx < 0) { return 0.0; }
  let oy = u32(ty) / SH;
  let ox = u32(tx) / SW;
  if (oy * SH != u32(ty) || ox * SW != u32(tx) || oy >= u.ho || ox >= u.wo) { return 0.0; }
  return DY[((n * u.o + g * u.og + o) * u.ho + oy) * u.wo + ox];
}`,
      outIndex: 'let hw = u.h * u.w;\n      let idx = ((cj / hw) * u.c + g * u.cg + m) * hw + cj % hw;',
      bColFast: true,
    };
  }
  return {
    bindings: `@group(0) @binding(0) var<storage, read> DY: array<f32>;
@group(0) @binding(1) var<storage, read> X: array<f32>;`,
    loads: /* wgsl */ `
// A(m, k) = dy[n, g*Og + m, p] with k = (n, p), p = oy*Wo + ox
fn loadA(m: u32, k: u32, g: u32, kEnd: u32) -> f32 {
  if (m >= u.rows || k >= kEnd) { return 0.0; }
  let P = u.ho * u.wo;
  return DY[((k / P) * u.o + g * u.og + m) * P + k % P];
}
// B(k, col) = x[n, g*Cg + c, oy*sh - pt + ky, ox*sw - pl + kx] with k = (n, oy, ox), col = (c, ky, kx)
fn loadB(k: u32, col: u32, g: u32, kEnd: u32) -> f32 {
  if (col >= u.cols || k >= kEnd) { return 0.0; }
  let P = u.ho * u.wo;
  let n = k / P;
  let p = k % P;
  let r = col % KHW;
  let iy = i32((p / u.wo) * SH) - PT + i32(r / KW);
  let ix = i32((p % u.wo) * SW) - PL + i32(r % KW);
  if (iy < 0 || ix < 0 || iy >= i32(u.h) || ix >= i32(u.w)) { return 0.0; }
  return X[((n * u.c + g * u.cg + col / KHW) * u.h + u32(iy)) * u.w + u32(ix)];
}`,
    outIndex: 'let idx = (g * u.og + m) * u.cols + cj;',
    bColFast: false,
  };
}

export function wgsl(p: Conv2dBackwardParams): string {
  const { bm, bn, bk, tm, tn } = p.tile;
  const tx = bn / tn, ty = bm / tm, wg = tx * ty;
  if (!Number.isInteger(tx) || !Number.isInteger(ty) || wg > 256) {
    throw new Error(`conv2d backward: tile ${JSON.stringify(p.tile)} does not divide into a workgroup of <= 256 threads`);
  }
  const ops = operandsWgsl(p);
  const astr = bm + 1; // padded A rows: the k-fastest staging stores do not hit one bank
  const split = p.splitK > 1;
  const stageB = ops.bColFast
    ? 'let j = s % BN;\n      let kk = s / BN;'
    : 'let kk = s % BK;\n      let j = s / BK;';
  return /* wgsl */ `// conv2d backward ${p.variant}, ${p.kh}x${p.kw} stride ${p.sh}x${p.sw}, tile ${bm}x${bn}x${bk}${split ? `, split-K ${p.splitK}` : ''}
${UNIFORMS}
${ops.bindings}
@group(0) @binding(2) var<storage, read_write> Out: array<f32>;
@group(0) @binding(3) var<uniform> u: U;

const BM = ${bm}u; const BN = ${bn}u; const BK = ${bk}u; const TM = ${tm}u; const TN = ${tn}u;
const TX = ${tx}u; const TY = ${ty}u; const WG = ${wg}u; const ASTR = ${astr}u;
const KW = ${p.kw}u; const KHW = ${p.kh * p.kw}u;
const SH = ${p.sh}u; const SW = ${p.sw}u; const PT = ${p.pt}; const PL = ${p.pl};
const SPLITK = ${p.splitK}u;

var<workgroup> As: array<f32, ${bk * astr}>;
var<workgroup> Bs: array<f32, ${bk * bn}>;
${ops.loads}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let colTile = wid.x + wid.y * nwg.x;
  if (colTile >= u.colTiles) { return; }
  // z = (group * mTiles + row tile) * SPLITK + K slice
  let ks = wid.z % SPLITK;
  let mTile = (wid.z / SPLITK) % u.mTiles;
  let g = wid.z / (SPLITK * u.mTiles);
  let kBegin = ks * u.kPer;
  let kEnd = min(u.kdim, kBegin + u.kPer);
  let m0 = mTile * BM;
  let col0 = colTile * BN;
  let tx = tid % TX;
  let ty = tid / TX;

  var acc: array<array<f32, TN>, TM>;
  for (var k0 = kBegin; k0 < kEnd; k0 += BK) {
    for (var s = tid; s < BK * BM; s += WG) {
      let kk = s % BK;
      let m = s / BK;
      As[kk * ASTR + m] = loadA(m0 + m, k0 + kk, g, kEnd);
    }
    for (var s = tid; s < BK * BN; s += WG) {
      ${stageB}
      Bs[kk * BN + j] = loadB(k0 + kk, col0 + j, g, kEnd);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var a: array<f32, TM>;
      var b: array<f32, TN>;
      for (var i = 0u; i < TM; i++) { a[i] = As[kk * ASTR + ty + i * TY]; }
      for (var j = 0u; j < TN; j++) { b[j] = Bs[kk * BN + tx + j * TX]; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) { acc[i][j] = fma(a[i], b[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }

  for (var j = 0u; j < TN; j++) {
    let cj = col0 + tx + j * TX;
    if (cj >= u.cols) { continue; }
    for (var i = 0u; i < TM; i++) {
      let m = m0 + ty + i * TY;
      if (m >= u.rows) { continue; }
      ${ops.outIndex}
      Out[${split ? 'ks * u.total + idx' : 'idx'}] = acc[i][j];
    }
  }
}
`;
}

/** Split-K finish: out[idx] = sum_s part[s, idx], one thread per output. */
export function wgslSplitKReduce(splitK: number): string {
  return /* wgsl */ `${UNIFORMS}
@group(0) @binding(0) var<storage, read> Part: array<f32>;
@group(0) @binding(1) var<storage, read_write> Out: array<f32>;
@group(0) @binding(2) var<uniform> u: U;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let idx = (wid.x + wid.y * nwg.x) * 256u + tid;
  if (idx >= u.total) { return; }
  var acc = 0.0;
  for (var s = 0u; s < ${splitK}u; s++) { acc += Part[s * u.total + idx]; }
  Out[idx] = acc;
}
`;
}

/** db: 'bias_partials' (workgroup per (chunk, o), tree sum) and 'bias_finish' (thread per o). */
export function wgslBias(stage: 'bias_partials' | 'bias_finish'): string {
  const header = /* wgsl */ `
struct UB { n: u32, o: u32, p: u32, parts: u32, chunk: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> In: array<f32>;
@group(0) @binding(1) var<storage, read_write> Out: array<f32>;
@group(0) @binding(2) var<uniform> u: UB;`;
  if (stage === 'bias_finish') {
    return /* wgsl */ `${header}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let o = gid.x;
  if (o >= u.o) { return; }
  var acc = 0.0;
  for (var q = 0u; q < u.parts; q++) { acc += In[o * u.parts + q]; }
  Out[o] = acc;
}
`;
  }
  return /* wgsl */ `${header}
const WG = 256u;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let part = wid.x;
  let o = wid.y;
  let total = u.n * u.p;
  let end = min((part + 1u) * u.chunk, total);
  var acc = 0.0;
  for (var k = part * u.chunk + tid; k < end; k += WG) { acc += In[((k / u.p) * u.o + o) * u.p + k % u.p]; }
  red[tid] = acc;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (tid < stride) { red[tid] = red[tid] + red[tid + stride]; }
    workgroupBarrier();
  }
  if (tid == 0u) { Out[o * u.parts + part] = red[0]; }
}
`;
}

export interface Conv2dBackwardPlan {
  params: Conv2dBackwardParams;
  outShape: number[];
  uniforms: ArrayBuffer;
  workgroups: [number, number, number];
  /** The reduction of the split-K partials, when params.splitK > 1. */
  reduceWorkgroups?: [number, number];
}

/** Output tiles before split-K stops paying, shortest K slice, most slices. */
const SPLITK_TARGET_WORKGROUPS = 512;
const SPLITK_MIN_SLICE = 256;
const SPLITK_MAX = 256;

/** K slices for a GEMM of `workgroups` output tiles and reduction length kdim (1: no split). */
export function chooseBackwardSplitK(workgroups: number, kdim: number): number {
  if (workgroups >= SPLITK_TARGET_WORKGROUPS / 2) return 1;
  const want = Math.ceil(SPLITK_TARGET_WORKGROUPS / workgroups);
  return Math.max(1, Math.min(want, SPLITK_MAX, Math.floor(kdim / SPLITK_MIN_SLICE)));
}

export function chooseBackwardTile(rows: number): ConvBackwardTile {
  if (rows <= 16) return CONV_BACKWARD_TILES.thin;
  if (rows <= 32) return CONV_BACKWARD_TILES.narrow;
  return CONV_BACKWARD_TILES.wide;
}

/**
 * Plan one of the two GEMMs. xShape [N, C, H, W] and wShape [O, Cg, KH, KW] are the forward's operand
 * shapes; dyShape must be the forward's output shape.
 */
export function planConv2dBackward(
  variant: Conv2dBackwardParams['variant'], xShape: readonly number[], wShape: readonly number[], dyShape: readonly number[],
  opts: ConvGeometry, maxPerDim = 65535, tile?: ConvBackwardTile, splitK?: number,
): Conv2dBackwardPlan {
  const op = variant === 'grad_input' ? 'conv2dBackwardInput' : 'conv2dBackwardWeight';
  const [N, C, H, W] = xShape as [number, number, number, number];
  const [O, Cg, KH, KW] = wShape as [number, number, number, number];
  const G = opts.groups;
  const [sh, sw] = opts.stride;
  const [pt, pb, pl, pr] = opts.padding;
  if (xShape.length !== 4 || wShape.length !== 4 || !(G > 0) || C !== Cg * G || O % G !== 0) {
    throw new Error(`${op}: expected x [N, C, H, W] and w [O, C/groups, kh, kw] with groups=${G}, found x [${xShape.join(', ')}], w [${wShape.join(', ')}]`);
  }
  const Ho = Math.floor((H + pt + pb - KH) / sh) + 1, Wo = Math.floor((W + pl + pr - KW) / sw) + 1;
  if (!(Ho > 0 && Wo > 0)) throw new Error(`${op}: kernel ${KH}x${KW} larger than padded input ${H}x${W} (padding [${opts.padding.join(', ')}])`);
  const want = [N, O, Ho, Wo];
  if (dyShape.length !== 4 || dyShape.some((d, i) => d !== want[i])) {
    throw new Error(`${op}: expected dy [${want.join(', ')}] (the forward's output shape), found [${dyShape.join(', ')}]`);
  }
  const og = O / G, khw = KH * KW;
  const [rows, cols, kdim] = variant === 'grad_input' ? [Cg, N * H * W, og * khw] : [og, Cg * khw, N * Ho * Wo];
  const outShape = variant === 'grad_input' ? [N, C, H, W] : [O, Cg, KH, KW];
  const total = outShape.reduce((a, d) => a * d, 1);
  const t = tile ?? chooseBackwardTile(rows);
  const colTiles = Math.ceil(cols / t.bn), mTiles = Math.ceil(rows / t.bm);
  let S = Math.max(1, Math.floor(splitK ?? chooseBackwardSplitK(colTiles * mTiles * G, kdim)));
  while (S > 1 && mTiles * G * S > maxPerDim) S--;
  if (mTiles * G * S > maxPerDim) throw new Error(`${op}: ${mTiles * G} row tiles x groups exceed ${maxPerDim} workgroups per dimension`);
  // slices are whole K steps, so only the last one is partial
  const kPer = S > 1 ? Math.ceil(kdim / S / t.bk) * t.bk : kdim;
  S = Math.ceil(kdim / kPer) || 1;
  if (S * total >= 2 ** 32 || N * C * H * W >= 2 ** 32) throw new Error(`${op}: tensors beyond 2^32 elements (u32 indexing)`);
  const [gx, gy] = gridFor(colTiles, maxPerDim);
  const uniforms = packUniforms([
    ['u32', N], ['u32', C], ['u32', H], ['u32', W], ['u32', O], ['u32', Ho], ['u32', Wo], ['u32', Cg],
    ['u32', og], ['u32', kdim], ['u32', rows], ['u32', cols], ['u32', colTiles], ['u32', mTiles], ['u32', kPer], ['u32', total],
  ]);
  return {
    params: { variant, tile: t, kh: KH, kw: KW, sh, sw, pt, pl, splitK: S },
    outShape, uniforms, workgroups: [gx, gy, mTiles * G * S],
    reduceWorkgroups: S > 1 ? gridFor(Math.ceil(total / 256), maxPerDim) : undefined,
  };
}

function runGemm(ctx: GpuContext, plan: Conv2dBackwardPlan, a: Tensor, b: Tensor): Tensor {
  const out = ctx.empty(plan.outShape);
  if (out.size === 0) return out;
  const label = `conv2d_${plan.params.variant}_${plan.params.kh}x${plan.params.kw}`;
  if (plan.params.splitK === 1) {
    ctx.dispatch({ label, code: wgsl(plan.params), bindings: [a, b, out], uniforms: plan.uniforms, workgroups: plan.workgroups });
    return out;
  }
  const part = ctx.empty([plan.params.splitK, ...plan.outShape]);
  ctx.dispatch({ label: `${label}_splitk`, code: wgsl(plan.params), bindings: [a, b, part], uniforms: plan.uniforms, workgroups: plan.workgroups });
  ctx.dispatch({
    label: 'conv2d_backward_splitk_reduce', code: wgslSplitKReduce(plan.params.splitK), bindings: [part, out],
    uniforms: plan.uniforms, workgroups: plan.reduceWorkgroups!,
  });
  // Later work that recycles this buffer is ordered after the dispatches that use it.
  part.dispose();
  return out;
}

function requireF32(op: string, name: string, t: Tensor): void {
  if (t.dtype !== 'f32') throw new Error(`${op}: expected f32 ${name}, found ${t.dtype} [${t.shape.join(', ')}]`);
}

/** dx [N, C, H, W] from dy [N, O, Ho, Wo] and w [O, Cg, KH, KW]; xShape: the forward input's shape. */
export function conv2dBackwardInput(
  ctx: GpuContext, dy: Tensor, w: Tensor, xShape: readonly number[], opts: ConvGeometry, tile?: ConvBackwardTile, splitK?: number,
): Tensor {
  requireF32('conv2dBackwardInput', 'dy', dy);
  requireF32('conv2dBackwardInput', 'w', w);
  const plan = planConv2dBackward('grad_input', xShape, w.shape, dy.shape, opts, ctx.limits.maxComputeWorkgroupsPerDimension, tile, splitK);
  return runGemm(ctx, plan, w, dy);
}

/** dw [O, Cg, KH, KW] from x [N, C, H, W] and dy [N, O, Ho, Wo]; wShape: the weight's shape. */
export function conv2dBackwardWeight(
  ctx: GpuContext, x: Tensor, dy: Tensor, wShape: readonly number[], opts: ConvGeometry, tile?: ConvBackwardTile, splitK?: number,
): Tensor {
  requireF32('conv2dBackwardWeight', 'x', x);
  requireF32('conv2dBackwardWeight', 'dy', dy);
  const plan = planConv2dBackward('grad_weight', x.shape, wShape, dy.shape, opts, ctx.limits.maxComputeWorkgroupsPerDimension, tile, splitK);
  return runGemm(ctx, plan, dy, x);
}

/** Values per workgroup of 'bias_partials' before an output channel is split into chunks. */
const BIAS_CHUNK = 16384;
const BIAS_MAX_PARTS = 64;

/** db [O] = sum of dy [N, O, Ho, Wo] over N, Ho, Wo. */
export function conv2dBackwardBias(ctx: GpuContext, dy: Tensor): Tensor {
  requireF32('conv2dBackwardBias', 'dy', dy);
  if (dy.rank !== 4) throw new Error(`conv2dBackwardBias: expected dy [N, O, Ho, Wo], found [${dy.shape.join(', ')}]`);
  const [N, O, Ho, Wo] = dy.shape as [number, number, number, number];
  const db = ctx.empty([O]);
  if (O === 0) return db;
  const K = N * Ho * Wo;
  const parts = Math.min(BIAS_MAX_PARTS, Math.max(1, Math.ceil(K / BIAS_CHUNK)));
  const chunk = Math.ceil(K / parts);
  const maxDim = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (O > maxDim) throw new Error(`conv2dBackwardBias: ${O} channels exceed ${maxDim} workgroups per dimension`);
  const uniforms = packUniforms([['u32', N], ['u32', O], ['u32', Ho * Wo], ['u32', parts], ['u32', chunk], ['u32', 0], ['u32', 0], ['u32', 0]]);
  const partials = parts > 1 ? ctx.empty([O * parts]) : db;
  ctx.dispatch({ label: 'conv2d_backward_bias_partials', code: wgslBias('bias_partials'), bindings: [dy, partials], uniforms, workgroups: [parts, O] });
  if (parts > 1) {
    ctx.dispatch({ label: 'conv2d_backward_bias_finish', code: wgslBias('bias_finish'), bindings: [partials, db], uniforms, workgroups: [Math.ceil(O / 64)] });
    partials.dispose();
  }
  return db;
}
