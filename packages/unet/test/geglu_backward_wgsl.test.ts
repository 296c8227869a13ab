// The GEGLU backward kernel (geglu_backward.ts) on WebGPU against the float64 CPU reference
// (@cnx/tensor gegluBackward): F a multiple of 4 (vec4) and not (scalar), several leading dims, gates
// spread to |x| ~ 8 plus exact 0 and far tails (+-12, -30: Phi and phi underflow cleanly).
//
// Error model: dh[:F] = g gelu(x) with an f32 GELU accurate to a few ulp (ERF_WGSL): relative. dh[F:] =
// g a (Phi(x) + x phi(x)): Phi is relative-accurate; exp(-x^2/2) has relative error ~ (x^2/2) eps from
// rounding its argument, on a term bounded by max|x phi| = phi(1) = 0.24; near gelu' = 0 (x ~ -0.75) the
// two terms cancel, leaving an absolute error ~ eps (Phi + |x| phi). So atol = 8 eps max|g| max|a|
// (1 + 0.24 X^2 / 2) with X = max|x|, rtol = 16 eps.

import type { GpuContext } from '@cnx/kernels';
import type { Backend } from '@cnx/tensor';
import { gegluBackward, gegluBackwardKernel } from '@cnx/unet';
import { expect } from 'vitest';
import { expectAllClose, randomArray } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

const EPS = 1.19e-7;
const maxAbs = (a: ArrayLike<number>) => { let m = 0; for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!)); return m; };

function asContext(backend: Backend): GpuContext {
  if (!('dispatch' in backend)) throw new Error(`expected a WebGPU backend (GpuContext), found ${backend.name}`);
  return backend as unknown as GpuContext;
}

describeEachBackend('geglu backward kernel', (test) => {
  test('vec4 and scalar widths, tails, exact zero', async (backend) => {
    const ctx = asContext(backend);
    let seed = 1;
    for (const shape of [[2, 3, 10], [4, 16], [3, 7, 64], [1, 2]]) {
      const n = shape.reduce((p, d) => p * d, 1), F = shape[shape.length - 1]! / 2;
      const h = randomArray(n, seed++, 8);
      // gate tails and zero in the first row (gate columns F..2F-1)
      [0, 12, -12, -30, -0.7518].forEach((v, i) => { if (i < F) h[F + i] = v; });
      const outShape = [...shape.slice(0, -1), F];
      const dout = randomArray(n / 2, seed++);
      const ref = gegluBackward({ shape, data: h }, { shape: outShape, data: dout });
      const gh = backend.fromRaw(h, shape), gd = backend.fromRaw(dout, outShape);
      const got = gegluBackwardKernel.gegluBackward(ctx, gh, gd);
      expect(got.shape).toEqual(shape);
      let X = 0, A = 0;
      for (let i = 0; i < n; i++) { if (i % (2 * F) < F) A = Math.max(A, Math.abs(h[i]!)); else X = Math.max(X, Math.min(Math.abs(h[i]!), 8)); }
      const tol = { atol: 8 * EPS * maxAbs(dout) * A * (1 + 0.24 * X * X / 2), rtol: 16 * EPS };
      expectAllClose(await got.data(), ref.data, tol, `geglu backward [${shape}]`);
      [gh, gd, got].forEach((t) => t.dispose());
    }
  });

  test('rejects an odd last dim and a mismatched dout', async (backend) => {
    const ctx = asContext(backend);
    const h = backend.fromRaw(new Float32Array(6), [2, 3]), d = backend.fromRaw(new Float32Array(4), [2, 2]);
    expect(() => gegluBackwardKernel.gegluBackward(ctx, h, d)).toThrow(/even last dim/);
    const h2 = backend.fromRaw(new Float32Array(8), [2, 4]), d2 = backend.fromRaw(new Float32Array(6), [2, 3]);
    expect(() => gegluBackwardKernel.gegluBackward(ctx, h2, d2)).toThrow(/expected f32 dout \[2, 2\], found f32 \[2, 3\]/);
    [h, d, h2, d2].forEach((t) => t.dispose());
  });
}, ['webgpu']);
