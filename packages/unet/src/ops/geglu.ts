// GEGLU, an extension op of @cnx/unet: h [..., 2F] -> [..., F], out = h[..., :F] * gelu(h[..., F:]) with
// the exact erf GELU (diffusers GEGLU, src/diffusers/models/activations.py, v0.29.2), fused so the gate
// half is never written out. WebGPU: one thread per 4 outputs with vec4 loads when F % 4 == 0, else per
// output; the flat grid folds into y past maxComputeWorkgroupsPerDimension. The wasm backend: f32x4
// lanes with a polynomial erf (WasmBackend.geglu).
// Backward: unet.geglu_backward (geglu_backward_op.ts) from the saved input h.

import { gridFor, packUniforms, wgslMath, type GpuContext, type WasmBackend } from '@cnx/kernels';
import { applyUnary, defineOp, expectF32, f32, formatShape, runOp1, type Tensor } from '@cnx/tensor';
import { gegluBackwardOp } from './geglu_backward_op.js';

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
${wgslMath.ERF_WGSL}
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

/** The WebGPU kernel: h [..., 2F] (checked by the definition) -> [..., F]. */
export function gegluWebgpu(ctx: GpuContext, h: Tensor): Tensor {
  const D2 = h.shape[h.rank - 1]!;
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

export const gegluOp = defineOp<Record<string, never>>({
  name: 'unet.geglu',
  outputs([h]) {
    expectF32('geglu', [h]);
    const D2 = h!.shape[h!.shape.length - 1];
    if (D2 === undefined || D2 % 2 !== 0) throw new Error(`geglu: expected h [..., 2F] with an even last dim, found ${formatShape(h!.shape)}`);
    return f32([...h!.shape.slice(0, -1), D2 / 2]);
  },
  cpu([h]) {
    const H = h!.data as Float32Array;
    const D2 = h!.shape[h!.shape.length - 1]!, F = D2 / 2;
    const rows = H.length / D2;
    const out = new Float32Array(rows * F);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < F; j++) out[r * F + j] = H[r * D2 + j]! * applyUnary('gelu', H[r * D2 + F + j]!);
    }
    return [out];
  },
  kernels: {
    webgpu: (ctx: GpuContext, [h]) => [gegluWebgpu(ctx, h!)],
    // the fast CPU backend's vectorised kernel (packages/kernels/src/wasm/elementwise_kernels.ts)
    wasm: (be: WasmBackend, [h]) => [be.geglu(h!)],
  },
  saves: () => ({ outputs: [] }),
  backward: ({ inputs: [h] }, [g]) => [runOp1(gegluBackwardOp, [h, g], {})],
});

/** h [..., 2F] -> [..., F] (see the header). */
export function geglu(h: Tensor): Tensor {
  return runOp1(gegluOp, [h], {});
}
