// Diffusion-specific kernels: the sinusoidal timestep embedding and GEGLU.
//
// timestepEmbedding: t [N] -> [N, dim], diffusers get_timestep_embedding (diffusers
// src/diffusers/models/embeddings.py): half = dim // 2, freq_k = exp(-ln(max_period) * k / (half - shift)),
// arg = t * freq_k * scale, out = [cos(arg), sin(arg)] with flip_sin_to_cos else [sin, cos], and an odd
// dim zero-padded in the last column. The frequencies depend only on (dim, shift, max_period): they are
// computed on the host with the CPU reference's exact f32 rounding steps and passed as uniforms, so the
// GPU result differs from the reference only in sin/cos, which use the range-reduced sincos_f32 (WGSL's
// sin/cos are only specified to 2^-11 on [-pi, pi], and arguments reach ~1000 rad). One thread per
// (sample, frequency) writes both halves. Limit: the frequency table is a uniform block
// (16 bytes per 4 frequencies; 16380 frequencies at the 64 KiB default maxUniformBufferBindingSize).
//
// geglu: h [..., 2F] -> [..., F], out = h[..., :F] * gelu(h[..., F:]) with the exact erf GELU (diffusers
// GEGLU, src/diffusers/models/activations.py). One thread per 4 outputs with vec4 loads when F % 4 == 0,
// else per output; the flat grid folds into y past maxComputeWorkgroupsPerDimension.

import { formatShape, type TimestepEmbeddingOptions, type Tensor } from '@cnx/tensor';
import type { GpuContext } from './webgpu/context.js';
import { gridFor, packUniforms } from './webgpu/context.js';
import { ERF_WGSL, SINCOS_WGSL } from './wgsl_math.js';

export type { TimestepEmbeddingOptions } from '@cnx/tensor';

// ---------------------------------------------------------------- timestep embedding

export interface TimestepEmbeddingParams {
  /** Number of frequencies (dim // 2): sizes the uniform array. */
  half: number;
  flipSinToCos: boolean;
}

const TE_WG = 64;

export function timestepEmbeddingWgsl(p: TimestepEmbeddingParams): string {
  const NV = Math.max(1, Math.ceil(p.half / 4));
  return /* wgsl */ `// timestep embedding: ${p.half} frequencies, ${p.flipSinToCos ? '[cos, sin]' : '[sin, cos]'}
struct Uniforms { n: u32, dim: u32, scale: f32, _pad: u32, freqs: array<vec4<f32>, ${NV}> }
@group(0) @binding(0) var<storage, read> T: array<f32>;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@group(0) @binding(2) var<uniform> u: Uniforms;
${SINCOS_WGSL}
@compute @workgroup_size(${TE_WG}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let k = gid.x;
  let n = gid.y;
  if (n >= u.n) { return; }
  let row = n * u.dim;
  if (k == 0u && u.dim > ${2 * p.half}u) { Y[row + u.dim - 1u] = 0.0; } // odd dim: zero pad
  if (k >= ${p.half}u) { return; }
  // Two f32 roundings, as the reference (t * freq, then * scale).
  let arg = (T[n] * u.freqs[k / 4u][k % 4u]) * u.scale;
  let sc = sincos_f32(arg);
  Y[row + k] = ${p.flipSinToCos ? 'sc.y' : 'sc.x'};
  Y[row + ${p.half}u + k] = ${p.flipSinToCos ? 'sc.x' : 'sc.y'};
}
`;
}

/** The frequency table with the CPU reference's f32 rounding: exp(f32(f32(-ln(P) * k) / (half - shift))). */
export function timestepFrequencies(half: number, shift: number, maxPeriod: number): Float32Array {
  const f = new Float32Array(half);
  for (let k = 0; k < half; k++) f[k] = Math.exp(Math.fround(Math.fround(-Math.log(maxPeriod) * k) / (half - shift)));
  return f;
}

/** See Backend.timestepEmbedding. */
export function timestepEmbedding(ctx: GpuContext, t: Tensor, dim: number, opts: TimestepEmbeddingOptions): Tensor {
  if (t.rank !== 1 || t.dtype !== 'f32') throw new Error(`timestepEmbedding: expected f32 timesteps [N], found ${t.dtype} ${formatShape(t.shape)}`);
  if (!Number.isInteger(dim) || dim < 1) throw new Error(`timestepEmbedding: expected a positive integer dim, found ${dim}`);
  const N = t.shape[0]!, half = Math.floor(dim / 2);
  const out = ctx.empty([N, dim]);
  if (N === 0) return out;
  const maxUniform = ctx.limits.maxUniformBufferBindingSize;
  const bytes = 16 + 16 * Math.max(1, Math.ceil(half / 4));
  if (bytes > maxUniform) {
    throw new Error(`timestepEmbedding: dim ${dim} needs a ${bytes}-byte uniform block, over maxUniformBufferBindingSize=${maxUniform}`);
  }
  if (N > ctx.limits.maxComputeWorkgroupsPerDimension) {
    throw new Error(`timestepEmbedding: ${N} timesteps exceed maxComputeWorkgroupsPerDimension=${ctx.limits.maxComputeWorkgroupsPerDimension}`);
  }
  const u = new ArrayBuffer(bytes);
  const view = new DataView(u);
  view.setUint32(0, N, true);
  view.setUint32(4, dim, true);
  view.setFloat32(8, opts.scale ?? 1, true);
  new Float32Array(u, 16, half).set(timestepFrequencies(half, opts.downscaleFreqShift, opts.maxPeriod ?? 10000));
  ctx.dispatch({
    label: 'timestep_embedding', code: timestepEmbeddingWgsl({ half, flipSinToCos: opts.flipSinToCos }),
    bindings: [t, out], uniforms: u, workgroups: [Math.max(1, Math.ceil(half / TE_WG)), N],
  });
  return out;
}

// ---------------------------------------------------------------- geglu

export interface GegluParams {
  /** F % 4 === 0: four outputs per thread through vec4 loads and stores. */
  vec4: boolean;
}

const GEGLU_WG = 256;

export function gegluWgsl(p: GegluParams): string {
  const ty = p.vec4 ? 'vec4<f32>' : 'f32';
  return /* wgsl */ `// geglu: h[..., :F] * gelu_erf(h[..., F:])${p.vec4 ? ', vec4' : ''}
struct Uniforms { total: u32, F: u32, gridX: u32 }  // total and F in units of ${p.vec4 ? 'vec4' : 'f32'}
@group(0) @binding(0) var<storage, read> Hin: array<${ty}>;
@group(0) @binding(1) var<storage, read_write> Y: array<${ty}>;
@group(0) @binding(2) var<uniform> u: Uniforms;
${ERF_WGSL}
fn gelu(x: ${ty}) -> ${ty} {
  ${p.vec4
    ? 'return vec4<f32>(gelu_erf(x.x), gelu_erf(x.y), gelu_erf(x.z), gelu_erf(x.w));'
    : 'return gelu_erf(x);'}
}
@compute @workgroup_size(${GEGLU_WG}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let idx = (wid.y * u.gridX + wid.x) * ${GEGLU_WG}u + lid;
  if (idx >= u.total) { return; }
  let row = idx / u.F;
  let j = idx % u.F;
  let base = row * 2u * u.F + j;
  Y[idx] = Hin[base] * gelu(Hin[base + u.F]);
}
`;
}

/** See Backend.geglu. */
export function geglu(ctx: GpuContext, h: Tensor): Tensor {
  const D2 = h.shape[h.rank - 1] ?? 0;
  if (h.rank < 1 || h.dtype !== 'f32' || D2 % 2 !== 0) {
    throw new Error(`geglu: expected f32 h [..., 2F] with an even last dim, found ${h.dtype} ${formatShape(h.shape)}`);
  }
  const F = D2 / 2;
  const out = ctx.empty([...h.shape.slice(0, -1), F]);
  if (out.size === 0) return out;
  const vec4 = F % 4 === 0;
  const w = vec4 ? 4 : 1;
  const total = out.size / w;
  const [gx, gy] = gridFor(Math.ceil(total / GEGLU_WG), ctx.limits.maxComputeWorkgroupsPerDimension);
  ctx.dispatch({
    label: 'geglu', code: gegluWgsl({ vec4 }), bindings: [h, out],
    uniforms: packUniforms([['u32', total], ['u32', F / w], ['u32', gx]]), workgroups: [gx, gy],
  });
  return out;
}
