// Group norm (+ fused SiLU) and layer norm: the saved statistics of the forward (cpu/norm.ts) and the
// backward from them (cpu/norm_backward.ts) against central finite differences of the CPU forward
// (CpuBackend.groupNorm / layerNorm) on awkward shapes: odd channel and spatial sizes, batch > 1, one
// channel per group, one group, no spatial dims, three spatial dims, affine and not, a large offset.
// Then against the grad_norm golden case (torch autograd) with the case's tolerances.
//
// Error model: test/harness/finite_difference.ts. The statistics: mean and rstd are float64 values
// rounded once to f32, so they must equal Math.fround of a float64 recomputation exactly (within one
// f32 ulp, for the last-bit differences of a different summation order).

import { CpuBackend, groupNormBackward, groupNormForward, layerNormBackward, layerNormForward, ops } from '@cnx/tensor';
import { describe, expect, it } from 'vitest';
import { randomArray } from '../../../test/harness/allclose.js';
import { expectGradMatchesFd, gridded } from '../../../test/harness/finite_difference.js';
import { expectGoldenClose, openGoldenCase } from '../../../test/harness/golden_case_data.js';

const cpu = new CpuBackend();
const numel = (s: readonly number[]) => s.reduce((a, d) => a * d, 1);

interface GroupCase { x: number[]; groups: number; silu?: boolean; affine?: boolean; eps?: number; shift?: number }
interface LayerCase { x: number[]; affine?: boolean; eps?: number; shift?: number }

const groupCases: GroupCase[] = [
  { x: [2, 6, 5, 3], groups: 3 },
  { x: [2, 6, 3, 5], groups: 3, silu: true },
  { x: [3, 4, 7], groups: 4, silu: true, eps: 1e-6 }, // one channel per group, one spatial dim
  { x: [2, 5, 3, 3], groups: 1, affine: false },
  { x: [3, 6], groups: 2 }, // no spatial dims: 3 values per group
  { x: [1, 4, 2, 3, 2], groups: 2, silu: true }, // three spatial dims
  { x: [2, 4, 3, 3], groups: 2, shift: 6 }, // mean far from zero
];

const layerCases: LayerCase[] = [
  { x: [2, 3, 7] },
  { x: [5, 13], affine: false, eps: 1e-6 },
  { x: [3, 1] }, // a single element per row
  { x: [2, 2, 9], shift: -5 },
];

function maxUlpDiff(a: Float32Array, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const ulp = Math.max(2 ** -149, 2 ** (Math.floor(Math.log2(Math.abs(a[i]!) || 1)) - 23));
    m = Math.max(m, Math.abs(a[i]! - b[i]!) / ulp);
  }
  return m;
}

describe('group norm backward (CPU reference) vs finite differences', () => {
  groupCases.forEach((c, k) => {
    it(JSON.stringify(c), () => {
      const C = c.x[1]!, affine = c.affine !== false, eps = c.eps ?? 1e-5;
      const x = gridded(randomArray(numel(c.x), 100 + k, 1, c.shift ?? 0));
      const w = gridded(randomArray(C, 200 + k, 1.5)), b = gridded(randomArray(C, 300 + k));
      const dy = randomArray(numel(c.x), 400 + k);
      const f = ([xv, wv, bv]: Float32Array[]): Float32Array => {
        const tx = cpu.fromRaw(xv!, c.x), tw = affine ? cpu.fromRaw(wv!, [C]) : undefined, tb = affine ? cpu.fromRaw(bv!, [C]) : undefined;
        const y = ops.groupNorm(tx, c.groups, tw, tb, eps, c.silu);
        const v = cpu.values(y);
        for (const t of [tx, tw, tb, y]) t?.dispose();
        return v;
      };
      const fwd = groupNormForward(x, c.x, affine ? w : undefined, affine ? b : undefined, { groups: c.groups, eps, silu: c.silu });
      expect(Array.from(fwd.y)).toEqual(Array.from(f([x, w, b]))); // CpuBackend.groupNorm is this function
      // statistics: float64 recomputation
      const N = c.x[0]!, L = numel(c.x) / (N * c.groups);
      const mean = new Float64Array(N * c.groups), rstd = new Float64Array(N * c.groups);
      for (let s = 0; s < N * c.groups; s++) {
        let m = 0, v = 0;
        for (let i = 0; i < L; i++) m += x[s * L + i]!;
        m /= L;
        for (let i = 0; i < L; i++) v += (x[s * L + i]! - m) ** 2;
        mean[s] = m;
        rstd[s] = 1 / Math.sqrt(v / L + eps);
      }
      expect(maxUlpDiff(fwd.mean, mean)).toBeLessThanOrEqual(1);
      expect(maxUlpDiff(fwd.rstd, rstd)).toBeLessThanOrEqual(1);
      const g = groupNormBackward(x, c.x, dy, fwd.mean, fwd.rstd, affine ? w : undefined, affine ? b : undefined, { groups: c.groups, silu: c.silu });
      expectGradMatchesFd('dx', g.dx, f, [x, w, b], dy, 0);
      if (affine) {
        expectGradMatchesFd('dweight', g.dweight!, f, [x, w, b], dy, 1);
        expectGradMatchesFd('dbias', g.dbias!, f, [x, w, b], dy, 2);
      } else {
        expect(g.dweight).toBeUndefined();
        expect(g.dbias).toBeUndefined();
      }
    });
  });

  it('shape errors name what was expected', () => {
    expect(() => groupNormBackward(new Float32Array(12), [1, 6, 2], new Float32Array(12), new Float32Array(3), new Float32Array(2), undefined, undefined, { groups: 2 }))
      .toThrow(/groupNormBackward: expected mean of 2 elements \[1, 2\], found 3/);
  });
});

describe('layer norm backward (CPU reference) vs finite differences', () => {
  layerCases.forEach((c, k) => {
    it(JSON.stringify(c), () => {
      const D = c.x[c.x.length - 1]!, affine = c.affine !== false, eps = c.eps ?? 1e-5;
      const x = gridded(randomArray(numel(c.x), 500 + k, 1, c.shift ?? 0));
      const w = gridded(randomArray(D, 600 + k, 1.5)), b = gridded(randomArray(D, 700 + k));
      const dy = randomArray(numel(c.x), 800 + k);
      const f = ([xv, wv, bv]: Float32Array[]): Float32Array => {
        const tx = cpu.fromRaw(xv!, c.x), tw = affine ? cpu.fromRaw(wv!, [D]) : undefined, tb = affine ? cpu.fromRaw(bv!, [D]) : undefined;
        const y = ops.layerNorm(tx, tw, tb, eps);
        const v = cpu.values(y);
        for (const t of [tx, tw, tb, y]) t?.dispose();
        return v;
      };
      const fwd = layerNormForward(x, c.x, affine ? w : undefined, affine ? b : undefined, eps);
      expect(Array.from(fwd.y)).toEqual(Array.from(f([x, w, b])));
      expect(fwd.mean.length).toBe(numel(c.x) / D);
      const g = layerNormBackward(x, c.x, dy, fwd.mean, fwd.rstd, affine ? w : undefined, affine ? b : undefined);
      expectGradMatchesFd('dx', g.dx, f, [x, w, b], dy, 0);
      if (affine) {
        expectGradMatchesFd('dweight', g.dweight!, f, [x, w, b], dy, 1);
        expectGradMatchesFd('dbias', g.dbias!, f, [x, w, b], dy, 2);
      }
    });
  });
});

describe('norm backward (CPU reference) vs the grad_norm golden case', () => {
  it('every variant: grad x, weight, bias from the saved statistics', () => {
    const gc = openGoldenCase('grad_norm');
    try {
      for (const v of gc.json.args.variants as { name: string; op: string; groups?: number; eps: number; silu?: boolean; affine?: boolean }[]) {
        const x = gc.get(`${v.name}.x`), gy = gc.get(`${v.name}.gy`);
        const affine = v.affine !== false;
        const w = affine ? gc.get(`${v.name}.weight`).data : undefined, b = affine ? gc.get(`${v.name}.bias`).data : undefined;
        const tol = gc.json.tolerance;
        let fwd, g;
        if (v.op === 'group_norm') {
          fwd = groupNormForward(x.data, x.shape, w, b, { groups: v.groups!, eps: v.eps, silu: v.silu });
          g = groupNormBackward(x.data, x.shape, gy.data, fwd.mean, fwd.rstd, w, b, { groups: v.groups!, silu: v.silu });
        } else if (v.op === 'layer_norm') {
          fwd = layerNormForward(x.data, x.shape, w, b, v.eps);
          g = layerNormBackward(x.data, x.shape, gy.data, fwd.mean, fwd.rstd, w, b);
        } else {
          throw new Error(`grad_norm: unknown op '${v.op}' in variant ${v.name}`);
        }
        expectGoldenClose(`${v.name}.y`, fwd.y, gc.get(`${v.name}.y`).data, tol[`${v.name}.y`]);
        expectGoldenClose(`${v.name}.grad.x`, g.dx, gc.get(`${v.name}.grad.x`).data, tol[`${v.name}.grad.x`]);
        if (affine) {
          expectGoldenClose(`${v.name}.grad.weight`, g.dweight!, gc.get(`${v.name}.grad.weight`).data, tol[`${v.name}.grad.weight`]);
          expectGoldenClose(`${v.name}.grad.bias`, g.dbias!, gc.get(`${v.name}.grad.bias`).data, tol[`${v.name}.grad.bias`]);
        }
      }
    } finally {
      gc.close();
    }
  });
});
