// Backward of group normalisation (+ fused SiLU) and layer normalisation from the forward's saved
// statistics (norm.ts groupNormWithStats / layerNormWithStats).
//
// Math (per segment of L values, CPU reference: @cnx/tensor cpu/norm_backward.ts):
//   xhat = (x - mean) * rstd, z = xhat * w[c] + b[c], dz = dy * silu'(z) (fused SiLU; z recomputed) or dy,
//   dbias[c] = sum dz, dweight[c] = sum dz * xhat (over every n and position that uses channel c),
//   dx = rstd * (w[c] dz - mean_seg(w dz) - xhat * mean_seg(w dz xhat)).
//
// groupNormBackward: x, dy [N, C, ...spatial] (S = spatial size), mean/rstd [N, G], weight/bias [C].
// Because w is constant within a channel, one pass over the data gives everything:
//   'gn_channel_sums': per (n, c) row of S values (split into `parts` chunks of `chunk` values when S is
//     long, one workgroup per (chunk, row)): A = sum dz, B = sum dz * xhat -> Sums [N*C, parts] vec2;
//   'gn_finish': thread i < C: dbias[c] = sum over n, parts of A, dweight[c] = sum of B (when affine);
//     thread i < N*G: Coef[seg] = (sum_{c in g} w[c] A[n, c], sum_{c in g} w[c] B[n, c]) / L;
//   'gn_dx': one thread per element: dx = rstd * (w dz - Coef.x - xhat * Coef.y).
// layerNormBackward: x, dy [..., D] (R rows), mean/rstd [R], weight/bias [D]:
//   'ln_dx': one workgroup per row: the two row sums of w dz and w dz xhat (workgroup tree sum), then dx;
//   'ln_param_partials' (affine): thread per column, workgroup per (column tile, chunk of ROWS_PER_CHUNK
//     rows): partial sums of dy and dy * xhat down the chunk -> Parts [chunks, D] vec2 (coalesced: threads
//     read consecutive columns);
//   'ln_param_finish': thread per column sums the chunks -> dweight, dbias.
// Sums are f32 (sequential per thread, then a tree), so errors grow like sqrt(length) * eps.
// Limits: f32 contiguous tensors; N*C*S < 2^32; the flat grids split over x/y past 65535 workgroups.

import type { Tensor } from '@cnx/tensor';
import { gridFor, packUniforms, type GpuContext } from './webgpu/context.js';
import { workgroupSumWgsl } from './wgsl_math.js';

const WG = 256;
/** Values per workgroup of 'gn_channel_sums' before a channel row is split into chunks. */
const GN_CHUNK = 8192;
const GN_MAX_PARTS = 64;
/** Rows per workgroup of 'ln_param_partials'. */
const ROWS_PER_CHUNK = 64;

export interface NormBackwardParams {
  stage: 'gn_channel_sums' | 'gn_finish' | 'gn_dx' | 'ln_dx' | 'ln_param_partials' | 'ln_param_finish';
  hasWeight: boolean;
  hasBias: boolean;
  silu: boolean;
  /** Threads per workgroup (a power of two); 'ln_dx' sizes it from D. */
  wg: number;
}

const GN_UNIFORMS = /* wgsl */ `
struct U { n: u32, c: u32, s: u32, groups: u32, cg: u32, parts: u32, chunk: u32, total: u32 }`;
const LN_UNIFORMS = /* wgsl */ `
struct U { rows: u32, d: u32, chunks: u32, pad0: u32 }`;

/** Tree sum of a vec2 over the workgroup (every thread gets the total): wgsl_math.ts workgroupSumWgsl. */
const WORKGROUP_SUM2 = workgroupSumWgsl('workgroupSum2', 'vec2<f32>');

/** WGSL: dz from dy and the recomputed xhat (and z when SiLU is fused), as `let dz`. */
function dzWgsl(p: NormBackwardParams, c: string): string {
  if (!p.silu) return 'let dz = DY[i];';
  const z = `xh${p.hasWeight ? ` * Wt[${c}]` : ''}${p.hasBias ? ` + Bias[${c}]` : ''}`;
  return `let z = ${z};
    let sg = 1.0 / (1.0 + exp(-z));
    let dz = DY[i] * sg * (1.0 + z * (1.0 - sg));`;
}

/**
 * Affine parameters read by 'gn_channel_sums' and 'gn_dx', in binding order: the channel sums need them
 * only to recompute z for SiLU; dx also needs the weight (w dz).
 */
function affineBindings(p: Pick<NormBackwardParams, 'stage' | 'hasWeight' | 'hasBias' | 'silu'>): ('Wt' | 'Bias')[] {
  const out: ('Wt' | 'Bias')[] = [];
  if (p.hasWeight && (p.silu || p.stage === 'gn_dx')) out.push('Wt');
  if (p.hasBias && p.silu) out.push('Bias');
  return out;
}

/** Storage bindings 0..n-1 in order, then the uniform block at binding n. */
function declare(list: [name: string, type: string, access: 'read' | 'read_write'][]): string {
  return list.map(([n, t, a], i) => `@group(0) @binding(${i}) var<storage, ${a}> ${n}: ${t};`).join('\n') +
    `\n@group(0) @binding(${list.length}) var<uniform> u: U;`;
}

export function wgsl(p: NormBackwardParams): string {
  if (p.wg & (p.wg - 1)) throw new Error(`norm backward: workgroup size ${p.wg} is not a power of two`);
  // Affine parameters each group-norm stage reads (see affineBindings).
  const affine = affineBindings(p).map((n): [string, string, 'read'] => [n, 'array<f32>', 'read']);
  switch (p.stage) {
    case 'gn_channel_sums':
      return /* wgsl */ `${GN_UNIFORMS}
${declare([['X', 'array<f32>', 'read'], ['DY', 'array<f32>', 'read'], ['Mean', 'array<f32>', 'read'], ['Rstd', 'array<f32>', 'read'],
    ...affine, ['Sums', 'array<vec2<f32>>', 'read_write']])}
const WG = ${p.wg}u;
${WORKGROUP_SUM2}

@compute @workgroup_size(${p.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let part = wid.x;
  let row = wid.y + wid.z * 65535u; // (n, c)
  if (row >= u.n * u.c) { return; }
  let c = row % u.c;
  let seg = (row / u.c) * u.groups + c / u.cg;
  let mu = Mean[seg];
  let rs = Rstd[seg];
  let base = row * u.s;
  let end = min((part + 1u) * u.chunk, u.s);
  var acc = vec2<f32>(0.0);
  for (var j = part * u.chunk + tid; j < end; j += WG) {
    let i = base + j;
    let xh = (X[i] - mu) * rs;
    ${dzWgsl(p, 'c')}
    acc += vec2<f32>(dz, dz * xh);
  }
  let total = workgroupSum2(acc, tid);
  if (tid == 0u) { Sums[row * u.parts + part] = total; }
}
`;
    case 'gn_finish': {
      const outs: [string, string, 'read_write'][] = [['Coef', 'array<vec2<f32>>', 'read_write']];
      if (p.hasWeight) outs.push(['DW', 'array<f32>', 'read_write']);
      if (p.hasBias) outs.push(['DB', 'array<f32>', 'read_write']);
      const perChannel = p.hasWeight || p.hasBias
        ? `if (i < u.c) {
    var acc = vec2<f32>(0.0);
    for (var n = 0u; n < u.n; n++) {
      for (var q = 0u; q < u.parts; q++) { acc += Sums[(n * u.c + i) * u.parts + q]; }
    }
    ${p.hasBias ? 'DB[i] = acc.x;' : ''}
    ${p.hasWeight ? 'DW[i] = acc.y;' : ''}
  }`
        : '';
      return /* wgsl */ `${GN_UNIFORMS}
${declare([['Sums', 'array<vec2<f32>>', 'read'], ...(p.hasWeight ? [['Wt', 'array<f32>', 'read'] as [string, string, 'read']] : []), ...outs])}

@compute @workgroup_size(${p.wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  ${perChannel}
  if (i < u.n * u.groups) {
    let n = i / u.groups;
    let g = i % u.groups;
    var acc = vec2<f32>(0.0);
    for (var k = 0u; k < u.cg; k++) {
      let c = g * u.cg + k;
      var s = vec2<f32>(0.0);
      for (var q = 0u; q < u.parts; q++) { s += Sums[(n * u.c + c) * u.parts + q]; }
      acc += s${p.hasWeight ? ' * Wt[c]' : ''};
    }
    Coef[i] = acc / f32(u.cg * u.s);
  }
}
`;
    }
    case 'gn_dx':
      return /* wgsl */ `${GN_UNIFORMS}
${declare([['X', 'array<f32>', 'read'], ['DY', 'array<f32>', 'read'], ['Mean', 'array<f32>', 'read'], ['Rstd', 'array<f32>', 'read'],
    ...affine, ['Coef', 'array<vec2<f32>>', 'read'], ['DX', 'array<f32>', 'read_write']])}

@compute @workgroup_size(${p.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let i = (wid.x + wid.y * nwg.x) * ${p.wg}u + tid;
  if (i >= u.total) { return; }
  let row = i / u.s;
  let c = row % u.c;
  let seg = (row / u.c) * u.groups + c / u.cg;
  let rs = Rstd[seg];
  let xh = (X[i] - Mean[seg]) * rs;
  ${dzWgsl(p, 'c')}
  let k = Coef[seg];
  DX[i] = rs * (dz${p.hasWeight ? ' * Wt[c]' : ''} - k.x - xh * k.y);
}
`;
    case 'ln_dx':
      return /* wgsl */ `${LN_UNIFORMS}
${declare([['X', 'array<f32>', 'read'], ['DY', 'array<f32>', 'read'], ['Mean', 'array<f32>', 'read'], ['Rstd', 'array<f32>', 'read'],
    ...(p.hasWeight ? [['Wt', 'array<f32>', 'read'] as [string, string, 'read']] : []), ['DX', 'array<f32>', 'read_write']])}
const WG = ${p.wg}u;
${WORKGROUP_SUM2}

@compute @workgroup_size(${p.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= u.rows) { return; }
  let base = row * u.d;
  let mu = Mean[row];
  let rs = Rstd[row];
  var acc = vec2<f32>(0.0);
  for (var j = tid; j < u.d; j += WG) {
    let xh = (X[base + j] - mu) * rs;
    let g = DY[base + j]${p.hasWeight ? ' * Wt[j]' : ''};
    acc += vec2<f32>(g, g * xh);
  }
  let k = workgroupSum2(acc, tid) / f32(u.d);
  for (var j = tid; j < u.d; j += WG) {
    let xh = (X[base + j] - mu) * rs;
    DX[base + j] = rs * (DY[base + j]${p.hasWeight ? ' * Wt[j]' : ''} - k.x - xh * k.y);
  }
}
`;
    case 'ln_param_partials':
      return /* wgsl */ `${LN_UNIFORMS}
${declare([['X', 'array<f32>', 'read'], ['DY', 'array<f32>', 'read'], ['Mean', 'array<f32>', 'read'], ['Rstd', 'array<f32>', 'read'],
    ['Parts', 'array<vec2<f32>>', 'read_write']])}

@compute @workgroup_size(${p.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let col = wid.x * ${p.wg}u + tid;
  let chunk = wid.y;
  if (col >= u.d) { return; }
  let r0 = chunk * ${ROWS_PER_CHUNK}u;
  let r1 = min(r0 + ${ROWS_PER_CHUNK}u, u.rows);
  var acc = vec2<f32>(0.0);
  for (var r = r0; r < r1; r++) {
    let i = r * u.d + col;
    let g = DY[i];
    acc += vec2<f32>(g, g * (X[i] - Mean[r]) * Rstd[r]);
  }
  Parts[chunk * u.d + col] = acc;
}
`;
    case 'ln_param_finish': {
      const outs: [string, string, 'read_write'][] = [];
      if (p.hasWeight) outs.push(['DW', 'array<f32>', 'read_write']);
      if (p.hasBias) outs.push(['DB', 'array<f32>', 'read_write']);
      return /* wgsl */ `${LN_UNIFORMS}
${declare([['Parts', 'array<vec2<f32>>', 'read'], ...outs])}

@compute @workgroup_size(${p.wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = gid.x;
  if (col >= u.d) { return; }
  var acc = vec2<f32>(0.0);
  for (var q = 0u; q < u.chunks; q++) { acc += Parts[q * u.d + col]; }
  ${p.hasBias ? 'DB[col] = acc.x;' : ''}
  ${p.hasWeight ? 'DW[col] = acc.y;' : ''}
}
`;
    }
  }
}

/** Gradients of a normalisation: dx always; dweight / dbias when the forward had them. */
export interface NormGrads {
  dx: Tensor;
  dweight?: Tensor;
  dbias?: Tensor;
}

function requireShape(op: string, name: string, t: Tensor | undefined, shape: readonly number[]): void {
  if (t && (t.size !== shape.reduce((a, d) => a * d, 1) || t.dtype !== 'f32')) {
    throw new Error(`${op}: expected f32 ${name} [${shape.join(', ')}], found ${t.dtype} [${t.shape.join(', ')}]`);
  }
}

export interface GroupNormBackwardOptions {
  groups: number;
  /** The forward fused SiLU after the affine transform; dy is the gradient at its output. */
  silu?: boolean;
}

/** Dispatch plan of groupNormBackward: chunks per channel row and the uniforms. */
export function planGroupNormBackward(N: number, C: number, S: number, groups: number): { parts: number; chunk: number; uniforms: ArrayBuffer } {
  const parts = Math.min(GN_MAX_PARTS, Math.max(1, Math.ceil(S / GN_CHUNK)));
  const chunk = Math.ceil(S / parts);
  const uniforms = packUniforms([
    ['u32', N], ['u32', C], ['u32', S], ['u32', groups], ['u32', C / groups], ['u32', parts], ['u32', chunk], ['u32', N * C * S],
  ]);
  return { parts, chunk, uniforms };
}

/**
 * x, dy: [N, C, ...spatial]; mean, rstd: [N, G] (groupNormWithStats); weight, bias: [C] as in the
 * forward (undefined: none, and no dweight / dbias).
 */
export function groupNormBackward(
  ctx: GpuContext, x: Tensor, dy: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor | undefined, bias: Tensor | undefined,
  opts: GroupNormBackwardOptions,
): NormGrads {
  const op = 'groupNormBackward';
  const N = x.shape[0], C = x.shape[1], G = opts.groups;
  if (N === undefined || C === undefined || !(G > 0) || C % G !== 0) {
    throw new Error(`${op}: expected x [N, C, ...] with C divisible by groups=${G}, found [${x.shape.join(', ')}]`);
  }
  requireShape(op, 'dy', dy, x.shape);
  requireShape(op, 'mean', mean, [N, G]);
  requireShape(op, 'rstd', rstd, [N, G]);
  requireShape(op, 'weight', weight, [C]);
  requireShape(op, 'bias', bias, [C]);
  const S = x.size / (N * C);
  const flags = { hasWeight: weight !== undefined, hasBias: bias !== undefined, silu: opts.silu ?? false };
  const dx = ctx.empty(x.shape);
  const dweight = weight ? ctx.empty([C]) : undefined, dbias = bias ? ctx.empty([C]) : undefined;
  const grads: NormGrads = { dx, dweight, dbias };
  if (x.size === 0) return grads;
  const { parts, uniforms } = planGroupNormBackward(N, C, S, G);
  const affine = (stage: NormBackwardParams['stage']): Tensor[] =>
    affineBindings({ stage, ...flags }).map((n) => (n === 'Wt' ? weight! : bias!));
  const sums = ctx.empty([N * C * parts * 2]);
  const coef = ctx.empty([N * G * 2]);
  const rows = N * C, maxDim = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (rows > 65535 * maxDim) throw new Error(`${op}: ${rows} channel rows exceed the dispatch grid`);
  ctx.dispatch({
    label: 'gn_backward_channel_sums', code: wgsl({ stage: 'gn_channel_sums', wg: WG, ...flags }),
    bindings: [x, dy, mean, rstd, ...affine('gn_channel_sums'), sums], uniforms,
    workgroups: [parts, Math.min(rows, 65535), Math.ceil(rows / 65535)],
  });
  ctx.dispatch({
    label: 'gn_backward_finish', code: wgsl({ stage: 'gn_finish', wg: 64, ...flags }),
    bindings: [sums, ...(weight ? [weight] : []), coef, ...(dweight ? [dweight] : []), ...(dbias ? [dbias] : [])], uniforms,
    workgroups: [Math.ceil(Math.max(C, N * G) / 64)],
  });
  ctx.dispatch({
    label: 'gn_backward_dx', code: wgsl({ stage: 'gn_dx', wg: WG, ...flags }),
    bindings: [x, dy, mean, rstd, ...affine('gn_dx'), coef, dx], uniforms,
    workgroups: gridFor(Math.ceil(x.size / WG), maxDim),
  });
  // Later work that recycles these buffers is ordered after the dispatches that use them.
  sums.dispose();
  coef.dispose();
  return grads;
}

function layerNormRowWorkgroup(d: number): number {
  let wg = 32;
  while (wg < 256 && wg * 8 < d) wg *= 2;
  return wg;
}

/** x, dy: [..., D]; mean, rstd: [rows] (layerNormWithStats); weight, bias: [D] or undefined. */
export function layerNormBackward(
  ctx: GpuContext, x: Tensor, dy: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor | undefined, bias: Tensor | undefined,
): NormGrads {
  const op = 'layerNormBackward';
  const D = x.shape[x.rank - 1];
  if (D === undefined || D === 0) throw new Error(`${op}: expected x [..., D] with D > 0, found [${x.shape.join(', ')}]`);
  const R = x.size / D;
  requireShape(op, 'dy', dy, x.shape);
  requireShape(op, 'mean', mean, [R]);
  requireShape(op, 'rstd', rstd, [R]);
  requireShape(op, 'weight', weight, [D]);
  requireShape(op, 'bias', bias, [D]);
  const flags = { hasWeight: weight !== undefined, hasBias: bias !== undefined, silu: false };
  const dx = ctx.empty(x.shape);
  const dweight = weight ? ctx.empty([D]) : undefined, dbias = bias ? ctx.empty([D]) : undefined;
  if (R === 0) return { dx, dweight, dbias };
  const chunks = Math.ceil(R / ROWS_PER_CHUNK);
  const uniforms = packUniforms([['u32', R], ['u32', D], ['u32', chunks], ['u32', 0]]);
  const maxDim = ctx.limits.maxComputeWorkgroupsPerDimension;
  ctx.dispatch({
    label: 'ln_backward_dx', code: wgsl({ stage: 'ln_dx', wg: layerNormRowWorkgroup(D), ...flags }),
    bindings: [x, dy, mean, rstd, ...(weight ? [weight] : []), dx], uniforms, workgroups: gridFor(R, maxDim),
  });
  if (dweight || dbias) {
    if (chunks > maxDim) throw new Error(`${op}: ${R} rows need ${chunks} row chunks, over ${maxDim} workgroups per dimension`);
    const parts = ctx.empty([chunks * D * 2]);
    ctx.dispatch({
      label: 'ln_backward_param_partials', code: wgsl({ stage: 'ln_param_partials', wg: WG, ...flags }),
      bindings: [x, dy, mean, rstd, parts], uniforms, workgroups: [Math.ceil(D / WG), chunks],
    });
    ctx.dispatch({
      label: 'ln_backward_param_finish', code: wgsl({ stage: 'ln_param_finish', wg: WG, ...flags }),
      bindings: [parts, ...(dweight ? [dweight] : []), ...(dbias ? [dbias] : [])], uniforms, workgroups: [Math.ceil(D / WG)],
    });
    parts.dispose();
  }
  return { dx, dweight, dbias };
}
