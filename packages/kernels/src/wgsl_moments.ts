// WGSL for chunked mean / variance: the pieces that group/layer norm (norm.ts) and ControlNeXt's cross
// normalisation (@cnx/controlnext cross_norm.ts) share, so that the numerics live in one place.
//
// A statistics set (a norm segment, a sample) is reduced in chunks by separate workgroups. Each chunk
// uses the shifted two-pass scheme: every value is shifted by a pilot K (the set's first value), then
//   pass 1: dmean = mean of (v - K) over the chunk;  pass 2: M2 = sum of ((v - K) - dmean)^2
// and the chunk's partial (count, dmean, M2, K) is stored as a vec4. A later workgroup merges the P
// partials of a set with Chan et al.'s pairwise formula (T. F. Chan, G. H. Golub, R. J. LeVeque,
// "Updating formulae and a pairwise algorithm for computing sample variances", 1979) in a tree in
// workgroup memory: mean = K + merged dmean, variance = merged M2 / count (or / (count - 1)).

/** fn chanMerge(a, b): the pairwise merge of two (count, mean, M2) partials. */
export const CHAN_MERGE = /* wgsl */ `
// Chan et al. pairwise merge of (count, mean, M2).
fn chanMerge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
  let n = a.x + b.x;
  if (n == 0.0) { return a; }
  let delta = b.y - a.y;
  return vec3<f32>(n, a.y + delta * (b.x / n), a.z + b.z + delta * delta * (a.x * b.x / n));
}`;

export interface ChunkMomentsOptions {
  /** WGSL expression of the value at index `e` in pass 1 (may have side effects, e.g. store a pooled value). */
  first: string;
  /** The value at index `e` in pass 2 (the same value; each thread re-reads exactly the indices it wrote). */
  again?: string;
  /** Names of the chunk bounds [start, end) and of the pilot, in scope where the snippet is placed. */
  start?: string;
  end?: string;
  pilot?: string;
}

/**
 * Statements (inside a workgroup of WG threads with `tid`, after WORKGROUP_SUM) that leave
 * `count: f32`, `dmean: f32` and `m2: f32` of the chunk in scope: the shifted two-pass reduction.
 */
export function chunkMomentsWgsl(o: ChunkMomentsOptions): string {
  const start = o.start ?? 'start', end = o.end ?? 'end', pilot = o.pilot ?? 'pilot';
  return /* wgsl */ `
  var acc = 0.0;
  for (var e = ${start} + tid; e < ${end}; e += WG) { acc += (${o.first}) - ${pilot}; }
  let count = f32(${end} - ${start});
  let dmean = workgroupSum(acc, tid) / max(count, 1.0);
  acc = 0.0;
  for (var e = ${start} + tid; e < ${end}; e += WG) {
    let d = ((${o.again ?? o.first}) - ${pilot}) - dmean;
    acc = fma(d, d, acc);
  }
  let m2 = workgroupSum(acc, tid);`;
}

export interface MergeSet {
  /** Workgroup array<vec3<f32>, width> to merge in. */
  red: string;
  /** WGSL expression of partial `tid` of this set (vec4: count, dmean, M2, pilot), read when tid < parts. */
  partial: string;
  /** Name of the resulting vec3 (count, dmean, M2). */
  out: string;
}

/**
 * The apply prologue: thread tid < `parts` loads partial tid of each set, then a tree of chanMerge over
 * `width` (a power of two >= parts, <= WG) leaves each set's total in `out`. Needs CHAN_MERGE.
 */
export function mergePartialsWgsl(sets: readonly MergeSet[], parts: string, width: number): string {
  if (width & (width - 1)) throw new Error(`mergePartialsWgsl: width ${width} is not a power of two`);
  return /* wgsl */ `
  if (tid < ${width}u) {
${sets.map((s) => `    var p_${s.red} = vec3<f32>(0.0);
    if (tid < ${parts}) { p_${s.red} = (${s.partial}).xyz; }
    ${s.red}[tid] = p_${s.red};`).join('\n')}
  }
  workgroupBarrier();
  for (var stride = ${width / 2}u; stride > 0u; stride = stride / 2u) {
    if (tid < stride) {
${sets.map((s) => `      ${s.red}[tid] = chanMerge(${s.red}[tid], ${s.red}[tid + stride]);`).join('\n')}
    }
    workgroupBarrier();
  }
${sets.map((s) => `  let ${s.out} = ${s.red}[0];`).join('\n')}`;
}
