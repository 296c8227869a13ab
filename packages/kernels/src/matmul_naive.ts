// The baseline matmul for the kernel benchmarks: one thread per output element, reading its row of a
// and column of b straight from global memory, no workgroup-memory reuse. Same contract, options and
// epilogue as the tiled kernel in matmul.ts (Backend.matmul: a [Ba, M, K] or [Ba, K, M] with transA,
// b [Bb, K, N] or [Bb, N, K] with transB, Ba and Bb each B or 1, bias [N], residual [B, M, N]), so the
// benchmark compares only the memory strategy. b may be f32, f16 or bf16 like the tiled kernel's.
// Workgroups of 16x16 threads cover the (N, M) output; batch in workgroup z (chunked past the limit).

import type { Activation, MatmulOptions, Tensor } from '@cnx/tensor';
import { matmulShape, widen16Wgsl } from './matmul.js';
import type { GpuContext } from './webgpu/context.js';
import { packUniforms } from './webgpu/context.js';
import { activationWgsl } from './wgsl_math.js';

export interface NaiveMatmulParams {
  transA: boolean;
  transB: boolean;
  bDtype: 'f32' | 'f16' | 'bf16';
  bias: boolean;
  residual: boolean;
  activation: Activation;
}

const WG = 16;

export function wgsl(p: NaiveMatmulParams): string {
  const b16 = p.bDtype !== 'f32';
  let binding = 0;
  const decl = [
    `@group(0) @binding(${binding++}) var<storage, read> A: array<f32>;`,
    `@group(0) @binding(${binding++}) var<storage, read> B: array<${b16 ? 'u32' : 'f32'}>;`,
  ];
  if (p.bias) decl.push(`@group(0) @binding(${binding++}) var<storage, read> bias: array<f32>;`);
  if (p.residual) decl.push(`@group(0) @binding(${binding++}) var<storage, read> res: array<f32>;`);
  decl.push(`@group(0) @binding(${binding++}) var<storage, read_write> C: array<f32>;`);
  decl.push(`@group(0) @binding(${binding++}) var<uniform> u: Uniforms;`);
  const aIdx = p.transA ? 'aOff + k * u.M + m' : 'aOff + m * u.K + k';
  const bIdx = p.transB ? 'bOff + n * u.K + k' : 'bOff + k * u.N + n';
  return /* wgsl */ `// matmul_naive: ${p.transA ? 'A^T' : 'A'} x ${p.transB ? 'B^T' : 'B'} (b ${p.bDtype}), one thread per output
struct Uniforms { M: u32, N: u32, K: u32, aBatchStride: u32, bBatchStride: u32, batchBase: u32, alpha: f32 }
${decl.join('\n')}
${b16 ? widen16Wgsl(p.bDtype as 'f16' | 'bf16', 'loadB', 'B') : 'fn loadB(i: u32) -> f32 { return B[i]; }'}
${activationWgsl(p.activation)}

@compute @workgroup_size(${WG}, ${WG}, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let n = gid.x; let m = gid.y;
  if (m >= u.M || n >= u.N) { return; }
  let batch = wid.z + u.batchBase;
  let aOff = batch * u.aBatchStride;
  let bOff = batch * u.bBatchStride;
  var acc = 0.0;
  for (var k = 0u; k < u.K; k++) { acc += A[${aIdx}] * loadB(${bIdx}); }
  var v = acc * u.alpha;
  ${p.bias ? 'v += bias[n];' : ''}
  v = activation(v);
  let o = batch * u.M * u.N + m * u.N + n;
  C[o] = v${p.residual ? ' + res[o]' : ''};
}
`;
}

/** See Backend.matmul; the naive kernel for benchmark comparisons. */
export function matmul(ctx: GpuContext, a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const s = matmulShape('matmul_naive', a, b, opts);
  const params: NaiveMatmulParams = {
    transA: opts.transA ?? false, transB: opts.transB ?? false, bDtype: b.dtype as NaiveMatmulParams['bDtype'],
    bias: opts.bias !== undefined, residual: opts.residual !== undefined, activation: opts.activation ?? 'none',
  };
  const maxDim = ctx.limits.maxComputeWorkgroupsPerDimension;
  const gx = Math.ceil(s.N / WG), gy = Math.ceil(s.M / WG);
  if (gx > maxDim || gy > maxDim) {
    throw new Error(`matmul_naive: ${s.M}x${s.N} output needs ${gy}x${gx} workgroups, over maxComputeWorkgroupsPerDimension=${maxDim}`);
  }
  const out = ctx.empty([s.B, s.M, s.N]);
  const code = wgsl(params);
  const bindings = [a, b, ...(opts.bias ? [opts.bias] : []), ...(opts.residual ? [opts.residual] : []), out];
  for (let b0 = 0; b0 < s.B; b0 += maxDim) {
    const count = Math.min(maxDim, s.B - b0);
    const uniforms = packUniforms([
      ['u32', s.M], ['u32', s.N], ['u32', s.K], ['u32', s.Ba === 1 ? 0 : s.M * s.K], ['u32', s.Bb === 1 ? 0 : s.K * s.N],
      ['u32', b0], ['f32', opts.alpha ?? 1],
    ]);
    ctx.dispatch({ label: 'matmul_naive', code, bindings, uniforms, workgroups: [gx, gy, count] });
  }
  return out;
}
