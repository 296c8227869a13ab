// Sums of squares over whole tensors, in two stages, for the MSE loss (mse_loss.ts) and the global
// gradient norm of clip_grad_norm_ (adamw.ts).
//
//  - 'partials': workgroup w of a dispatch sums d_i^2 over its chunk [w*CHUNK, (w+1)*CHUNK) of one tensor
//    (d = a - b, or a alone), each thread a strided sequential sum (coalesced), then a workgroup tree sum;
//    the result goes to Parts[offset + w]. Several tensors share one Parts buffer at different offsets
//    (one dispatch per tensor), so the finisher sees every tensor's partials together.
//  - 'finish', one workgroup: total = sum of Parts[0 .. count) (strided sequential sums, then a tree),
//    then per mode:
//      'mean':    Out[0] = total * scale                          (MSE: scale = 1/numel)
//      'clip':    norm = sqrt(total), Out[0] = norm,
//                 Out[1] = min(max_norm / (norm + 1e-6), 1)       (torch clip_grad_norm_, norm_type 2)
// f32 throughout; the terms are non-negative, so the relative error of the total is at most about
// (CHUNK/WG + log2(WG) + count/WG + log2(WG)) ulp, in practice ~sqrt of that.
// Limits: f32 contiguous tensors; numel < 2^32; Parts holds every partial of one finish.

import type { Tensor } from '@cnx/tensor';
import { gridFor, packUniforms, type GpuContext } from './webgpu/context.js';
import { WORKGROUP_SUM } from './wgsl_math.js';

const WG = 256;
/** Elements per workgroup of 'partials' (16 per thread). */
export const SUM_SQUARES_CHUNK = 4096;

export interface SumSquaresParams {
  stage: 'partials' | 'finish';
  /** partials: square a - b (true) or a. */
  diff?: boolean;
  /** finish: what to write. */
  mode?: 'mean' | 'clip';
}

// The workgroup tree sum shared with the norm kernels (wgsl_math.ts workgroupSumWgsl).
const TREE = /* wgsl */ `
const WG = ${WG}u;
${WORKGROUP_SUM}`;

export function wgsl(p: SumSquaresParams): string {
  if (p.stage === 'partials') {
    return /* wgsl */ `// sum of squares of ${p.diff ? 'a - b' : 'a'}, partials of ${SUM_SQUARES_CHUNK} elements
struct U { n: u32, offset: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> A: array<f32>;
${p.diff ? '@group(0) @binding(1) var<storage, read> B: array<f32>;' : ''}
@group(0) @binding(${p.diff ? 2 : 1}) var<storage, read_write> Parts: array<f32>;
@group(0) @binding(${p.diff ? 3 : 2}) var<uniform> u: U;
${TREE}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let w = wid.x + wid.y * nwg.x;
  let start = w * ${SUM_SQUARES_CHUNK}u;
  if (start >= u.n) { return; }
  let end = min(start + ${SUM_SQUARES_CHUNK}u, u.n);
  var acc = 0.0;
  for (var i = start + tid; i < end; i += WG) {
    let d = A[i]${p.diff ? ' - B[i]' : ''};
    acc = fma(d, d, acc);
  }
  let total = workgroupSum(acc, tid);
  if (tid == 0u) { Parts[u.offset + w] = total; }
}
`;
  }
  const write = p.mode === 'clip'
    ? `let norm = sqrt(total);
    Out[0] = norm;
    Out[1] = min(u.value / (norm + 1e-6), 1.0);`
    : 'Out[0] = total * u.value;';
  return /* wgsl */ `// sum of squares: finish (${p.mode})
struct U { count: u32, value: f32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> Parts: array<f32>;
@group(0) @binding(1) var<storage, read_write> Out: array<f32>;
@group(0) @binding(2) var<uniform> u: U;
${TREE}

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) tid: u32) {
  var acc = 0.0;
  for (var i = tid; i < u.count; i += WG) { acc += Parts[i]; }
  let total = workgroupSum(acc, tid);
  if (tid == 0u) {
    ${write}
  }
}
`;
}

/** Partials a tensor of n elements needs. */
export function partialCount(n: number): number {
  return Math.ceil(n / SUM_SQUARES_CHUNK);
}

/** Dispatch the partial sums of squares of a (or a - b) into parts[offset ..]; returns the count. */
export function sumSquaresPartials(ctx: GpuContext, a: Tensor, b: Tensor | undefined, parts: Tensor, offset: number): number {
  const count = partialCount(a.size);
  if (count === 0) return 0;
  ctx.dispatch({
    label: b ? 'sum_squares_diff_partials' : 'sum_squares_partials', code: wgsl({ stage: 'partials', diff: b !== undefined }),
    bindings: b ? [a, b, parts] : [a, parts],
    uniforms: packUniforms([['u32', a.size], ['u32', offset], ['u32', 0], ['u32', 0]]),
    workgroups: gridFor(count, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
  return count;
}

/**
 * Finish over parts[0 .. count): 'mean' writes out[0] = total * value; 'clip' writes out[0] = sqrt(total)
 * and out[1] = min(value / (sqrt(total) + 1e-6), 1) (value = max_norm).
 */
export function sumSquaresFinish(ctx: GpuContext, parts: Tensor, count: number, out: Tensor, mode: 'mean' | 'clip', value: number): void {
  ctx.dispatch({
    label: `sum_squares_finish_${mode}`, code: wgsl({ stage: 'finish', mode }), bindings: [parts, out],
    uniforms: packUniforms([['u32', count], ['f32', value], ['u32', 0], ['u32', 0]]), workgroups: [1],
  });
}
