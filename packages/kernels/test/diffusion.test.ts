// timestepEmbedding and geglu (diffusion.ts) against the CPU reference, and the WGSL math snippets
// (wgsl_math.ts) against float64 on their whole useful ranges.
// timestepEmbedding: SD1.5 (dim 320, flip, shift 0) and the other configurations (no flip, shift 1,
// scale, max_period, odd dim), timesteps 0..999 and fractional. The arguments reach ~1000 rad; the
// reference's f32 argument is exact in both, so the error is sin/cos's alone: tolFor('f32').
// geglu: F % 4 == 0 (vec4 path) and odd F, leading dims, large gate values (erf saturation).

import { diffusionKernels, packUniforms, wgslMath, type GpuContext } from '@cnx/kernels';
import { applyUnary, CpuBackend, erf, type Backend } from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

const cpu = new CpuBackend();

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

describeEachBackend('diffusion kernels', (test) => {
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

  test('timestepEmbedding: SD1.5 and other configurations', async (backend) => {
    const ctx = asContext(backend);
    const configs = [
      { dim: 320, opts: { flipSinToCos: true, downscaleFreqShift: 0 } },
      { dim: 127, opts: { flipSinToCos: false, downscaleFreqShift: 1 } },
      { dim: 256, opts: { flipSinToCos: true, downscaleFreqShift: 1, scale: 2.5, maxPeriod: 5000 } },
      { dim: 1, opts: { flipSinToCos: true, downscaleFreqShift: 0 } },
    ];
    const ts = new Float32Array([0, 1, 261, 500, 981, 999, 946.421, 0.5, 12.25]);
    for (const { dim, opts } of configs) {
      const g = backend.fromRaw(ts, [ts.length]), r = cpu.fromRaw(ts, [ts.length]);
      const got = diffusionKernels.timestepEmbedding(ctx, g, dim, opts);
      const ref = cpu.timestepEmbedding(r, dim, opts);
      expect(got.shape).toEqual([ts.length, dim]);
      expectAllClose(await got.data(), await ref.data(), tolFor('f32'), `timestepEmbedding dim ${dim} ${JSON.stringify(opts)}`);
      [g, r, got, ref].forEach((t) => t.dispose());
    }
  });

  test('geglu: vec4 and scalar paths, leading dims, saturated gates', async (backend) => {
    const ctx = asContext(backend);
    const shapes: [number[], number][] = [[[2, 7, 16], 1], [[3, 10], 1], [[1, 5, 2, 18], 1], [[4, 24], 40]];
    let seed = 3;
    for (const [shape, spread] of shapes) {
      const n = shape.reduce((p, d) => p * d, 1);
      const x = randomArray(n, seed++, spread);
      const g = backend.fromRaw(x, shape), r = cpu.fromRaw(x, shape);
      const got = diffusionKernels.geglu(ctx, g), ref = cpu.geglu(r);
      expect(got.shape).toEqual([...shape.slice(0, -1), shape[shape.length - 1]! / 2]);
      // a * gelu(gate): two roundings on values of magnitude spread^2.
      expectAllClose(await got.data(), await ref.data(), tolFor('f32', 1, spread * spread), `geglu [${shape}] spread ${spread}`);
      [g, r, got, ref].forEach((t) => t.dispose());
    }
  });
}, ['webgpu']);
