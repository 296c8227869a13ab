// The extension ops of @cnx/unet on WebGPU (their WGSL) against their float64 references (run on the CPU
// backend): timestepEmbedding: SD1.5 (dim 320, flip, shift 0) and the other configurations (no flip,
// shift 1, scale, max_period, odd dim), timesteps 0..999 and fractional. The arguments reach ~1000 rad;
// the reference's f32 argument is exact in both, so the error is sin/cos's alone: tolFor('f32').
// geglu: F % 4 == 0 (vec4 path) and odd F, leading dims, large gate values (erf saturation).

import { CpuBackend } from '@cnx/tensor';
import { geglu, timestepEmbedding } from '@cnx/unet';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

const cpu = new CpuBackend();

describeEachBackend('unet extension ops (WGSL vs the float64 reference)', (test) => {
  test('timestepEmbedding: SD1.5 and other configurations', async (backend) => {
    const configs = [
      { dim: 320, opts: { flipSinToCos: true, downscaleFreqShift: 0 } },
      { dim: 127, opts: { flipSinToCos: false, downscaleFreqShift: 1 } },
      { dim: 256, opts: { flipSinToCos: true, downscaleFreqShift: 1, scale: 2.5, maxPeriod: 5000 } },
      { dim: 1, opts: { flipSinToCos: true, downscaleFreqShift: 0 } },
    ];
    const ts = new Float32Array([0, 1, 261, 500, 981, 999, 946.421, 0.5, 12.25]);
    for (const { dim, opts } of configs) {
      const g = backend.fromRaw(ts, [ts.length]), r = cpu.fromRaw(ts, [ts.length]);
      const got = timestepEmbedding(g, { dim, ...opts });
      const ref = timestepEmbedding(r, { dim, ...opts });
      expect(got.shape).toEqual([ts.length, dim]);
      expectAllClose(await got.data(), await ref.data(), tolFor('f32'), `timestepEmbedding dim ${dim} ${JSON.stringify(opts)}`);
      [g, r, got, ref].forEach((t) => t.dispose());
    }
  });

  test('geglu: vec4 and scalar paths, leading dims, saturated gates', async (backend) => {
    const shapes: [number[], number][] = [[[2, 7, 16], 1], [[3, 10], 1], [[1, 5, 2, 18], 1], [[4, 24], 40]];
    let seed = 3;
    for (const [shape, spread] of shapes) {
      const n = shape.reduce((p, d) => p * d, 1);
      const x = randomArray(n, seed++, spread);
      const g = backend.fromRaw(x, shape), r = cpu.fromRaw(x, shape);
      const got = geglu(g), ref = geglu(r);
      expect(got.shape).toEqual([...shape.slice(0, -1), shape[shape.length - 1]! / 2]);
      // a * gelu(gate): two roundings on values of magnitude spread^2.
      expectAllClose(await got.data(), await ref.data(), tolFor('f32', 1, spread * spread), `geglu [${shape}] spread ${spread}`);
      [g, r, got, ref].forEach((t) => t.dispose());
    }
  });
}, ['webgpu']);
