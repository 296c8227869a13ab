// Backward of multi-head scaled-dot-product attention, FlashAttention-2 style (Dao 2023, "FlashAttention-2",
// algorithm 2): the [Lq, Lk] probability matrix is recomputed tile by tile from the forward's saved
// logsumexp and never materialised, so memory is O(B*L*H*D) and SD1.5 at 512x512 (Lq = Lk = 4096,
// 8 heads, D = 40) runs inside the default WebGPU limits (16 KiB workgroup memory, 128 MiB bindings,
// 8 storage buffers per stage). Semantics: attentionBackward in packages/tensor/src/cpu/attention_backward.ts.
//
// Inputs (layout of Backend.attention, heads interleaved): q [B, Lq, H, D], k [B, Lk, H, D],
// v [B, Lk, H, Dv], o and dO [B, Lq, H, Dv], lse [B, Lq, H] (natural log of sum_j exp(scale q.k), from
// attentionWithLse in attention.ts). Outputs dq [B, Lq, H, D], dk [B, Lk, H, D], dv [B, Lk, H, Dv].
//   P_ij = exp(scale q_i.k_j - lse_i),  Delta_i = dO_i . o_i,  dS_ij = P_ij (dO_i . v_j - Delta_i)
//   dv_j = sum_i P_ij dO_i,  dk_j = scale sum_i dS_ij q_i,  dq_i = scale sum_j dS_ij k_j
// Three dispatches, no atomics (each output element is owned by one thread):
//  1. 'delta': Delta [B, Lq, H], one thread per (b, query, head) row.
//  2. 'dkdv': one workgroup per (key tile of BK keys, head, batch); it walks the query tiles of BQ rows
//     (causal: only those at or after its keys), recomputes P and dS for the BQ x BK block (phase 1: each
//     key served by G threads, thread g scoring the queries g, g+G, ...), puts them in workgroup memory,
//     then (phase 2) thread g of key c accumulates the vec4 columns g, g+G, ... of dv_c += P^T dO and
//     dk_c += dS^T q in registers.
//  3. 'dq': one workgroup per (query tile of BQ rows, head, batch), the forward's structure: it walks the
//     key tiles (causal: up to its last query), recomputes dS (phase 1, G threads per query row), and
//     accumulates dq_i += dS k in registers (phase 2).
// Recomputing S and dP in both passes costs 7 tile matmuls instead of FA2's 5 with atomic dq; WGSL has
// no float atomics, and this keeps the result deterministic.
// Variants: causal; q/dO tiles staged in workgroup memory or read from global memory (qShared); k/v tiles
// staged or read from global memory (kvShared); vec4 bindings when D (q, k, dq, dk) or Dv (v, o, dO, dv)
// is a multiple of 4 (else scalar loads padded to vec4). chooseBackwardTiles() picks per pass, from D,
// Dv and maxComputeWorkgroupStorageSize, the largest tiles with both stages first. At 16 KiB, D = Dv = 40:
// both passes 16 x 16 tiles, everything staged (12.1 KiB and 11.1 KiB).
// Numerics: f32 throughout. Masked (causal) and out-of-range pairs get P = 0 without calling exp(); P is
// at most ~1 because lse bounds every score of its row, so no running max is needed.

import { formatShape, type AttentionOptions, type Tensor } from '@cnx/tensor';
import { rowLoader } from './attention.js';
import { gridFor, packUniforms, type GpuContext } from './webgpu/context.js';

const ceil4 = (n: number) => Math.ceil(n / 4);

export type AttentionBackwardStage = 'dkdv' | 'dq';

export interface AttentionBackwardTiles {
  D: number;
  Dv: number;
  /** Query rows per tile. */
  BQ: number;
  /** Keys per tile. */
  BK: number;
  /** Threads per key ('dkdv') or per query row ('dq'). */
  G: number;
  /** q and dO tiles staged in workgroup memory (else read from global memory). */
  qShared: boolean;
  /** k and v tiles staged in workgroup memory (else read from global memory). */
  kvShared: boolean;
}

export interface AttentionBackwardParams extends AttentionBackwardTiles {
  stage: AttentionBackwardStage;
  causal: boolean;
  /** D % 4 === 0: q, k, dq, dk bound as vec4 arrays. */
  vecQK: boolean;
  /** Dv % 4 === 0: v, dO, dv bound as vec4 arrays. */
  vecV: boolean;
}

/** Workgroup memory of one pass's tile configuration, in bytes. */
export function backwardStageBytes(stage: AttentionBackwardStage, t: AttentionBackwardTiles): number {
  const rowVec4s = ceil4(t.D) + ceil4(t.Dv);
  const scratch = (stage === 'dkdv' ? 2 : 1) * t.BQ * (t.BK + 1); // P and dS (dkdv) or dS (dq), padded rows
  return 16 * ((t.qShared ? t.BQ * rowVec4s : 0) + (t.kvShared ? t.BK * rowVec4s : 0)) + 4 * scratch;
}

/** Threads per row so that each thread holds at most 16 vec4 accumulators. */
function threadsPerRow(stage: AttentionBackwardStage, D: number, Dv: number): number {
  const accs = (G: number) => Math.ceil(ceil4(D) / G) + (stage === 'dkdv' ? Math.ceil(ceil4(Dv) / G) : 0);
  let G = 4;
  while (accs(G) > 16 && G < 64) G *= 2;
  return G;
}

/**
 * Tiles of one pass within `storageBytes` of workgroup memory and `maxThreads` invocations: the largest
 * tile of the pass's own rows first (keys for 'dkdv', queries for 'dq': each staged tile of the other
 * side is reused by more rows), then the largest tile of the other side; both sides staged when they fit,
 * then the other side read from global memory, then both small, then nothing staged.
 */
export function chooseBackwardTiles(stage: AttentionBackwardStage, D: number, Dv: number, storageBytes: number, maxThreads: number): AttentionBackwardTiles {
  const G = threadsPerRow(stage, D, Dv);
  const tries: AttentionBackwardTiles[] = [];
  // own: rows owned by the workgroup (keys for dkdv, queries for dq); other: the tiles it walks.
  const add = (own: number, other: number, ownShared: boolean, otherShared: boolean) => {
    if (own * G > maxThreads) return;
    tries.push(stage === 'dkdv'
      ? { D, Dv, BK: own, BQ: other, G, kvShared: ownShared, qShared: otherShared }
      : { D, Dv, BQ: own, BK: other, G, qShared: ownShared, kvShared: otherShared });
  };
  for (const own of [64, 32, 16]) for (const other of [64, 32, 16]) add(own, other, true, true);
  for (const own of [64, 32, 16]) for (const other of [32, 16, 8]) add(own, other, false, true);
  for (const own of [8, 4]) for (const other of [16, 8, 4]) add(own, other, true, true);
  for (const own of [16, 8, 4, 2, 1]) for (const other of [16, 8, 4, 2, 1]) add(own, other, false, false);
  const fit = tries.find((t) => backwardStageBytes(stage, t) <= storageBytes);
  if (!fit) throw new Error(`attention backward: no ${stage} tile shape for D=${D}, Dv=${Dv} fits maxComputeWorkgroupStorageSize=${storageBytes} bytes`);
  return fit;
}

const UNIFORMS = 'struct Uniforms { Lq: u32, Lk: u32, H: u32, scale: f32 }';

/** WGSL of the Delta pre-pass: Delta[row] = dO[row] . o[row] over Dv. */
export function deltaWgsl(p: { Dv: number; vecV: boolean }): string {
  const n = p.vecV ? p.Dv / 4 : p.Dv;
  return /* wgsl */ `// attention backward: Delta = rowsum(dO * o), Dv=${p.Dv}${p.vecV ? ', vec4' : ''}
struct DeltaUniforms { rows: u32, gridX: u32 }
@group(0) @binding(0) var<storage, read> dO: array<${p.vecV ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(1) var<storage, read> O: array<${p.vecV ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(2) var<storage, read_write> Delta: array<f32>;
@group(0) @binding(3) var<uniform> u: DeltaUniforms;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = (wid.y * u.gridX + wid.x) * 64u + lid;
  if (row >= u.rows) { return; }
  var acc = 0.0;
  for (var d = 0u; d < ${n}u; d++) {
    let i = row * ${n}u + d;
    acc += ${p.vecV ? 'dot(dO[i], O[i])' : 'dO[i] * O[i]'};
  }
  Delta[row] = acc;
}
`;
}

/** WGSL statement(s) storing vec4 `val` as columns d4*4.. of a row at element offset `base` of `buf`. */
function storeVec4(buf: string, base: string, d4: string, dim: number, vec: boolean, val: string): string {
  if (vec) return `${buf}[${base} / 4u + ${d4}] = ${val};`;
  return `{ let o = ${val}; for (var cc = 0u; cc < 4u; cc++) { if ((${d4}) * 4u + cc < ${dim}u) { ${buf}[${base} + (${d4}) * 4u + cc] = o[cc]; } } }`;
}

/** WGSL of one pass ('dkdv' or 'dq') of the backward. */
export function wgsl(p: AttentionBackwardParams): string {
  const { D, Dv, BQ, BK, G } = p;
  const D4 = ceil4(D), Dv4 = ceil4(Dv);
  const PS = BK + 1; // scratch row stride, padded against bank conflicts
  const qt = p.vecQK ? 'vec4<f32>' : 'f32', vt = p.vecV ? 'vec4<f32>' : 'f32';
  const dkdv = p.stage === 'dkdv';
  const T = (dkdv ? BK : BQ) * G;
  // Tile staging: rows [r0, r0 + n) of a [len] sequence into a stage of n*w vec4s, zeros past the end.
  const stage = (name: string, loader: string, n: number, w: number, r0: string, len: string) => `  for (var s = lid; s < ${n * w}u; s += ${T}u) {
    let rr = s / ${w}u; let d4 = s % ${w}u;
    var val = vec4<f32>(0.0);
    if (${r0} + rr < u.${len}) { val = ${loader}(b, ${r0} + rr, h, d4); }
    ${name}[s] = val;
  }`;
  // Row accessors: staged, or from global memory with the row clamped into range (the clamped rows'
  // contributions are masked to zero).
  const qRow = (r: string, d4: string) => (p.qShared ? `Qs[(${r}) * ${D4}u + ${d4}]` : `loadQ(b, min(q0 + (${r}), u.Lq - 1u), h, ${d4})`);
  const oRow = (r: string, d4: string) => (p.qShared ? `dOs[(${r}) * ${Dv4}u + ${d4}]` : `loadDO(b, min(q0 + (${r}), u.Lq - 1u), h, ${d4})`);
  const kRow = (c: string, d4: string) => (p.kvShared ? `Ks[(${c}) * ${D4}u + ${d4}]` : `loadK(b, min(k0 + (${c}), u.Lk - 1u), h, ${d4})`);
  const vRow = (c: string, d4: string) => (p.kvShared ? `Vs[(${c}) * ${Dv4}u + ${d4}]` : `loadV(b, min(k0 + (${c}), u.Lk - 1u), h, ${d4})`);
  const stages = [
    p.qShared ? `var<workgroup> Qs: array<vec4<f32>, ${BQ * D4}>;\nvar<workgroup> dOs: array<vec4<f32>, ${BQ * Dv4}>;` : '',
    p.kvShared ? `var<workgroup> Ks: array<vec4<f32>, ${BK * D4}>;\nvar<workgroup> Vs: array<vec4<f32>, ${BK * Dv4}>;` : '',
    dkdv ? `var<workgroup> Ps: array<f32, ${BQ * PS}>;\nvar<workgroup> dSs: array<f32, ${BQ * PS}>;` : `var<workgroup> dSs: array<f32, ${BQ * PS}>;`,
  ].filter((x) => x !== '').join('\n');
  const loaders = rowLoader('loadQ', 'Q', 'Lq', D, p.vecQK) + rowLoader('loadK', 'K', 'Lk', D, p.vecQK) +
    rowLoader('loadV', 'V', 'Lk', Dv, p.vecV) + rowLoader('loadDO', 'dO', 'Lq', Dv, p.vecV);
  const header = `${UNIFORMS}
@group(0) @binding(0) var<storage, read> Q: array<${qt}>;
@group(0) @binding(1) var<storage, read> K: array<${qt}>;
@group(0) @binding(2) var<storage, read> V: array<${vt}>;
@group(0) @binding(3) var<storage, read> dO: array<${vt}>;
@group(0) @binding(4) var<storage, read> LSE: array<f32>;
@group(0) @binding(5) var<storage, read> Delta: array<f32>;
${dkdv
    ? `@group(0) @binding(6) var<storage, read_write> dK: array<${qt}>;
@group(0) @binding(7) var<storage, read_write> dV: array<${vt}>;
@group(0) @binding(8) var<uniform> u: Uniforms;`
    : `@group(0) @binding(6) var<storage, read_write> dQ: array<${qt}>;
@group(0) @binding(7) var<uniform> u: Uniforms;`}

${stages}

${loaders}`;
  // Phase 1, unrolled over the J partners of this thread (partner j = j*G + g of the other side's
  // tile; when G does not divide the tile the last j is partly outside it).
  const other = dkdv ? BQ : BK;
  const J = Math.ceil(other / G);
  const inTile = (j: number) => ((j + 1) * G <= other ? '' : `t${j} < ${other}u`);
  const clampT = (j: number) => (inTile(j) ? `min(t${j}, ${other - 1}u)` : `t${j}`);
  const decl: string[] = [], sBody: string[] = [], pBody: string[] = [], fin: string[] = [];
  for (let j = 0; j < J; j++) {
    decl.push(`    let t${j} = ${j * G}u + g;\n    var s${j} = 0.0;\n    var dp${j} = 0.0;`);
    if (dkdv) {
      // own = key c (its k and v vec4 read once per d4), partner = query t_j
      sBody.push(`s${j} += dot(${qRow(clampT(j), 'd4')}, kv);`);
      pBody.push(`dp${j} += dot(${oRow(clampT(j), 'd4')}, vv);`);
      const conds = [inTile(j), `q0 + t${j} < u.Lq`, 'k0 + c < u.Lk', p.causal ? `k0 + c <= q0 + t${j}` : ''].filter((x) => x !== '');
      fin.push(`    {
      let row = (b * u.Lq + min(q0 + t${j}, u.Lq - 1u)) * u.H + h;
      let ok = ${conds.join(' && ')};
      let pr = select(0.0, exp(s${j} * u.scale - LSE[row]), ok);
      let ds = pr * (dp${j} - Delta[row]);
      ${inTile(j) ? `if (${inTile(j)}) ` : ''}{ Ps[t${j} * ${PS}u + c] = pr; dSs[t${j} * ${PS}u + c] = ds; }
    }`);
    } else {
      // own = query r (its q and dO vec4 read once per d4), partner = key t_j
      sBody.push(`s${j} += dot(qv, ${kRow(clampT(j), 'd4')});`);
      pBody.push(`dp${j} += dot(ov, ${vRow(clampT(j), 'd4')});`);
      const conds = [inTile(j), `k0 + t${j} < u.Lk`, p.causal ? `k0 + t${j} <= i` : ''].filter((x) => x !== '');
      fin.push(`    {
      let ok = ${conds.join(' && ')};
      let pr = select(0.0, exp(s${j} * u.scale - lseI), ok);
      ${inTile(j) ? `if (${inTile(j)}) ` : ''}{ dSs[r * ${PS}u + t${j}] = pr * (dp${j} - deltaI); }
    }`);
    }
  }
  const phase1 = dkdv
    ? `${decl.join('\n')}
    for (var d4 = 0u; d4 < ${D4}u; d4++) {
      let kv = ${kRow('c', 'd4')};
      ${sBody.join('\n      ')}
    }
    for (var d4 = 0u; d4 < ${Dv4}u; d4++) {
      let vv = ${vRow('c', 'd4')};
      ${pBody.join('\n      ')}
    }
${fin.join('\n')}`
    : `${decl.join('\n')}
    for (var d4 = 0u; d4 < ${D4}u; d4++) {
      let qv = ${qRow('r', 'd4')};
      ${sBody.join('\n      ')}
    }
    for (var d4 = 0u; d4 < ${Dv4}u; d4++) {
      let ov = ${oRow('r', 'd4')};
      ${pBody.join('\n      ')}
    }
${fin.join('\n')}`;
  // Phase 2 accumulators: acc t holds vec4 column g + G*t; only the last may run past the row width.
  const accs = (prefix: string, w4: number) => Array.from({ length: Math.ceil(w4 / G) }, (_, t) => ({
    name: `${prefix}${t}`, col: `g + ${G * t}u`, valid: G * (t + 1) <= w4 ? '' : `g + ${G * t}u < ${w4}u`,
  }));
  const guard = (valid: string, stmt: string) => (valid ? `if (${valid}) { ${stmt} }` : stmt);

  if (dkdv) {
    const aK = accs('accK', D4), aV = accs('accV', Dv4);
    const accDecl = [...aK, ...aV].map((a) => `  var ${a.name} = vec4<f32>(0.0);`).join('\n');
    const update = [
      ...aV.map((a) => guard(a.valid, `${a.name} += pr * ${oRow('r', a.col)};`)),
      ...aK.map((a) => guard(a.valid, `${a.name} += ds * ${qRow('r', a.col)};`)),
    ].join('\n      ');
    const stores = [
      ...aK.map((a) => guard(a.valid, storeVec4('dK', 'kbase', a.col, D, p.vecQK, `${a.name} * u.scale`))),
      ...aV.map((a) => guard(a.valid, storeVec4('dV', 'vbase', a.col, Dv, p.vecV, a.name))),
    ].join('\n    ');
    return /* wgsl */ `// attention backward dk/dv: D=${D} Dv=${Dv}, ${BK} keys per workgroup x ${BQ} queries per tile, ${G} threads per key${p.causal ? ', causal' : ''}${p.qShared ? '' : ', q/dO from global'}${p.kvShared ? '' : ', k/v from global'}
${header}
@compute @workgroup_size(${T}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let k0 = wid.x * ${BK}u;
  let h = wid.y;
  let b = wid.z;
  let c = lid / ${G}u;
  let g = lid % ${G}u;
${p.kvShared ? `${stage('Ks', 'loadK', BK, D4, 'k0', 'Lk')}\n${stage('Vs', 'loadV', BK, Dv4, 'k0', 'Lk')}` : ''}
${accDecl}
  // causal: queries before this key tile see none of its keys
  for (var q0 = ${p.causal ? `(k0 / ${BQ}u) * ${BQ}u` : '0u'}; q0 < u.Lq; q0 += ${BQ}u) {
${p.qShared ? `${stage('Qs', 'loadQ', BQ, D4, 'q0', 'Lq')}\n${stage('dOs', 'loadDO', BQ, Dv4, 'q0', 'Lq')}` : ''}
    workgroupBarrier();
${phase1}
    workgroupBarrier();
    for (var r = 0u; r < ${BQ}u; r++) {
      let pr = Ps[r * ${PS}u + c];
      let ds = dSs[r * ${PS}u + c];
      ${update}
    }
    workgroupBarrier();
  }
  if (k0 + c < u.Lk) {
    let kbase = ((b * u.Lk + k0 + c) * u.H + h) * ${D}u;
    let vbase = ((b * u.Lk + k0 + c) * u.H + h) * ${Dv}u;
    ${stores}
  }
}
`;
  }

  const aQ = accs('accQ', D4);
  const accDecl = aQ.map((a) => `  var ${a.name} = vec4<f32>(0.0);`).join('\n');
  const update = aQ.map((a) => guard(a.valid, `${a.name} += ds * ${kRow('c', a.col)};`)).join('\n      ');
  const stores = aQ.map((a) => guard(a.valid, storeVec4('dQ', 'qbase', a.col, D, p.vecQK, `${a.name} * u.scale`))).join('\n    ');
  return /* wgsl */ `// attention backward dq: D=${D} Dv=${Dv}, ${BQ} queries per workgroup x ${BK} keys per tile, ${G} threads per query${p.causal ? ', causal' : ''}${p.qShared ? '' : ', q/dO from global'}${p.kvShared ? '' : ', k/v from global'}
${header}
@compute @workgroup_size(${T}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let q0 = wid.x * ${BQ}u;
  let h = wid.y;
  let b = wid.z;
  let r = lid / ${G}u;
  let g = lid % ${G}u;
  let i = q0 + r;
  let rowI = (b * u.Lq + min(i, u.Lq - 1u)) * u.H + h; // rows past Lq compute on a valid row, not stored
  let lseI = LSE[rowI];
  let deltaI = Delta[rowI];
${p.qShared ? `${stage('Qs', 'loadQ', BQ, D4, 'q0', 'Lq')}\n${stage('dOs', 'loadDO', BQ, Dv4, 'q0', 'Lq')}` : ''}
${accDecl}
  let kEnd = ${p.causal ? `min(u.Lk, q0 + ${BQ}u)` : 'u.Lk'};
  for (var k0 = 0u; k0 < kEnd; k0 += ${BK}u) {
${p.kvShared ? `${stage('Ks', 'loadK', BK, D4, 'k0', 'Lk')}\n${stage('Vs', 'loadV', BK, Dv4, 'k0', 'Lk')}` : ''}
    workgroupBarrier();
${phase1}
    workgroupBarrier();
    for (var c = 0u; c < ${BK}u; c++) {
      let ds = dSs[r * ${PS}u + c];
      ${update}
    }
    workgroupBarrier();
  }
  if (i < u.Lq) {
    let qbase = ((b * u.Lq + i) * u.H + h) * ${D}u;
    ${stores}
  }
}
`;
}

// ---------------------------------------------------------------- planning

export interface AttentionBackwardDims { B: number; Lq: number; Lk: number; H: number; D: number; Dv: number }

/** The device limits planning reads (a GPUSupportedLimits satisfies it). */
export type AttentionBackwardLimits = Pick<GPUSupportedLimits,
  'maxComputeWorkgroupStorageSize' | 'maxComputeInvocationsPerWorkgroup' | 'maxComputeWorkgroupsPerDimension' |
  'maxStorageBufferBindingSize' | 'maxStorageBuffersPerShaderStage'>;

export interface AttentionBackwardPassPlan {
  params: AttentionBackwardParams;
  workgroups: [number, number, number];
  /** Workgroup memory the pass declares. */
  stageBytes: number;
  /** Storage buffers bound (all in the compute stage). */
  storageBuffers: number;
}

export interface AttentionBackwardPlan {
  delta: { params: { Dv: number; vecV: boolean }; workgroups: [number, number]; uniforms: ArrayBuffer };
  dkdv: AttentionBackwardPassPlan;
  dq: AttentionBackwardPassPlan;
  /** Uniforms of the dkdv and dq passes. */
  uniforms: ArrayBuffer;
  /** Bytes of every tensor bound (inputs, outputs and the Delta scratch): no [Lq, Lk] buffer exists. */
  bindingBytes: Record<'q' | 'k' | 'v' | 'o' | 'dO' | 'lse' | 'delta' | 'dq' | 'dk' | 'dv', number>;
}

/**
 * Plan the backward of attention with the given dimensions on a device with `limits` (pure: no device
 * needed, so the SD1.5 4096 x 4096 x 8 heads plan can be checked anywhere). Throws naming the limit
 * when a binding, the grid or the workgroup memory would not fit.
 */
export function planAttentionBackward(
  d: AttentionBackwardDims, opts: Pick<AttentionOptions, 'scale' | 'causal'>, limits: AttentionBackwardLimits,
  tiles?: { dkdv?: AttentionBackwardTiles; dq?: AttentionBackwardTiles },
): AttentionBackwardPlan {
  const { B, Lq, Lk, H, D, Dv } = d;
  if ([B, Lq, Lk, H, D, Dv].some((x) => !Number.isInteger(x) || x <= 0)) {
    throw new Error(`attention backward: expected positive integer dims, found ${JSON.stringify(d)}`);
  }
  if (opts.causal && Lq !== Lk) throw new Error(`attention backward: causal masking needs Lq === Lk, found Lq=${Lq}, Lk=${Lk}`);
  const bindingBytes = {
    q: 4 * B * Lq * H * D, k: 4 * B * Lk * H * D, v: 4 * B * Lk * H * Dv, o: 4 * B * Lq * H * Dv, dO: 4 * B * Lq * H * Dv,
    lse: 4 * B * Lq * H, delta: 4 * B * Lq * H, dq: 4 * B * Lq * H * D, dk: 4 * B * Lk * H * D, dv: 4 * B * Lk * H * Dv,
  };
  for (const [name, bytes] of Object.entries(bindingBytes)) {
    if (bytes > limits.maxStorageBufferBindingSize) {
      throw new Error(`attention backward: ${name} needs ${bytes} bytes, above maxStorageBufferBindingSize=${limits.maxStorageBufferBindingSize}`);
    }
  }
  const vecQK = D % 4 === 0, vecV = Dv % 4 === 0, causal = opts.causal ?? false;
  const maxDim = limits.maxComputeWorkgroupsPerDimension;
  const pass = (stage: AttentionBackwardStage, given?: AttentionBackwardTiles): AttentionBackwardPassPlan => {
    const t = given ?? chooseBackwardTiles(stage, D, Dv, limits.maxComputeWorkgroupStorageSize, limits.maxComputeInvocationsPerWorkgroup);
    const stageBytes = backwardStageBytes(stage, t);
    const threads = (stage === 'dkdv' ? t.BK : t.BQ) * t.G;
    if (t.D !== D || t.Dv !== Dv || stageBytes > limits.maxComputeWorkgroupStorageSize || threads > limits.maxComputeInvocationsPerWorkgroup) {
      throw new Error(`attention backward: ${stage} tiles ${JSON.stringify(t)} do not fit D=${D}, Dv=${Dv} on this device ` +
        `(${stageBytes} bytes of workgroup memory, ${threads} threads)`);
    }
    const workgroups: [number, number, number] = [Math.ceil((stage === 'dkdv' ? Lk / t.BK : Lq / t.BQ)), H, B];
    if (workgroups.some((w) => w > maxDim)) {
      throw new Error(`attention backward: ${stage} grid ${workgroups.join('x')} exceeds maxComputeWorkgroupsPerDimension=${maxDim}`);
    }
    const storageBuffers = stage === 'dkdv' ? 8 : 7;
    if (storageBuffers > limits.maxStorageBuffersPerShaderStage) {
      throw new Error(`attention backward: ${stage} binds ${storageBuffers} storage buffers, above maxStorageBuffersPerShaderStage=${limits.maxStorageBuffersPerShaderStage}`);
    }
    return { params: { ...t, stage, causal, vecQK, vecV }, workgroups, stageBytes, storageBuffers };
  };
  const rows = B * Lq * H;
  const [gx, gy] = gridFor(Math.ceil(rows / 64), maxDim);
  return {
    delta: { params: { Dv, vecV }, workgroups: [gx, gy], uniforms: packUniforms([['u32', rows], ['u32', gx]]) },
    dkdv: pass('dkdv', tiles?.dkdv),
    dq: pass('dq', tiles?.dq),
    uniforms: packUniforms([['u32', Lq], ['u32', Lk], ['u32', H], ['f32', opts.scale]]),
    bindingBytes,
  };
}

/**
 * Gradients of attention given the forward's output o and logsumexp lse (attentionWithLse) and the
 * upstream gradient dO: { dq, dk, dv } in the shapes of q, k, v. `tiles` overrides the tile choice
 * (tests of every variant).
 */
export function attentionBackward(
  ctx: GpuContext, q: Tensor, k: Tensor, v: Tensor, o: Tensor, dO: Tensor, lse: Tensor, opts: AttentionOptions,
  tiles?: { dkdv?: AttentionBackwardTiles; dq?: AttentionBackwardTiles },
): { dq: Tensor; dk: Tensor; dv: Tensor } {
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) {
    throw new Error(`attention backward: expected q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv], found ` +
      `${formatShape(q.shape)}, ${formatShape(k.shape)}, ${formatShape(v.shape)}`);
  }
  const [B, Lq, H, D] = q.shape as [number, number, number, number];
  const [Lk, Dv] = [k.shape[1]!, v.shape[3]!];
  const same = (t: Tensor, s: number[]) => t.rank === s.length && t.shape.every((x, i) => x === s[i]);
  const expect: [string, Tensor, number[]][] = [
    ['k', k, [B, Lk, H, D]], ['v', v, [B, Lk, H, Dv]], ['o', o, [B, Lq, H, Dv]], ['dO', dO, [B, Lq, H, Dv]], ['lse', lse, [B, Lq, H]],
  ];
  for (const [name, t, s] of expect) {
    if (!same(t, s)) throw new Error(`attention backward: expected ${name} ${formatShape(s)} (q ${formatShape(q.shape)}), found ${formatShape(t.shape)}`);
  }
  for (const [name, t] of [['q', q], ['k', k], ['v', v], ['o', o], ['dO', dO], ['lse', lse]] as const) {
    if (t.dtype !== 'f32') throw new Error(`attention backward: expected f32 ${name}, found ${t.dtype}`);
  }
  const plan = planAttentionBackward({ B, Lq, Lk, H, D, Dv }, opts, ctx.limits, tiles);
  const delta = ctx.empty([B, Lq, H]);
  ctx.dispatch({ label: 'attention_bwd_delta', code: deltaWgsl(plan.delta.params), bindings: [dO, o, delta], uniforms: plan.delta.uniforms, workgroups: plan.delta.workgroups });
  const dk = ctx.empty(k.shape), dv = ctx.empty(v.shape), dq = ctx.empty(q.shape);
  ctx.dispatch({
    label: 'attention_bwd_dkdv', code: wgsl(plan.dkdv.params), bindings: [q, k, v, dO, lse, delta, dk, dv],
    uniforms: plan.uniforms, workgroups: plan.dkdv.workgroups,
  });
  ctx.dispatch({
    label: 'attention_bwd_dq', code: wgsl(plan.dq.params), bindings: [q, k, v, dO, lse, delta, dq],
    uniforms: plan.uniforms, workgroups: plan.dq.workgroups,
  });
  // Later work that recycles the scratch is ordered after the dispatches that read it.
  delta.dispose();
  return { dq, dk, dv };
}
