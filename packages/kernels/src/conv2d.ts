// conv2d, NCHW, as an implicit GEMM on the GPU.
//
// Computes y[n, o, oy, ox] = act(sum_{c, ky, kx} w[o, c, ky, kx] * x[n, g*Cg + c, oy*sh - pt + ky, ox*sw - pl + kx]
//                                + bias[o]) + residual[n, o, oy, ox]
// with x: [N, C, H, W], w: [O, Cg = C/G, KH, KW], bias: [O], residual and y: [N, O, Ho, Wo], zero padding
// [top, bottom, left, right] (asymmetric allowed: diffusers Downsample2D pads (0, 1, 0, 1)), groups G, dilation 1.
// Semantics: CpuBackend.conv2d (packages/tensor/src/cpu/cpu_backend.ts), i.e. torch.nn.functional.conv2d.
//
// Per group g the convolution is one GEMM Y_g[M, Ncols] = W_g[M, K] @ X_col[K, Ncols] with
//   M = Og = O/G (output channels of the group), K = Cg*KH*KW, Ncols = N*Ho*Wo (batch folded into the columns).
// X_col is never materialised: the kernel gathers the input patch element for (k, col) on the fly while
// staging the B tile in workgroup memory, out-of-image positions read as 0.
//
// Variants (Conv2dParams.variant):
//  - 'implicit_gemm': any kernel size, stride and padding (the gather decodes k -> (c, ky, kx) with the
//    kernel geometry baked in as WGSL constants, so the divisions are by constants).
//  - 'pointwise': 1x1, stride 1, no padding: a plain GEMM [Og, Cg] x [Cg, H*W] per sample; the gather is
//    a single index (SD's proj_in/proj_out, resnet conv_shortcut, ControlNeXt's 1x1 convs).
// Tiles (Conv2dParams.tile): a workgroup computes a BM x BN block of Y_g; each of its (BM/TM)*(BN/TN)
// threads owns a TM x TN micro-tile whose rows/columns are strided by BM/TM and BN/TN, so B-tile reads
// and output stores are coalesced and the workgroup-memory reads are conflict-free. K advances BK at a
// time. 'wide' (64x64) serves the UNet's 320-1280 channels, 'large' (128x128, 8x8 per thread) GEMMs
// with many columns (128+ channels at image resolution), 'narrow' (32x128) and 'thin' (16x256) outputs
// of <= 32 channels, where a 64-row tile would leave most threads idle (see chooseConv2dTile).
// Split-K (Conv2dParams.splitK = S > 1), for GEMMs with few output tiles and a long K (SD's 1280-channel
// convs at 8x8 and 16x16 latents: 40-160 workgroups, K = 11 520): each workgroup reduces one of S
// K-slices and stores its raw partial sums to a scratch [S, N, O, Ho, Wo]; a second dispatch
// ('conv2d_splitk_reduce', one thread per output) adds the S partials and applies the epilogue.
// Workgroup memory stays under WebGPU's default 16 KiB for every tile.
// Weight storage (Conv2dParams.wDtype): f32, or f16/bf16 (16-bit weight storage, @cnx/tensor weight_dtype.ts)
// bound as array<u32> and widened to f32 when staged (unpack2x16float / shift: no shader-f16 needed); every
// other tensor is f32 and the arithmetic is f32 either way.
// f16 compute (Conv2dParams.half, f16_compute.ts): the A (weight) and B (gathered input) tiles are staged
// as H (f16 on a shader-f16 device: operands rounded to f16, half the workgroup memory) and widened for
// the f32 FMAs; chosen when the context's computeDtype is 'f16'.
// Limits: f32 activations (ops.conv2d guarantees it); workgroups: column tiles over x/y (split past 65535),
// (row tiles * groups * K slices) over z, which must stay <= maxComputeWorkgroupsPerDimension (the plan
// lowers the K split to fit, and throws when row tiles * groups alone exceed it).

import type { Activation, Conv2dOptions, Tensor } from '@cnx/tensor';
import { halfOperandsFor, halfPreamble, type HalfOperands } from './f16_compute.js';
import { widen16Wgsl } from './matmul.js';
import { gridFor, packUniforms, type GpuContext } from './webgpu/context.js';
import { activationWgsl } from './wgsl_math.js';

export interface Conv2dTile {
  /** Rows (output channels) per workgroup. */
  bm: number;
  /** Columns (output pixels over the batch) per workgroup. */
  bn: number;
  /** K depth staged per step. */
  bk: number;
  /** Micro-tile rows and columns per thread. */
  tm: number;
  tn: number;
}

export const CONV2D_TILES = {
  large: { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8 },
  wide: { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 },
  narrow: { bm: 32, bn: 128, bk: 16, tm: 4, tn: 4 },
  thin: { bm: 16, bn: 256, bk: 8, tm: 4, tn: 4 },
} as const satisfies Record<string, Conv2dTile>;
export type Conv2dTileName = keyof typeof CONV2D_TILES;

export interface Conv2dParams {
  variant: 'implicit_gemm' | 'pointwise';
  tile: Conv2dTile;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  /** Top and left padding (bottom/right only change Ho/Wo, which arrive as uniforms). */
  pt: number;
  pl: number;
  hasBias: boolean;
  hasResidual: boolean;
  activation: Activation;
  /** K slices (1: no split; else the GEMM stores partials and wgslSplitKReduce finishes). */
  splitK: number;
  /** Storage dtype of the weight (16-bit: widened on load). Absent: f32. */
  wDtype?: 'f32' | 'f16' | 'bf16';
  /** f16 compute: operands staged as H (f16_compute.ts); absent: f32 staging. */
  half?: HalfOperands;
}

/** Shared uniform block of the GEMM and the split-K reduction. */
const UNIFORMS = /* wgsl */ `
struct U { n: u32, c: u32, h: u32, w: u32, o: u32, ho: u32, wo: u32, cg: u32,
           og: u32, kdim: u32, p: u32, cols: u32, colTiles: u32, mTiles: u32, kPer: u32, total: u32 }`;

export function wgsl(p: Conv2dParams): string {
  const { bm, bn, bk, tm, tn } = p.tile;
  const tx = bn / tn, ty = bm / tm, wg = tx * ty;
  if (!Number.isInteger(tx) || !Number.isInteger(ty) || (bn * bk) % wg || wg % bk || wg % bn) {
    throw new Error(`conv2d: tile ${JSON.stringify(p.tile)} does not divide into a workgroup of ${wg} threads (need BN*BK a multiple of it and it a multiple of BK and BN)`);
  }
  const aSteps = Math.ceil((bm * bk) / wg);
  const split = p.splitK > 1;
  const w16 = p.wDtype === 'f16' || p.wDtype === 'bf16';
  let b = 2;
  const biasBinding = p.hasBias && !split ? b++ : -1;
  const resBinding = p.hasResidual && !split ? b++ : -1;
  const outBinding = b++;
  const uniBinding = b;
  // A tile rows are padded by one float so the transposing stores (k-major) do not hit one bank.
  const astr = bm + 1;
  const gather = p.variant === 'pointwise'
    ? `if (colOk && k < kEnd) { v = X[xBase + k * u.p]; }`
    : `if (colOk && k < kEnd) {
          let c = k / KHW;
          let r = k % KHW;
          let iy = iy0 + i32(r / KW);
          let ix = ix0 + i32(r % KW);
          if (iy >= 0 && iy < i32(u.h) && ix >= 0 && ix < i32(u.w)) {
            v = X[xBase + (c * u.h + u32(iy)) * u.w + u32(ix)];
          }
        }`;
  const xBase = p.variant === 'pointwise'
    ? 'let xBase = (bi * u.c + g * u.cg) * u.p + pix;'
    : 'let xBase = (bi * u.c + g * u.cg) * u.h * u.w;';
  const store = split
    ? 'Y[ks * u.total + idx] = acc[i][j];'
    : `var y = acc[i][j]${p.hasBias ? ' + Bias[o]' : ''};
      y = act(y)${p.hasResidual ? ' + R[idx]' : ''};
      Y[idx] = y;`;
  const staged = p.half ? 'H' : 'f32';
  const narrow = p.half ? 'H(v)' : 'v';
  const widen = (e: string) => (p.half ? `f32(${e})` : e);
  return /* wgsl */ `${halfPreamble(p.half)}${UNIFORMS}
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> Wt: array<${w16 ? 'u32' : 'f32'}>;
${biasBinding >= 0 ? `@group(0) @binding(${biasBinding}) var<storage, read> Bias: array<f32>;` : ''}
${resBinding >= 0 ? `@group(0) @binding(${resBinding}) var<storage, read> R: array<f32>;` : ''}
@group(0) @binding(${outBinding}) var<storage, read_write> Y: array<f32>;
@group(0) @binding(${uniBinding}) var<uniform> u: U;

const BM = ${bm}u; const BN = ${bn}u; const BK = ${bk}u; const TM = ${tm}u; const TN = ${tn}u;
const TX = ${tx}u; const TY = ${ty}u; const WG = ${wg}u; const ASTR = ${astr}u;
const KW = ${p.kw}u; const KHW = ${p.kh * p.kw}u;
const SH = ${p.sh}u; const SW = ${p.sw}u; const PT = ${p.pt}; const PL = ${p.pl};

var<workgroup> As: array<${staged}, ${bk * astr}>;
var<workgroup> Bs: array<${staged}, ${bk * bn}>;
${w16 ? widen16Wgsl(p.wDtype as 'f16' | 'bf16', 'loadW', 'Wt') : 'fn loadW(i: u32) -> f32 { return Wt[i]; }'}

${split ? '' : activationWgsl(p.activation, 'act')}
const SPLITK = ${p.splitK}u;

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

  // B staging: this thread always fills column bn of the tile, rows bkr + r*(WG/BN).
  let bn = tid % BN;
  let bkr = tid / BN;
  let col = col0 + bn;
  let colOk = col < u.cols;
  let bi = min(col, u.cols - 1u) / u.p;
  let pix = min(col, u.cols - 1u) % u.p;
  let iy0 = i32((pix / u.wo) * SH) - PT;
  let ix0 = i32((pix % u.wo) * SW) - PL;
  ${xBase}
  // A staging: this thread always fills k column ak, rows amr + r*(WG/BK).
  let ak = tid % BK;
  let amr = tid / BK;
  let wBase = g * u.og * u.kdim;

  var acc: array<array<f32, TN>, TM>;
  for (var k0 = kBegin; k0 < kEnd; k0 += BK) {
    for (var r = 0u; r < ${aSteps}u; r++) {
      let m = amr + r * (WG / BK);
      if (m < BM) {
        let k = k0 + ak;
        var v = 0.0;
        if (m0 + m < u.og && k < kEnd) { v = loadW(wBase + (m0 + m) * u.kdim + k); }
        As[ak * ASTR + m] = ${narrow};
      }
    }
    for (var r = 0u; r < BN * BK / WG; r++) {
      let kk = bkr + r * (WG / BN);
      let k = k0 + kk;
      var v = 0.0;
      ${gather}
      Bs[kk * BN + bn] = ${narrow};
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var a: array<f32, TM>;
      var bv: array<f32, TN>;
      for (var i = 0u; i < TM; i++) { a[i] = ${widen('As[kk * ASTR + ty + i * TY]')}; }
      for (var j = 0u; j < TN; j++) { bv[j] = ${widen('Bs[kk * BN + tx + j * TX]')}; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) { acc[i][j] = fma(a[i], bv[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }

  for (var j = 0u; j < TN; j++) {
    let cj = col0 + tx + j * TX;
    if (cj >= u.cols) { continue; }
    let bj = cj / u.p;
    let pj = cj % u.p;
    for (var i = 0u; i < TM; i++) {
      let m = m0 + ty + i * TY;
      if (m >= u.og) { continue; }
      let o = g * u.og + m;
      let idx = (bj * u.o + o) * u.p + pj;
      ${store}
    }
  }
}
`;
}

/** Split-K finish: y[idx] = act(sum_s part[s, idx] + bias[o]) + residual[idx], one thread per output. */
export function wgslSplitKReduce(p: Conv2dParams): string {
  let b = 1;
  const biasBinding = p.hasBias ? b++ : -1;
  const resBinding = p.hasResidual ? b++ : -1;
  const outBinding = b++;
  const uniBinding = b;
  return /* wgsl */ `${UNIFORMS}
@group(0) @binding(0) var<storage, read> Part: array<f32>;
${p.hasBias ? `@group(0) @binding(${biasBinding}) var<storage, read> Bias: array<f32>;` : ''}
${p.hasResidual ? `@group(0) @binding(${resBinding}) var<storage, read> R: array<f32>;` : ''}
@group(0) @binding(${outBinding}) var<storage, read_write> Y: array<f32>;
@group(0) @binding(${uniBinding}) var<uniform> u: U;
${activationWgsl(p.activation, 'act')}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let idx = (wid.x + wid.y * nwg.x) * 256u + tid;
  if (idx >= u.total) { return; }
  var acc = 0.0;
  for (var s = 0u; s < ${p.splitK}u; s++) { acc += Part[s * u.total + idx]; }
  ${p.hasBias ? 'acc += Bias[(idx / u.p) % u.o];' : ''}
  Y[idx] = act(acc)${p.hasResidual ? ' + R[idx]' : ''};
}
`;
}

export interface Conv2dPlan {
  params: Conv2dParams;
  outShape: [number, number, number, number];
  uniforms: ArrayBuffer;
  workgroups: [number, number, number];
  /** Split-K reduction dispatch, when params.splitK > 1. */
  reduceWorkgroups?: [number, number];
}

/** Workgroups the GEMM should launch before split-K stops paying (a few waves on a large GPU). */
const SPLITK_TARGET_WORKGROUPS = 512;
/**
 * Shortest K slice worth a workgroup (in elements of K). H100 measurements (batch 2): split-K took the
 * 1280-channel 3x3 conv at 8x8 from 1.45 to 0.22 ms (13 slices), at 16x16 from 1.52 to 0.78 ms, the
 * 320-channel stride-2 conv at 64x64 from 0.38 to 0.21 ms; it slowed a 1x1 conv with K = 640 (0.071 ->
 * 0.100 ms), hence no slices under 512.
 */
const SPLITK_MIN_SLICE = 512;
const SPLITK_MAX = 32;

/**
 * K slices for a GEMM of `workgroups` output tiles: enough to reach SPLITK_TARGET_WORKGROUPS, without
 * slices shorter than SPLITK_MIN_SLICE. 1 (no split) for GEMMs that already fill the GPU.
 */
export function chooseSplitK(workgroups: number, kdim: number): number {
  if (workgroups >= SPLITK_TARGET_WORKGROUPS / 2) return 1;
  const want = Math.ceil(SPLITK_TARGET_WORKGROUPS / workgroups);
  return Math.max(1, Math.min(want, SPLITK_MAX, Math.floor(kdim / SPLITK_MIN_SLICE)));
}

/**
 * Tile by the GEMM's rows Og and columns N*Ho*Wo. Measured on an H100 (Vulkan, 2026-11, SD1.5 shapes at
 * batch 2): 'wide' was fastest for every UNet conv (320-1280 channels at 8x8-64x64, 3x3 and 1x1, stride
 * 1 and 2: 'large' was 1.3-1.8x slower there, too few workgroups); 'large' won only for 128+ channels
 * over >= 2^18 columns (ControlNeXt's 128->128 conv at 512x512: 6.7 vs 7.3 ms); 'thin' won for 16
 * output channels (3->16 at 512x512).
 */
export function chooseConv2dTile(og: number, cols: number): Conv2dTile {
  if (og <= 16) return CONV2D_TILES.thin;
  if (og <= 32) return CONV2D_TILES.narrow;
  if (og >= 128 && cols >= 1 << 18) return CONV2D_TILES.large;
  return CONV2D_TILES.wide;
}

/** A conv2d weight's storage dtype, checked. */
function weightStorage(w: Tensor): 'f32' | 'f16' | 'bf16' {
  if (w.dtype === 'f32' || w.dtype === 'f16' || w.dtype === 'bf16') return w.dtype;
  throw new Error(`conv2d: expected a weight of dtype f32, f16 or bf16, found ${w.dtype} [${w.shape.join(', ')}]`);
}

export function planConv2d(
  x: Tensor, w: Tensor, hasBias: boolean, opts: Conv2dOptions, maxPerDim = 65535, tile?: Conv2dTile, splitK?: number, half?: HalfOperands,
): Conv2dPlan {
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const [O, Cg, KH, KW] = w.shape as [number, number, number, number];
  const G = opts.groups;
  const [sh, sw] = opts.stride;
  const [pt, pb, pl, pr] = opts.padding;
  if (x.rank !== 4 || w.rank !== 4 || C !== Cg * G || O % G !== 0) {
    throw new Error(`conv2d: expected x [N, C, H, W] and w [O, C/groups, kh, kw] with groups=${G}, found x [${x.shape.join(', ')}], w [${w.shape.join(', ')}]`);
  }
  const Ho = Math.floor((H + pt + pb - KH) / sh) + 1, Wo = Math.floor((W + pl + pr - KW) / sw) + 1;
  if (Ho <= 0 || Wo <= 0) throw new Error(`conv2d: kernel ${KH}x${KW} larger than padded input ${H}x${W} (padding [${opts.padding.join(', ')}])`);
  const og = O / G, P = Ho * Wo, cols = N * P, kdim = Cg * KH * KW;
  const t = tile ?? chooseConv2dTile(og, cols);
  const pointwise = KH === 1 && KW === 1 && sh === 1 && sw === 1 && pt === 0 && pb === 0 && pl === 0 && pr === 0;
  const colTiles = Math.ceil(cols / t.bn), mTiles = Math.ceil(og / t.bm);
  let S = Math.max(1, Math.floor(splitK ?? chooseSplitK(colTiles * mTiles * G, kdim)));
  while (S > 1 && mTiles * G * S > maxPerDim) S--;
  if (mTiles * G * S > maxPerDim) throw new Error(`conv2d: ${mTiles * G} row tiles x groups exceed ${maxPerDim} workgroups per dimension`);
  // slices are whole K steps, so only the last one is partial
  const kPer = S > 1 ? Math.ceil(kdim / S / t.bk) * t.bk : kdim;
  S = Math.ceil(kdim / kPer) || 1;
  const total = N * O * P;
  const [gx, gy] = gridFor(colTiles, maxPerDim);
  const params: Conv2dParams = {
    variant: pointwise ? 'pointwise' : 'implicit_gemm',
    tile: t,
    // the pointwise gather ignores the geometry; fixing it keeps one pipeline per tile/epilogue
    kh: pointwise ? 1 : KH, kw: pointwise ? 1 : KW, sh: pointwise ? 1 : sh, sw: pointwise ? 1 : sw,
    pt: pointwise ? 0 : pt, pl: pointwise ? 0 : pl,
    hasBias, hasResidual: opts.residual !== undefined, activation: opts.activation ?? 'none', splitK: S,
    ...(w.dtype !== 'f32' ? { wDtype: weightStorage(w) } : {}),
    ...(half ? { half } : {}),
  };
  const uniforms = packUniforms([
    ['u32', N], ['u32', C], ['u32', H], ['u32', W], ['u32', O], ['u32', Ho], ['u32', Wo], ['u32', Cg],
    ['u32', og], ['u32', kdim], ['u32', P], ['u32', cols], ['u32', colTiles], ['u32', mTiles], ['u32', kPer], ['u32', total],
  ]);
  return {
    params, outShape: [N, O, Ho, Wo], uniforms, workgroups: [gx, gy, mTiles * G * S],
    reduceWorkgroups: S > 1 ? gridFor(Math.ceil(total / 256), maxPerDim) : undefined,
  };
}

/**
 * Run conv2d with an explicit tile and K split (tests exercise each); `conv2d` picks both. `half`: the
 * operand precision (default: f16 where the context computes in f16; null forces f32).
 */
export function conv2dWithTile(
  ctx: GpuContext, x: Tensor, w: Tensor, bias: Tensor | undefined, opts: Conv2dOptions, tile?: Conv2dTile, splitK?: number, half?: HalfOperands | null,
): Tensor {
  const plan = planConv2d(x, w, bias !== undefined, opts, ctx.limits.maxComputeWorkgroupsPerDimension, tile, splitK,
    half === null ? undefined : half ?? halfOperandsFor(ctx));
  if (opts.residual && opts.residual.shape.join(',') !== plan.outShape.join(',')) {
    throw new Error(`conv2d: expected residual [${plan.outShape.join(', ')}], found [${opts.residual.shape.join(', ')}]`);
  }
  const y = ctx.empty(plan.outShape);
  if (y.size === 0) return y;
  const label = `conv2d_${plan.params.variant}_${plan.params.kh}x${plan.params.kw}`;
  const epilogue: Tensor[] = [];
  if (bias) epilogue.push(bias);
  if (opts.residual) epilogue.push(opts.residual);
  if (plan.params.splitK === 1) {
    ctx.dispatch({ label, code: wgsl(plan.params), bindings: [x, w, ...epilogue, y], uniforms: plan.uniforms, workgroups: plan.workgroups });
    return y;
  }
  const part = ctx.empty([plan.params.splitK, ...plan.outShape]);
  ctx.dispatch({ label: `${label}_splitk`, code: wgsl(plan.params), bindings: [x, w, part], uniforms: plan.uniforms, workgroups: plan.workgroups });
  ctx.dispatch({
    label: 'conv2d_splitk_reduce', code: wgslSplitKReduce(plan.params), bindings: [part, ...epilogue, y],
    uniforms: plan.uniforms, workgroups: plan.reduceWorkgroups!,
  });
  // Later work that recycles this buffer is ordered after the dispatches that use it.
  part.dispose();
  return y;
}

export function conv2d(ctx: GpuContext, x: Tensor, w: Tensor, bias: Tensor | undefined, opts: Conv2dOptions): Tensor {
  return conv2dWithTile(ctx, x, w, bias, opts);
}
