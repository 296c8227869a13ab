// Multi-head scaled-dot-product attention (flash-attention style) and a row softmax.
//
// attention: q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv] (heads interleaved in the channel dim,
// as torch Linear outputs are) -> out [B, Lq, H, Dv], out = softmax(scale * q.k^T [+ causal mask]) @ v.
// One workgroup per (query tile of BQ rows, head, batch) = workgroup (x, y, z). It walks the keys in
// tiles of BK held in workgroup memory and keeps an ONLINE softmax per query row (running max m and
// sum l; when the max grows by d the accumulator and l are rescaled by exp(-d)), so the [Lq, Lk] score
// matrix is never materialised: memory is O(B*Lq*H*Dv) whatever Lk is, and SD1.5 at 512x512 (Lq = Lk
// = 4096, D = 40) runs inside the default binding limits.
// Each query row is served by G consecutive threads (BQ*G threads per workgroup):
//  - scores: thread g of a row computes the keys g, g+G, ... of the tile (full-D dot products of vec4s),
//    the row's tile max is exchanged through workgroup memory, and each thread keeps a partial l over
//    its own keys (all partials share the row's rescaling, so they are summed once at the end);
//  - P @ V: the probabilities go through workgroup memory (Ps) and thread g accumulates the vec4
//    columns g, g+G, ... of the output row in registers.
// Variants: causal (key j > query i masked; key tiles past the query tile are skipped), Q tile staged in
// workgroup memory or read per key tile from global memory (when D is too large for the stage), K and
// V in separate stages or one stage reused, vec4 global loads when D / Dv are multiples of 4. The tile
// shape is chosen by chooseTiles() from D, Dv and the device's maxComputeWorkgroupStorageSize (largest
// query tile first, then key tile; Q staged when it fits). At 16 KiB: D = 40 -> 32 x 32, Q staged;
// D = 80 and 160 -> 64 x 16, Q from global memory. At 32 KiB: D = 40 -> 64 x 32, D = 80 -> 64 x 16
// (both staged), D = 160 -> 64 x 32 from global. Any D runs (D = 1024 at 16 KiB: 16 x 2 tiles, G = 16).
// Saved statistic (for the backward, attention_backward.ts): with `lse` the kernel also writes the
// per-(b, query, head) logsumexp of the SCALED scores, lse [B, Lq, H] = m + log(l) of the online softmax
// (natural log), from the row's first thread: one store per row; without it the WGSL is unchanged.
// f16 compute (AttentionParams.half, f16_compute.ts): the Q, K and V stages hold vec4<H> (H = f16 on a
// shader-f16 device: q, k, v rounded to f16, half the stage bytes, so chooseTiles fits larger tiles) and
// are widened for the f32 dot products and P @ V; chosen when the context's computeDtype is 'f16'. Where
// Q is not staged (read from global memory, qShared false) q stays f32: only k and v are rounded.
// Numerics: f32 scores and accumulation; masked scores never enter exp() (they become p = 0), the
// running max starts at -3e38 (WGSL has no infinity literal), so logits of any finite magnitude are safe.
//
// softmax: x [R, L] (any leading dims) over the last dim. One workgroup per row; each thread keeps an
// online (max, sum) over a strided slice, a tree reduction in workgroup memory combines them, and a
// second pass writes exp(x - max) / sum. Rows beyond maxComputeWorkgroupsPerDimension fold into y.

import { formatShape, type AttentionOptions, type Tensor } from '@cnx/tensor';
import type { GpuContext } from './webgpu/context.js';
import { gridFor, packUniforms } from './webgpu/context.js';
import { halfOperandsFor, halfPreamble, stagedBytes, type HalfOperands } from './f16_compute.js';

export type { AttentionOptions } from '@cnx/tensor';

/** Below any finite score; WGSL has no -inf literal. */
const NEG = '-3.0e38';

export interface AttentionParams {
  D: number;
  Dv: number;
  /** Query rows per workgroup. */
  BQ: number;
  /** Keys per tile. */
  BK: number;
  /** Threads per query row. */
  G: number;
  causal: boolean;
  /** Q tile staged in workgroup memory (else re-read from global memory for every key tile). */
  qShared: boolean;
  /** K and V tiles in separate stages (one barrier fewer per tile) or one stage reused for both. */
  separateKV: boolean;
  /** D % 4 === 0: q and k bound as vec4 arrays. */
  vecQK: boolean;
  /** Dv % 4 === 0: v and out bound as vec4 arrays. */
  vecV: boolean;
  /** Also write the logsumexp lse [B, Lq, H] (binding 4; the uniforms move to binding 5). */
  lse: boolean;
  /** f16 compute: q, k, v staged as H (f16_compute.ts); absent: f32. */
  half?: HalfOperands;
}

const ceil4 = (n: number) => Math.ceil(n / 4);

/** Workgroup memory of a tile configuration, in bytes; `elemBytes`: bytes of a staged q/k/v element (2 for f16 operands). */
export function attentionStageBytes(p: Pick<AttentionParams, 'D' | 'Dv' | 'BQ' | 'BK' | 'G' | 'qShared' | 'separateKV'>, elemBytes = 4): number {
  const D4 = ceil4(p.D), Dv4 = ceil4(p.Dv);
  const vec4s = (p.qShared ? p.BQ * D4 : 0) + (p.separateKV ? p.BK * (D4 + Dv4) : p.BK * Math.max(D4, Dv4));
  return 4 * elemBytes * vec4s + 4 * (p.BQ * (p.BK + 1) + p.BQ * p.G);
}

/** WGSL of `fn <name>(b, row, h, d4) -> vec4<f32>`: 4 channels of one (batch, position, head) row. */
export function rowLoader(name: string, buf: string, len: string, dim: number, vec: boolean): string {
  const dims = `(((b * u.${len} + row) * u.H + h) * ${dim}u)`;
  if (vec) return `fn ${name}(b: u32, row: u32, h: u32, d4: u32) -> vec4<f32> { return ${buf}[${dims} / 4u + d4]; }\n`;
  return `fn ${name}(b: u32, row: u32, h: u32, d4: u32) -> vec4<f32> {
  let base = ${dims} + d4 * 4u;
  var v = vec4<f32>(0.0);
  for (var c = 0u; c < 4u; c++) { if (d4 * 4u + c < ${dim}u) { v[c] = ${buf}[base + c]; } }
  return v;
}\n`;
}

export function wgsl(p: AttentionParams): string {
  const { D, Dv, BQ, BK, G } = p;
  const D4 = ceil4(D), Dv4 = ceil4(Dv), T = BQ * G, NACC = Math.ceil(Dv4 / G);
  const PS = BK + 1; // Ps row stride, padded so the rows of a warp fall in different banks
  const kStage = p.separateKV ? 'Ks' : 'KV', vStage = p.separateKV ? 'Vs' : 'KV';
  // f16 operands: staged as vec4<H>, widened where read (exact), so all arithmetic stays f32.
  const sv = p.half ? 'vec4<H>' : 'vec4<f32>';
  const narrow = p.half ? 'vec4<H>(v)' : 'v';
  const widen = (e: string) => (p.half ? `vec4<f32>(${e})` : e);
  const stages = p.separateKV
    ? `var<workgroup> Ks: array<${sv}, ${BK * D4}>;\nvar<workgroup> Vs: array<${sv}, ${BK * Dv4}>;`
    : `var<workgroup> KV: array<${sv}, ${BK * Math.max(D4, Dv4)}>;`;
  const stageRows = (stage: string, loader: string, n4: number) => `    for (var s = lid; s < ${BK * n4}u; s += ${T}u) {
      let c = s / ${n4}u; let d4 = s % ${n4}u;
      var v = vec4<f32>(0.0);
      if (k0 + c < u.Lk) { v = ${loader}(b, k0 + c, h, d4); }
      ${stage}[s] = ${narrow};
    }`;
  // A q read from global memory (not staged) is used in f32: rounding it to f16 in registers would save
  // nothing, and drivers disagree on whether it happens (Mesa's lavapipe folds f32(f16(x)) to x).
  const qVec = p.qShared ? widen(`Qs[r * ${D4}u + d4]`) : `loadQ(b, qrow, h, d4)`;

  // Unrolled per-thread state: SJ scores (s_j) with validity flags, NACC vec4 accumulators. Key c_j =
  // j*G + g of the tile; when G does not divide BK the last j is partly outside the tile.
  const SJ = Math.ceil(BK / G);
  const inTile = (j: number) => ((j + 1) * G <= BK ? '' : `c${j} < ${BK}u`);
  const scoreDecl: string[] = [];
  const dotBody: string[] = [];
  const scores: string[] = [];
  for (let j = 0; j < SJ; j++) {
    scoreDecl.push(`    let c${j} = ${j * G}u + g;\n    var dot${j} = 0.0;`);
    // Clamp the stage row of out-of-tile keys (their score is discarded) instead of branching.
    const row = inTile(j) ? `min(c${j}, ${BK - 1}u)` : `c${j}`;
    dotBody.push(`dot${j} += dot(qv, ${widen(`${kStage}[${row} * ${D4}u + d4]`)});`);
    const conds = [inTile(j), `k0 + c${j} < u.Lk`, p.causal ? `k0 + c${j} <= i` : ''].filter((x) => x !== '');
    scores.push(`    let ok${j} = ${conds.join(' && ')};
    let s${j} = dot${j} * u.scale;
    mloc = select(mloc, max(mloc, s${j}), ok${j});`);
  }
  // Each q vec4 is read once per tile and used for all SJ keys of the thread.
  scores.unshift(`${scoreDecl.join('\n')}
    for (var d4 = 0u; d4 < ${D4}u; d4++) {
      let qv = ${qVec};
      ${dotBody.join('\n      ')}
    }`);
  const probs: string[] = [];
  for (let j = 0; j < SJ; j++) {
    const store = `Ps[r * ${PS}u + c${j}] = p${j};`;
    probs.push(`    let p${j} = select(0.0, exp(s${j} - mNew), ok${j});
    ${inTile(j) ? `if (${inTile(j)}) { ${store} }` : store}
    lsum += p${j};`);
  }
  // Accumulator t holds output columns (g + G*t)*4 .. +3; only the last may run past Dv4.
  const accValid = (t: number) => (G * (t + 1) <= Dv4 ? '' : `g + ${G * t}u < ${Dv4}u`);
  const accDecl = Array.from({ length: NACC }, (_, t) => `  var acc${t} = vec4<f32>(0.0);`).join('\n');
  const accScale = Array.from({ length: NACC }, (_, t) => `acc${t} *= alpha;`).join(' ');
  const accUpdate = Array.from({ length: NACC }, (_, t) => {
    const cond = accValid(t);
    const stmt = `acc${t} += pc * ${widen(`${vStage}[c * ${Dv4}u + g + ${G * t}u]`)};`;
    return cond ? `if (${cond}) { ${stmt} }` : stmt;
  }).join('\n      ');
  const outStore = Array.from({ length: NACC }, (_, t) => {
    const cond = accValid(t);
    const d4 = `g + ${G * t}u`;
    const stmt = p.vecV
      ? `O[obase / 4u + ${d4}] = acc${t} * invL;`
      : `{ let o = acc${t} * invL; for (var c = 0u; c < 4u; c++) { if ((${d4}) * 4u + c < ${Dv}u) { O[obase + (${d4}) * 4u + c] = o[c]; } } }`;
    return cond ? `if (${cond}) { ${stmt} }` : stmt;
  }).join('\n    ');

  return /* wgsl */ `${halfPreamble(p.half)}// attention: D=${D} Dv=${Dv}, ${BQ} queries x ${BK} keys per tile, ${G} threads per row${p.causal ? ', causal' : ''}${p.qShared ? '' : ', Q from global'}
struct Uniforms { Lq: u32, Lk: u32, H: u32, scale: f32 }
@group(0) @binding(0) var<storage, read> Q: array<${p.vecQK ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(1) var<storage, read> K: array<${p.vecQK ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(2) var<storage, read> V: array<${p.vecV ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(3) var<storage, read_write> O: array<${p.vecV ? 'vec4<f32>' : 'f32'}>;
${p.lse ? '@group(0) @binding(4) var<storage, read_write> LSE: array<f32>;\n' : ''}@group(0) @binding(${p.lse ? 5 : 4}) var<uniform> u: Uniforms;

${p.qShared ? `var<workgroup> Qs: array<${sv}, ${BQ * D4}>;` : ''}
${stages}
var<workgroup> Ps: array<f32, ${BQ * PS}>;
var<workgroup> red: array<f32, ${T}>;

${rowLoader('loadQ', 'Q', 'Lq', D, p.vecQK)}
${rowLoader('loadK', 'K', 'Lk', D, p.vecQK)}
${rowLoader('loadV', 'V', 'Lk', Dv, p.vecV)}

@compute @workgroup_size(${T}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let q0 = wid.x * ${BQ}u;
  let h = wid.y;
  let b = wid.z;
  let r = lid / ${G}u;
  let g = lid % ${G}u;
  let i = q0 + r;
  let qrow = min(i, u.Lq - 1u); // rows past Lq compute on a valid row and are not stored
${p.qShared ? `  for (var s = lid; s < ${BQ * D4}u; s += ${T}u) {
    let rr = s / ${D4}u; let d4 = s % ${D4}u;
    var v = vec4<f32>(0.0);
    if (q0 + rr < u.Lq) { v = loadQ(b, q0 + rr, h, d4); }
    Qs[s] = ${narrow};
  }` : ''}
  var mRun = ${NEG};
  var lRun = 0.0;
${accDecl}
  let kEnd = ${p.causal ? `min(u.Lk, q0 + ${BQ}u)` : 'u.Lk'};
  for (var k0 = 0u; k0 < kEnd; k0 += ${BK}u) {
${stageRows(kStage, 'loadK', D4)}
${p.separateKV ? stageRows(vStage, 'loadV', Dv4) : ''}
    workgroupBarrier();
    var mloc = ${NEG};
${scores.join('\n')}
    red[lid] = mloc;
    workgroupBarrier();
    var mTile = ${NEG};
    for (var gg = 0u; gg < ${G}u; gg++) { mTile = max(mTile, red[r * ${G}u + gg]); }
    let mNew = max(mRun, mTile);
    let alpha = exp(mRun - mNew);
    var lsum = 0.0;
${probs.join('\n')}
    lRun = lRun * alpha + lsum;
    mRun = mNew;
    workgroupBarrier();
${p.separateKV ? '' : `${stageRows(vStage, 'loadV', Dv4)}\n    workgroupBarrier();`}
    ${accScale}
    for (var c = 0u; c < ${BK}u; c++) {
      let pc = Ps[r * ${PS}u + c];
      ${accUpdate}
    }
    workgroupBarrier();
  }
  red[lid] = lRun;
  workgroupBarrier();
  var l = 0.0;
  for (var gg = 0u; gg < ${G}u; gg++) { l += red[r * ${G}u + gg]; }
  if (i < u.Lq) {
    let invL = 1.0 / l;
    let obase = ((b * u.Lq + i) * u.H + h) * ${Dv}u;
    ${outStore}${p.lse ? '\n    if (g == 0u) { LSE[(b * u.Lq + i) * u.H + h] = mRun + log(l); }' : ''}
  }
}
`;
}

export interface AttentionPlan {
  params: AttentionParams;
  workgroups: [number, number, number];
  uniforms: ArrayBuffer;
}

/**
 * Tile configuration for (D, Dv) within `storageBytes` of workgroup memory: the largest query tile first
 * (each staged key tile is reused by more queries), then the largest key tile (fewer barriers), Q staged
 * in workgroup memory when it fits, else read from global memory.
 */
export function chooseTiles(D: number, Dv: number, storageBytes: number, maxThreads: number, elemBytes = 4): AttentionTiles {
  // Enough threads per row that each holds at most 16 vec4 accumulators (64 output columns).
  let G = 4;
  while (Math.ceil(ceil4(Dv) / G) > 16 && G < 64) G *= 2;
  const tries: AttentionTiles[] = [];
  const add = (BQ: number, BK: number, qShared: boolean) => {
    if (BQ * G > maxThreads) return;
    tries.push({ D, Dv, BQ, BK, G, qShared, separateKV: true }, { D, Dv, BQ, BK, G, qShared, separateKV: false });
  };
  for (const BQ of [64, 32]) for (const BK of [64, 32, 16]) add(BQ, BK, true);
  for (const BQ of [64, 32]) for (const BK of [32, 16, 8]) add(BQ, BK, false);
  for (const BQ of [16, 8]) for (const BK of [16, 8, 4]) add(BQ, BK, true);
  for (const BQ of [16, 8, 4, 2, 1]) for (const BK of [16, 8, 4, 2, 1]) add(BQ, BK, false);
  const fit = tries.find((t) => attentionStageBytes(t, elemBytes) <= storageBytes);
  if (!fit) {
    throw new Error(`attention: no tile shape for D=${D}, Dv=${Dv} fits maxComputeWorkgroupStorageSize=${storageBytes} bytes`);
  }
  return fit;
}

export type AttentionTiles = Omit<AttentionParams, 'causal' | 'vecQK' | 'vecV' | 'lse'>;

/**
 * Plan an attention call; `tiles` overrides chooseTiles (benchmarks compare tile shapes); `lse` adds the
 * logsumexp output; `half`: the operand precision (default: the context's; null: the f32 kernel).
 */
export function plan(
  ctx: GpuContext, q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions, tiles?: AttentionTiles, lse = false,
  half: HalfOperands | null | undefined = halfOperandsFor(ctx),
): AttentionPlan {
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) {
    throw new Error(`attention: expected q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv], found ` +
      `${formatShape(q.shape)}, ${formatShape(k.shape)}, ${formatShape(v.shape)}`);
  }
  const [B, Lq, H, D] = q.shape as [number, number, number, number];
  const [Bk, Lk, Hk, Dk] = k.shape as [number, number, number, number];
  const [Bv, Lv, Hv, Dv] = v.shape as [number, number, number, number];
  if (Bk !== B || Bv !== B || Hk !== H || Hv !== H || Dk !== D || Lv !== Lk) {
    throw new Error(`attention: expected k [${B}, Lk, ${H}, ${D}] and v [${B}, Lk, ${H}, Dv] matching q ${formatShape(q.shape)}, ` +
      `found k ${formatShape(k.shape)}, v ${formatShape(v.shape)}`);
  }
  for (const [n, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (t.dtype !== 'f32') throw new Error(`attention: expected f32 ${n}, found ${t.dtype}`);
  }
  if (opts.causal && Lq !== Lk) throw new Error(`attention: causal masking needs Lq === Lk, found Lq=${Lq}, Lk=${Lk}`);
  if (Lq === 0 || Lk === 0) throw new Error(`attention: empty sequence (Lq=${Lq}, Lk=${Lk})`);
  const eb = stagedBytes(half ?? undefined);
  const t = tiles ?? chooseTiles(D, Dv, ctx.limits.maxComputeWorkgroupStorageSize, ctx.limits.maxComputeInvocationsPerWorkgroup, eb);
  if (t.D !== D || t.Dv !== Dv || attentionStageBytes(t, eb) > ctx.limits.maxComputeWorkgroupStorageSize || t.BQ * t.G > ctx.limits.maxComputeInvocationsPerWorkgroup) {
    throw new Error(`attention: tiles ${JSON.stringify(t)} do not fit D=${D}, Dv=${Dv} on this device`);
  }
  const params: AttentionParams = { ...t, causal: opts.causal ?? false, vecQK: D % 4 === 0, vecV: Dv % 4 === 0, lse, ...(half ? { half } : {}) };
  const workgroups: [number, number, number] = [Math.ceil(Lq / params.BQ), H, B];
  const maxDim = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (workgroups.some((w) => w > maxDim)) {
    throw new Error(`attention: grid ${workgroups.join('x')} (query tiles x heads x batch) exceeds maxComputeWorkgroupsPerDimension=${maxDim}`);
  }
  const uniforms = packUniforms([['u32', Lq], ['u32', Lk], ['u32', H], ['f32', opts.scale]]);
  return { params, workgroups, uniforms };
}

/** See Backend.attention. */
export function attention(ctx: GpuContext, q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Tensor {
  return attentionWithTiles(ctx, q, k, v, opts);
}

/**
 * attention with explicit tiles (benchmarks and tests of every variant) and operand precision (`half`;
 * default: f16 where the context computes in f16; null forces f32).
 */
export function attentionWithTiles(
  ctx: GpuContext, q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions, tiles?: AttentionTiles, half?: HalfOperands | null,
): Tensor {
  // `half` as given: undefined takes plan's default (the context's choice), null the f32 kernel
  const p = plan(ctx, q, k, v, opts, tiles, false, half);
  const [B, Lq, H] = q.shape as [number, number, number, number];
  const out = ctx.empty([B, Lq, H, v.shape[3]!]);
  ctx.dispatch({ label: 'attention', code: wgsl(p.params), bindings: [q, k, v, out], uniforms: p.uniforms, workgroups: p.workgroups });
  return out;
}

/**
 * attention that also returns what its backward needs: out [B, Lq, H, Dv] and the logsumexp of the
 * scaled scores lse [B, Lq, H] (natural log). Same kernel and tiles as `attention`, one extra store per row.
 * Always the f32 kernel, also on an f16-compute context: the backward (attention_backward.ts) recomputes
 * P = exp(s - lse) from f32 q and k, so an lse of f16-rounded scores would not normalise it: with sharp
 * logits (|s| ~ 50) the rounding moves s by ~u16 |s| ~ 0.02, and P by as much (the grad_attention golden
 * case's sdpa_sharp grad.v failed so on lavapipe, 2026-12).
 */
export function attentionWithLse(ctx: GpuContext, q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions, tiles?: AttentionTiles): { out: Tensor; lse: Tensor } {
  const p = plan(ctx, q, k, v, opts, tiles, true, null);
  const [B, Lq, H] = q.shape as [number, number, number, number];
  const out = ctx.empty([B, Lq, H, v.shape[3]!]);
  const lse = ctx.empty([B, Lq, H]);
  ctx.dispatch({ label: 'attention_lse', code: wgsl(p.params), bindings: [q, k, v, out, lse], uniforms: p.uniforms, workgroups: p.workgroups });
  return { out, lse };
}

// ---------------------------------------------------------------- softmax

export interface SoftmaxParams {
  /** Threads per row (a power of two). */
  workgroupSize: number;
}

export function softmaxWgsl(p: SoftmaxParams): string {
  const WG = p.workgroupSize;
  return /* wgsl */ `// softmax over rows, ${WG} threads per row
struct Uniforms { rows: u32, len: u32, gridX: u32 }
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@group(0) @binding(2) var<uniform> u: Uniforms;
var<workgroup> redM: array<f32, ${WG}>;
var<workgroup> redS: array<f32, ${WG}>;

@compute @workgroup_size(${WG}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.y * u.gridX + wid.x;
  if (row >= u.rows) { return; }
  let base = row * u.len;
  // Online (max, sum of exp(x - max)) over this thread's slice.
  var m = ${NEG};
  var s = 0.0;
  for (var j = lid; j < u.len; j += ${WG}u) {
    let x = X[base + j];
    if (x > m) { s = s * exp(m - x) + 1.0; m = x; } else { s += exp(x - m); }
  }
  redM[lid] = m;
  redS[lid] = s;
  workgroupBarrier();
  for (var stride = ${WG / 2}u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      let m1 = redM[lid]; let m2 = redM[lid + stride];
      let mm = max(m1, m2);
      redS[lid] = redS[lid] * exp(m1 - mm) + redS[lid + stride] * exp(m2 - mm);
      redM[lid] = mm;
    }
    workgroupBarrier();
  }
  let mx = redM[0];
  let inv = 1.0 / redS[0];
  for (var j = lid; j < u.len; j += ${WG}u) { Y[base + j] = exp(X[base + j] - mx) * inv; }
}
`;
}

/** See Backend.softmax: over the last dim of a contiguous f32 tensor. */
export function softmax(ctx: GpuContext, x: Tensor): Tensor {
  if (x.rank < 1 || x.dtype !== 'f32') throw new Error(`softmax: expected an f32 tensor of rank >= 1, found ${x.dtype} ${formatShape(x.shape)}`);
  const len = x.shape[x.rank - 1]!;
  const out = ctx.empty(x.shape);
  const rows = len === 0 ? 0 : x.size / len;
  if (rows === 0) return out;
  // Short rows get fewer threads so most of them are not idle; long rows the full 256.
  const workgroupSize = len <= 64 ? 32 : len <= 512 ? 64 : len <= 2048 ? 128 : 256;
  const [gx, gy] = gridFor(rows, ctx.limits.maxComputeWorkgroupsPerDimension);
  ctx.dispatch({
    label: 'softmax', code: softmaxWgsl({ workgroupSize }), bindings: [x, out],
    uniforms: packUniforms([['u32', rows], ['u32', len], ['u32', gx]]), workgroups: [gx, gy],
  });
  return out;
}
