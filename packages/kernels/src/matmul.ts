// Batched matrix product with a fused epilogue, tiled in workgroup memory.
//
//   out[b, m, n] = act(alpha * sum_k A[b, m, k] * B[b, k, n] + bias[n]) + residual[b, m, n]
//
// Shapes (Backend.matmul): a [Ba, M, K] (or [Ba, K, M] with transA), b [Bb, K, N] (or [Bb, N, K] with
// transB: a torch Linear weight), Ba and Bb each B or 1 (a batch of 1 is shared through a zero batch
// stride, never copied); bias [N]; residual [B, M, N]; returns [B, M, N] f32.
//
// Kernel: one workgroup per TM x TN output tile of one batch (workgroup z; batches beyond
// maxComputeWorkgroupsPerDimension go in several dispatches). Each thread owns an RM x RN micro-tile
// (4 or 8 each: one or two vec4 blocks per dimension, the blocks half a tile apart so the threads of a
// warp read consecutive stage vec4s). Per K-step of TK, the A and B tiles are staged k-major in
// workgroup memory as vec4s (As[k][m/4], Bs[k][n/4]) so the inner loop is (RM + RN)/4 vec4 reads and
// RM*RN FMAs. Every staging thread writes whole vec4s (a write to one vector component may touch the
// whole vector in WGSL's memory model):
//  - a stored with K contiguous (no transA) / b with K contiguous (transB): each thread gathers four rows
//    at one k; consecutive threads read consecutive k, so the global reads coalesce;
//  - a with M contiguous (transA) / b with N contiguous (no transB): one vec4 per thread, read as a
//    vec4<f32> binding when that dimension is a multiple of 4 (then every aligned group is wholly in or
//    out of bounds), else as four bounds-checked scalars.
// Any M, N, K: out-of-range elements stage as zeros and stores are bounds-checked. b may be stored as
// f16 or bf16 (weights): it is bound as array<u32> and widened on load (unpack2x16float / shift), with
// f32 accumulation. Variants (baked into the WGSL, each its own cached pipeline): layout flags, b dtype,
// vector widths, bias, residual, activation, tile shape. alpha and sizes are uniforms.
// Tile shapes (tileFor): 64x64x16 with 4x4 per thread, 128x64x16 with 8x4 for long K / large products,
// 16- and 32-row tiles for thin products. Limits: TM, TN multiples of the micro-tile, TK of 4, at most
// 256 threads; staging uses 4*TK*(TM+TN) bytes of workgroup memory (8 KiB for 64x64x16, 12 KiB for
// 128x64x16: inside WebGPU's 16 KiB default limit).
// f16 compute (MatmulParams.half, f16_compute.ts): the A and B tiles are staged as vec4<H> (H = f16 on a
// shader-f16 device: operands rounded to f16, half the workgroup memory traffic) and widened to f32 for
// the FMAs: exact products, f32 accumulation. Chosen when the context's computeDtype is 'f16'.
// Measured (H100, Dawn/Vulkan, f32): 10-27 TFLOP/s at SD1.5 512x512 linear shapes, 11-21x the naive
// one-thread-per-output kernel (matmul_naive.ts).

import { formatShape, type Activation, type MatmulOptions, type Tensor } from '@cnx/tensor';
import type { GpuContext } from './webgpu/context.js';
import { packUniforms } from './webgpu/context.js';
import { halfOperandsFor, halfPreamble, type HalfOperands } from './f16_compute.js';
import { activationWgsl } from './wgsl_math.js';

export type { MatmulOptions } from '@cnx/tensor';

export interface MatmulParams {
  transA: boolean;
  transB: boolean;
  /** Storage type of b; a is always f32. */
  bDtype: 'f32' | 'f16' | 'bf16';
  /** a's contiguous dim is a multiple of 4 and is read as vec4 (only used with transA). */
  vecA: boolean;
  /** b's contiguous dim is a multiple of 4 and is read as vec4 (only used without transB, f32 b). */
  vecB: boolean;
  /** N is a multiple of 4: out (and residual) are read and written as vec4. */
  vecOut: boolean;
  bias: boolean;
  residual: boolean;
  activation: Activation;
  /** Output tile rows / columns per workgroup and the K-step; multiples of 4. */
  tileM: number;
  tileN: number;
  tileK: number;
  /** Output rows / columns per thread: 4 or 8 (two vec4 blocks, half a tile apart). */
  microM: 4 | 8;
  microN: 4 | 8;
  /** f16 compute: operands staged as H (f16_compute.ts); absent: f32 staging. */
  half?: HalfOperands;
}

/** WGSL that widens element `i` of a 16-bit array bound as array<u32> (two elements per word). */
export function widen16Wgsl(dtype: 'f16' | 'bf16', fnName: string, buffer: string): string {
  const body = dtype === 'f16'
    ? `return unpack2x16float(w)[i & 1u];`
    // bf16 is the top half of an f32: move the wanted half there and clear the rest.
    : `return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u));`;
  return `fn ${fnName}(i: u32) -> f32 {\n  let w = ${buffer}[i >> 1u];\n  ${body}\n}\n`;
}

export function wgsl(p: MatmulParams): string {
  const { tileM: TM, tileN: TN, tileK: TK, microM: RM, microN: RN } = p;
  // Staging vec4s per k-row of each tile (WY for A, WX for B) and the thread grid (TX x TY).
  const WX = TN / 4, WY = TM / 4, TX = TN / RN, TY = TM / RM, THREADS = TX * TY;
  if (TM % RM !== 0 || TN % RN !== 0 || TK % 4 !== 0 || THREADS > 256) {
    throw new Error(`matmul: invalid tile ${TM}x${TN}x${TK} with ${RM}x${RN} per thread`);
  }
  // Thread (tx, ty) owns rows rb*(TM/RB) + ty*4 + i and columns cb*(TN/CB) + tx*4 + j (RB = RM/4 row
  // blocks, CB = RN/4 column blocks): the blocks sit TY (TX) vec4s apart, so the threads of a warp read
  // consecutive vec4s of the stage.
  const RB = RM / 4, CB = RN / 4;
  const accs: string[] = [];
  for (let rb = 0; rb < RB; rb++) for (let i = 0; i < 4; i++) for (let cb = 0; cb < CB; cb++) accs.push(`acc_${rb}_${i}_${cb}`);
  const comp = ['x', 'y', 'z', 'w'];
  const inner: string[] = [];
  // f16 operands are widened once per k step: exact products, f32 FMAs.
  const widen = (e: string) => (p.half ? `vec4<f32>(${e})` : e);
  const narrow = p.half ? 'vec4<H>(v)' : 'v';
  const staged = p.half ? 'vec4<H>' : 'vec4<f32>';
  for (let rb = 0; rb < RB; rb++) inner.push(`let a${rb} = ${widen(`As[k * ${WY}u + ${rb * TY}u + ty]`)};`);
  for (let cb = 0; cb < CB; cb++) inner.push(`let b${cb} = ${widen(`Bs[k * ${WX}u + ${cb * TX}u + tx]`)};`);
  for (let rb = 0; rb < RB; rb++) for (let i = 0; i < 4; i++) for (let cb = 0; cb < CB; cb++) {
    inner.push(`acc_${rb}_${i}_${cb} += a${rb}.${comp[i]} * b${cb};`);
  }
  const epilogues: string[] = [];
  for (let rb = 0; rb < RB; rb++) for (let i = 0; i < 4; i++) for (let cb = 0; cb < CB; cb++) {
    epilogues.push(`epilogue(acc_${rb}_${i}_${cb}, m0 + ${rb * TY * 4 + i}u + ty * 4u, n0 + ${cb * TX * 4}u + tx * 4u, cOff);`);
  }
  const b16 = p.bDtype !== 'f32';
  let binding = 0;
  const decl: string[] = [];
  decl.push(`@group(0) @binding(${binding++}) var<storage, read> A: array<${p.transA && p.vecA ? 'vec4<f32>' : 'f32'}>;`);
  decl.push(`@group(0) @binding(${binding++}) var<storage, read> B: array<${b16 ? 'u32' : !p.transB && p.vecB ? 'vec4<f32>' : 'f32'}>;`);
  if (p.bias) decl.push(`@group(0) @binding(${binding++}) var<storage, read> bias: array<f32>;`);
  if (p.residual) decl.push(`@group(0) @binding(${binding++}) var<storage, read> res: array<${p.vecOut ? 'vec4<f32>' : 'f32'}>;`);
  decl.push(`@group(0) @binding(${binding++}) var<storage, read_write> C: array<${p.vecOut ? 'vec4<f32>' : 'f32'}>;`);
  decl.push(`@group(0) @binding(${binding++}) var<uniform> u: Uniforms;`);

  // Scalar element of b at flat index i (widened when 16-bit).
  const bElem = b16 ? 'loadB16' : 'loadB32';
  const bHelpers = b16 ? widen16Wgsl(p.bDtype as 'f16' | 'bf16', 'loadB16', 'B') : !p.transB && p.vecB ? '' : `fn loadB32(i: u32) -> f32 { return B[i]; }\n`;

  // Stage the A tile: As[k * WY + m4] = A rows 4*m4..4*m4+3 of this tile at column k.
  const stageA = p.transA
    ? `  // a stored [K, M]: M contiguous, one vec4 of 4 consecutive m per slot.
  for (var s = lid; s < ${TK * WY}u; s += ${THREADS}u) {
    let k = s / ${WY}u; let m4 = s % ${WY}u;
    let gk = k0 + k; let gm = m0 + m4 * 4u;
    var v = vec4<f32>(0.0);
    ${p.vecA
      ? `if (gk < u.K && gm < u.M) { v = A[(aOff + gk * u.M + gm) / 4u]; }`
      : `if (gk < u.K) { for (var i = 0u; i < 4u; i++) { if (gm + i < u.M) { v[i] = A[aOff + gk * u.M + gm + i]; } } }`}
    As[k * ${WY}u + m4] = ${narrow};
  }`
    : `  // a stored [M, K]: K contiguous, consecutive slots read consecutive k of four rows.
  for (var s = lid; s < ${TK * WY}u; s += ${THREADS}u) {
    let k = s % ${TK}u; let m4 = s / ${TK}u;
    let gk = k0 + k; let gm = m0 + m4 * 4u;
    var v = vec4<f32>(0.0);
    if (gk < u.K) { for (var i = 0u; i < 4u; i++) { if (gm + i < u.M) { v[i] = A[aOff + (gm + i) * u.K + gk]; } } }
    As[k * ${WY}u + m4] = ${narrow};
  }`;

  const stageB = p.transB
    ? `  // b stored [N, K]: K contiguous, consecutive slots read consecutive k of four rows.
  for (var s = lid; s < ${TK * WX}u; s += ${THREADS}u) {
    let k = s % ${TK}u; let n4 = s / ${TK}u;
    let gk = k0 + k; let gn = n0 + n4 * 4u;
    var v = vec4<f32>(0.0);
    if (gk < u.K) { for (var i = 0u; i < 4u; i++) { if (gn + i < u.N) { v[i] = ${bElem}(bOff + (gn + i) * u.K + gk); } } }
    Bs[k * ${WX}u + n4] = ${narrow};
  }`
    : `  // b stored [K, N]: N contiguous, one vec4 of 4 consecutive n per slot.
  for (var s = lid; s < ${TK * WX}u; s += ${THREADS}u) {
    let k = s / ${WX}u; let n4 = s % ${WX}u;
    let gk = k0 + k; let gn = n0 + n4 * 4u;
    var v = vec4<f32>(0.0);
    ${p.vecB && !b16
      ? `if (gk < u.K && gn < u.N) { v = B[(bOff + gk * u.N + gn) / 4u]; }`
      : `if (gk < u.K) { for (var i = 0u; i < 4u; i++) { if (gn + i < u.N) { v[i] = ${bElem}(bOff + gk * u.N + gn + i); } } }`}
    Bs[k * ${WX}u + n4] = ${narrow};
  }`;

  // Epilogue for output row `row` (vec4 `acc` holds columns n..n+3).
  const biasLoad = p.bias
    ? `for (var j = 0u; j < 4u; j++) { if (n + j < u.N) { v[j] += bias[n + j]; } }`
    : '';
  const store = p.vecOut
    ? `if (n < u.N) {
      let o = (cOff + m * u.N + n) / 4u;
      ${p.residual ? 'C[o] = v + res[o];' : 'C[o] = v;'}
    }`
    : `for (var j = 0u; j < 4u; j++) {
      if (n + j < u.N) {
        let o = cOff + m * u.N + n + j;
        ${p.residual ? 'C[o] = v[j] + res[o];' : 'C[o] = v[j];'}
      }
    }`;

  return /* wgsl */ `${halfPreamble(p.half)}// matmul: ${p.transA ? 'A^T' : 'A'} x ${p.transB ? 'B^T' : 'B'} (b ${p.bDtype}${p.half ? `, ${p.half.type} operands` : ''}), tile ${TM}x${TN}x${TK}, ${RM}x${RN} per thread, epilogue: alpha${p.bias ? ', bias' : ''}, ${p.activation}${p.residual ? ', residual' : ''}
struct Uniforms {
  M: u32, N: u32, K: u32,
  aBatchStride: u32,  // elements between batches of a (0: shared)
  bBatchStride: u32,
  batchBase: u32,     // first batch of this dispatch
  alpha: f32,
}
${decl.join('\n')}

var<workgroup> As: array<${staged}, ${TK * WY}>;
var<workgroup> Bs: array<${staged}, ${TK * WX}>;

${bHelpers}
${activationWgsl(p.activation)}

fn epilogue(acc: vec4<f32>, m: u32, n: u32, cOff: u32) {
  if (m >= u.M) { return; }
  var v = acc * u.alpha;
  ${biasLoad}
  for (var j = 0u; j < 4u; j++) { v[j] = activation(v[j]); }
  ${store}
}

@compute @workgroup_size(${TX}, ${TY}, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lidv: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let batch = wid.z + u.batchBase;
  let aOff = batch * u.aBatchStride;
  let bOff = batch * u.bBatchStride;
  let cOff = batch * u.M * u.N;
  let m0 = wid.y * ${TM}u;
  let n0 = wid.x * ${TN}u;
  let tx = lidv.x; let ty = lidv.y;
${accs.map((a) => `  var ${a} = vec4<f32>(0.0);`).join('\n')}
  for (var k0 = 0u; k0 < u.K; k0 += ${TK}u) {
${stageA}
${stageB}
    workgroupBarrier();
    for (var k = 0u; k < ${TK}u; k++) {
      ${inner.join('\n      ')}
    }
    workgroupBarrier();
  }
  ${epilogues.join('\n  ')}
}
`;
}

/** Sizes of a matmul call, checked against the Backend.matmul contract. */
export interface MatmulShape {
  B: number; Ba: number; Bb: number; M: number; N: number; K: number;
}

/** Validate the operands of a matmul and derive its sizes; errors name what was expected and found. */
export function matmulShape(op: string, a: Tensor, b: Tensor, opts: MatmulOptions): MatmulShape {
  if (a.rank !== 3 || b.rank !== 3) {
    throw new Error(`${op}: expected a [B, M, K] and b [B, K, N] (rank 3), found ${formatShape(a.shape)} and ${formatShape(b.shape)}`);
  }
  if (a.dtype !== 'f32') throw new Error(`${op}: expected f32 a, found ${a.dtype} ${formatShape(a.shape)}`);
  if (b.dtype !== 'f32' && b.dtype !== 'f16' && b.dtype !== 'bf16') {
    throw new Error(`${op}: expected b of dtype f32, f16 or bf16, found ${b.dtype} ${formatShape(b.shape)}`);
  }
  const [Ba, r0, c0] = a.shape as [number, number, number];
  const [Bb, r1, c1] = b.shape as [number, number, number];
  const M = opts.transA ? c0 : r0, K = opts.transA ? r0 : c0;
  const Kb = opts.transB ? c1 : r1, N = opts.transB ? r1 : c1;
  if (K !== Kb) {
    throw new Error(`${op}: inner dims differ: a ${formatShape(a.shape)}${opts.transA ? ' (transA)' : ''} has K=${K}, ` +
      `b ${formatShape(b.shape)}${opts.transB ? ' (transB)' : ''} has K=${Kb}`);
  }
  if (Ba !== Bb && Ba !== 1 && Bb !== 1) throw new Error(`${op}: batch sizes ${Ba} and ${Bb} differ and neither is 1`);
  const B = Math.max(Ba, Bb);
  if (opts.bias && (opts.bias.rank !== 1 || opts.bias.shape[0] !== N || opts.bias.dtype !== 'f32')) {
    throw new Error(`${op}: expected f32 bias [${N}], found ${opts.bias.dtype} ${formatShape(opts.bias.shape)}`);
  }
  const r = opts.residual;
  if (r && (r.dtype !== 'f32' || r.rank !== 3 || r.shape[0] !== B || r.shape[1] !== M || r.shape[2] !== N)) {
    throw new Error(`${op}: expected f32 residual [${B}, ${M}, ${N}], found ${r.dtype} ${formatShape(r.shape)}`);
  }
  return { B, Ba, Bb, M, N, K };
}

export interface MatmulPlan {
  params: MatmulParams;
  /** One dispatch per chunk of batches: [firstBatch, count]. */
  batchChunks: [number, number][];
  workgroups: (batchCount: number) => [number, number, number];
  uniforms: (batchBase: number) => ArrayBuffer;
}

export type MatmulTile = Pick<MatmulParams, 'tileM' | 'tileN' | 'tileK' | 'microM' | 'microN'>;

/**
 * Tile shape. Thin products (timestep MLPs, per-token GEMVs) get 16- or 32-row tiles so most of a
 * 64-row tile is not wasted. Long-K or very large products get 128x64 tiles with 8x4 per thread (more
 * FMAs per staged vec4); the rest 64x64 with 4x4, whose larger grid fills the GPU better when K is
 * short. Measured on an H100 (Dawn/Vulkan, 2026-11-25): 8192x320x320 10.4 TFLOP/s with 64x64 vs 8.8
 * with 128x64; 8192x320x1280 14.4 vs 15.9; 4096^3 23.4 vs 27.1.
 */
export function tileFor(M: number, N: number, K: number): MatmulTile {
  if (M <= 32) return { tileM: M <= 16 ? 16 : 32, tileN: 64, tileK: 16, microM: 4, microN: 4 };
  if (M >= 1024 && (K >= 1024 || M * N >= 16 * 1024 * 1024)) return { tileM: 128, tileN: 64, tileK: 16, microM: 8, microN: 4 };
  return { tileM: 64, tileN: 64, tileK: 16, microM: 4, microN: 4 };
}

/**
 * Plan a matmul; `tile` overrides the tile shape (benchmarks compare shapes), `half` the operand precision
 * (default: f16 operands where the context computes in f16, f16_compute.ts; null: the f32 kernel).
 */
export function plan(ctx: GpuContext, a: Tensor, b: Tensor, opts: MatmulOptions, tile?: MatmulTile, half: HalfOperands | null | undefined = halfOperandsFor(ctx)): MatmulPlan {
  const s = matmulShape('matmul', a, b, opts);
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  const params: MatmulParams = {
    transA, transB,
    bDtype: b.dtype as MatmulParams['bDtype'],
    vecA: s.M % 4 === 0,
    vecB: s.N % 4 === 0,
    vecOut: s.N % 4 === 0,
    bias: opts.bias !== undefined,
    residual: opts.residual !== undefined,
    activation: opts.activation ?? 'none',
    ...(tile ?? tileFor(s.M, s.N, s.K)),
    ...(half ? { half } : {}),
  };
  const maxDim = ctx.limits.maxComputeWorkgroupsPerDimension;
  const gx = Math.ceil(s.N / params.tileN), gy = Math.ceil(s.M / params.tileM);
  if (gx > maxDim || gy > maxDim) {
    throw new Error(`matmul: ${s.M}x${s.N} output needs ${gy}x${gx} tiles, over maxComputeWorkgroupsPerDimension=${maxDim}`);
  }
  if (s.B * s.M * s.N >= 2 ** 32 || s.B * s.M * s.K >= 2 ** 32 || s.B * s.K * s.N >= 2 ** 32) {
    throw new Error(`matmul: ${s.B}x${s.M}x${s.N}x${s.K} has operands beyond 2^32 elements (u32 indexing)`);
  }
  const batchChunks: [number, number][] = [];
  for (let b0 = 0; b0 < s.B; b0 += maxDim) batchChunks.push([b0, Math.min(maxDim, s.B - b0)]);
  return {
    params,
    batchChunks,
    workgroups: (count) => [gx, gy, count],
    uniforms: (batchBase) => packUniforms([
      ['u32', s.M], ['u32', s.N], ['u32', s.K],
      ['u32', s.Ba === 1 ? 0 : s.M * s.K], ['u32', s.Bb === 1 ? 0 : s.K * s.N],
      ['u32', batchBase], ['f32', opts.alpha ?? 1],
    ]),
  };
}

/** See Backend.matmul. b may be f32, f16 or bf16 (widened on load); everything else is f32. */
export function matmul(ctx: GpuContext, a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  return matmulWithTile(ctx, a, b, opts);
}

/** matmul with an explicit tile shape (for benchmarks and tests of every shape) and operand precision. */
export function matmulWithTile(ctx: GpuContext, a: Tensor, b: Tensor, opts: MatmulOptions = {}, tile?: MatmulTile, half?: HalfOperands | null): Tensor {
  // `half` as given: undefined takes plan's default (the context's choice), null the f32 kernel
  const p = plan(ctx, a, b, opts, tile, half);
  const { B, M, N } = matmulShape('matmul', a, b, opts);
  const out = ctx.empty([B, M, N]);
  const code = wgsl(p.params);
  const bindings = [a, b, ...(opts.bias ? [opts.bias] : []), ...(opts.residual ? [opts.residual] : []), out];
  for (const [b0, count] of p.batchChunks) {
    ctx.dispatch({ label: 'matmul', code, bindings, uniforms: p.uniforms(b0), workgroups: p.workgroups(count) });
  }
  return out;
}
