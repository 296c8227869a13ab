// Backward of GEGLU (diffusers models/activations.py GEGLU; forward: gegluWgsl in diffusion.ts):
// h [..., 2F] = [a | gate], out [..., F] = a * gelu(gate) with torch's exact erf GELU. Given dout [..., F]:
//   dh[..., :F] = dout * gelu(gate)
//   dh[..., F:] = dout * a * gelu'(gate),  gelu'(x) = Phi(x) + x phi(x)   (torch GeluBackward, approximate='none')
// Semantics: gegluBackward in packages/tensor/src/cpu/geglu_backward.ts.
// One thread per (row, j < F) writes both halves; vec4 loads and stores when F % 4 == 0 (four columns per
// thread); the flat grid folds into y past maxComputeWorkgroupsPerDimension. Phi uses Cody's erfc for
// x < 0 (ERF_WGSL in wgsl_math.ts) so the left tail keeps its relative accuracy; phi underflows to 0
// past |x| ~ 13, where gelu' is 0 or 1 in f32 anyway.
// Limits: f32, contiguous; rows * 2F < 2^32.

import { gridFor, packUniforms, wgslMath, type GpuContext } from '@cnx/kernels';
import { formatShape, type Tensor } from '@cnx/tensor';

export interface GegluBackwardParams {
  /** F % 4 === 0: four columns per thread through vec4 loads and stores. */
  vec4: boolean;
}

const WG = 256;

export function wgsl(p: GegluBackwardParams): string {
  const ty = p.vec4 ? 'vec4<f32>' : 'f32';
  const each = (f: string) => (p.vec4 ? `vec4<f32>(${f}(x.x), ${f}(x.y), ${f}(x.z), ${f}(x.w))` : `${f}(x)`);
  return /* wgsl */ `// geglu backward: dh = [dout * gelu(gate) | dout * a * gelu'(gate)]${p.vec4 ? ', vec4' : ''}
struct Uniforms { total: u32, F: u32, gridX: u32 }  // total = rows * F and F in units of ${p.vec4 ? 'vec4' : 'f32'}
@group(0) @binding(0) var<storage, read> Hin: array<${ty}>;
@group(0) @binding(1) var<storage, read> dOut: array<${ty}>;
@group(0) @binding(2) var<storage, read_write> dH: array<${ty}>;
@group(0) @binding(3) var<uniform> u: Uniforms;
${wgslMath.ERF_WGSL}
// standard normal CDF, accurate in both tails
fn normal_cdf(x: f32) -> f32 {
  let z = x * 0.70710678118654752;
  if (abs(z) <= 0.46875) { return 0.5 + 0.5 * erf_small(z); }
  if (x < 0.0) { return 0.5 * erfc_pos(-z); }
  return 1.0 - 0.5 * erfc_pos(z);
}
fn gelu_grad(x: f32) -> f32 { return normal_cdf(x) + x * 0.3989422804014327 * exp(-0.5 * x * x); }
fn gelu_v(x: ${ty}) -> ${ty} { return ${each('gelu_erf')}; }
fn gelu_grad_v(x: ${ty}) -> ${ty} { return ${each('gelu_grad')}; }

@compute @workgroup_size(${WG}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let idx = (wid.y * u.gridX + wid.x) * ${WG}u + lid;
  if (idx >= u.total) { return; }
  let row = idx / u.F;
  let base = row * 2u * u.F + idx % u.F;
  let a = Hin[base];
  let gate = Hin[base + u.F];
  let g = dOut[idx];
  dH[base] = g * gelu_v(gate);
  dH[base + u.F] = g * a * gelu_grad_v(gate);
}
`;
}

/** dh [..., 2F] from h [..., 2F] and the upstream gradient dout [..., F]. */
export function gegluBackward(ctx: GpuContext, h: Tensor, dout: Tensor): Tensor {
  const D2 = h.shape[h.rank - 1] ?? 0;
  if (h.rank < 1 || h.dtype !== 'f32' || D2 % 2 !== 0) {
    throw new Error(`geglu backward: expected f32 h [..., 2F] with an even last dim, found ${h.dtype} ${formatShape(h.shape)}`);
  }
  const F = D2 / 2;
  const outShape = [...h.shape.slice(0, -1), F];
  if (dout.dtype !== 'f32' || dout.rank !== outShape.length || dout.shape.some((d, i) => d !== outShape[i])) {
    throw new Error(`geglu backward: expected f32 dout ${formatShape(outShape)}, found ${dout.dtype} ${formatShape(dout.shape)}`);
  }
  const dh = ctx.empty(h.shape);
  if (dh.size === 0) return dh;
  const vec4 = F % 4 === 0;
  const w = vec4 ? 4 : 1;
  const total = dout.size / w;
  const [gx, gy] = gridFor(Math.ceil(total / WG), ctx.limits.maxComputeWorkgroupsPerDimension);
  ctx.dispatch({
    label: 'geglu_backward', code: wgsl({ vec4 }), bindings: [h, dout, dh],
    uniforms: packUniforms([['u32', total], ['u32', F / w], ['u32', gx]]), workgroups: [gx, gy],
  });
  return dh;
}
