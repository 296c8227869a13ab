// The WGSL math snippets (wgsl_math.ts: erf, range-reduced sincos, the epilogue activations) against
// float64 on their whole useful ranges.

import { packUniforms, wgslMath, type GpuContext } from '@cnx/kernels';
import { applyUnary, erf, type Backend } from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

function asContext(backend: Backend): GpuContext {
  if (!('dispatch' in backend)) throw new Error(`expected a WebGPU backend (GpuContext), found ${backend.name}`);
  return backend as unknown as GpuContext;
}

/** Run `fn name(x: f32) -> <ret>` of a WGSL snippet over `xs` on the GPU, one thread per input. */
async function evalWgsl(backend: Backend, snippet: string, call: string, xs: Float32Array, outPerX: number): Promise<Float32Array> {
  const ctx = asContext(backend);
  const x = backend.fromRaw(xs, [xs.length]);
  const y = ctx.empty([xs.length * outPerX]);
  const code = `${snippet}
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@group(0) @binding(2) var<uniform> n: vec4<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= n.x) { return; }
  ${call}
}`;
  ctx.dispatch({ label: 'wgsl_math test', code, bindings: [x, y], uniforms: packUniforms([['u32', xs.length]]), workgroups: [Math.ceil(xs.length / 64)] });
  const out = await y.data();
  x.dispose(); y.dispose();
  return out;
}

describeEachBackend('wgsl_math', (test) => {
  test('wgsl_math: erf, sincos, activations vs float64', async (backend) => {
    const n = 4001;
    const xs = new Float32Array(n).map((_, i) => -10 + (20 * i) / (n - 1));
    const e = await evalWgsl(backend, wgslMath.ERF_WGSL, 'Y[i] = erf_f32(X[i]);', xs, 1);
    expectAllClose(e, xs.map((x) => erf(x)), tolFor('f32'), 'erf_f32');
    // sin/cos over the timestep-embedding range (|arg| <= 1000 rad).
    const args = new Float32Array(n).map((_, i) => -1000 + (2000 * i) / (n - 1) + 0.37);
    const sc = await evalWgsl(backend, wgslMath.SINCOS_WGSL, 'let v = sincos_f32(X[i]); Y[2u * i] = v.x; Y[2u * i + 1u] = v.y;', args, 2);
    const ref = new Float32Array(2 * n);
    args.forEach((a, i) => { ref[2 * i] = Math.sin(a); ref[2 * i + 1] = Math.cos(a); });
    expectAllClose(sc, ref, tolFor('f32'), 'sincos_f32');
    for (const act of ['relu', 'silu', 'gelu', 'gelu_tanh', 'quick_gelu'] as const) {
      const wide = new Float32Array(n).map((_, i) => -120 + (240 * i) / (n - 1));
      const got = await evalWgsl(backend, wgslMath.activationWgsl(act, 'act'), 'Y[i] = act(X[i]);', wide, 1);
      const want = wide.map((x) => applyUnary(act, x));
      // Scale: |x| up to 120, so the absolute error of x * (something in [0, 1]) is ~|x| eps.
      expectAllClose(got, want, { atol: 8 * 1.19e-7, rtol: 8 * 1.19e-7 * 4 }, act);
      expect(got.every((v) => Number.isFinite(v))).toBe(true);
    }
  });

}, ['webgpu']);
