// The sinusoidal timestep embedding, an extension op of @cnx/unet: t [N] -> [N, dim], diffusers
// get_timestep_embedding (diffusers src/diffusers/models/embeddings.py, v0.29.2): half = dim // 2,
// freq_k = exp(-ln(max_period) * k / (half - shift)), arg = t * freq_k * scale, out = [cos(arg), sin(arg)]
// with flip_sin_to_cos else [sin, cos], and an odd dim zero-padded in the last column.
//
// Reference: the frequencies and arguments are rounded to f32 at the same steps as diffusers' f32 code
// (exp of an f32 exponent, t * freq, then * scale), then sin/cos in float64.
// WebGPU: the frequencies depend only on (dim, shift, max_period): they are computed on the host with the
// reference's exact f32 rounding steps and passed as uniforms, so the GPU result differs from the
// reference only in sin/cos, which use the range-reduced sincos_f32 (WGSL's sin/cos are only specified
// to 2^-11 on [-pi, pi], and arguments reach ~1000 rad). One thread per (sample, frequency) writes both
// halves. Limit: the frequency table is a uniform block (16 bytes per 4 frequencies; 16380 frequencies
// at the 64 KiB default maxUniformBufferBindingSize).
// No backward: the timesteps are not differentiable (integers in diffusers, never trained); the MLP
// after the embedding (TimestepEmbedding) is, through its ops.

import { gridFor, packUniforms, wgslMath, type GpuContext } from '@cnx/kernels';
import { defineOp, expectF32, expectRank, f32, runOp1, type Tensor } from '@cnx/tensor';

export interface TimestepEmbeddingWgslParams {
  /** Number of frequencies (dim // 2): sizes the uniform array. */
  half: number;
  flipSinToCos: boolean;
}

const TE_WG = 64;

export function timestepEmbeddingWgsl(p: TimestepEmbeddingWgslParams): string {
  const NV = Math.max(1, Math.ceil(p.half / 4));
  return /* wgsl */ `// timestep embedding: ${p.half} frequencies, ${p.flipSinToCos ? '[cos, sin]' : '[sin, cos]'}
struct Uniforms { n: u32, dim: u32, scale: f32, _pad: u32, freqs: array<vec4<f32>, ${NV}> }
@group(0) @binding(0) var<storage, read> T: array<f32>;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@group(0) @binding(2) var<uniform> u: Uniforms;
${wgslMath.SINCOS_WGSL}
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

/** The WebGPU kernel: t [N] (checked by the definition) -> [N, dim]. */
export function timestepEmbeddingWebgpu(ctx: GpuContext, t: Tensor, dim: number, opts: TimestepEmbeddingParams): Tensor {
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

export interface TimestepEmbeddingParams {
  /** Output width (an odd dim gets a zero last column). */
  dim: number;
  flipSinToCos: boolean;
  downscaleFreqShift: number;
  /** Multiplier of the argument (diffusers `scale`, 1 by default). */
  scale?: number;
  maxPeriod?: number;
}

export const timestepEmbeddingOp = defineOp<TimestepEmbeddingParams>({
  name: 'unet.timestep_embedding',
  outputs([t], p) {
    expectF32('timestepEmbedding', [t], ['timesteps']);
    expectRank('timestepEmbedding', t, 1, 'timesteps [N]');
    if (!Number.isInteger(p.dim) || p.dim < 1) throw new Error(`timestepEmbedding: expected a positive integer dim, found ${p.dim}`);
    return f32([t!.shape[0]!, p.dim]);
  },
  cpu([t], p) {
    const T = t!.data as Float32Array;
    const half = Math.floor(p.dim / 2);
    const freqs = timestepFrequencies(half, p.downscaleFreqShift, p.maxPeriod ?? 10000);
    const out = new Float32Array(T.length * p.dim);
    const sc = p.scale ?? 1;
    for (let n = 0; n < T.length; n++) {
      for (let k = 0; k < half; k++) {
        const arg = Math.fround(Math.fround(T[n]! * freqs[k]!) * sc);
        const [first, second] = p.flipSinToCos ? [Math.cos(arg), Math.sin(arg)] : [Math.sin(arg), Math.cos(arg)];
        out[n * p.dim + k] = first;
        out[n * p.dim + half + k] = second;
      }
      // odd dim: the last column stays zero (diffusers pads with zeros)
    }
    return [out];
  },
  kernels: { webgpu: (ctx: GpuContext, [t], p) => [timestepEmbeddingWebgpu(ctx, t!, p.dim, p)] },
});

/** t [N] -> [N, dim] (see the header). */
export function timestepEmbedding(t: Tensor, p: TimestepEmbeddingParams): Tensor {
  return runOp1(timestepEmbeddingOp, [t], p);
}
