// CPU reference of ControlNeXt cross normalisation's fused backward (cpu/cross_norm_backward.ts):
//  - its float64 forward agrees with CpuBackend.crossNorm (the op's current definition) to f32 rounding;
//  - dx, dcontrol and dscale against central finite differences of that float64 forward (error model in
//    finite_difference.ts: FD error ~1e-8 here, tolerance 1e-6 relative to the gradient's scale) for
//    both orders, Nc = N and Nc = 1 (batch-summed control gradient), per-sample and number scales,
//    residual on and off, non-divisible pooling bins, a control SMALLER than the feature (bins of one
//    input shared by several cells), eps 1e-12 and 1e-5;
//  - the f32 entry points against golden grad_cross_norm (torch autograd of the ControlNeXt-SD1.5-Training
//    injection), with the case's tolerances (max_abs, rel_l2).
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  crossNorm, crossNormBackward, crossNormBackwardF64, crossNormForward, crossNormForwardF64, type CrossNormReferenceParams,
} from '@cnx/controlnext';
import { CpuBackend, SafetensorsFile } from '@cnx/tensor';
import { randomArray } from '../../../test/harness/allclose.js';
import { finiteDifferenceVjp, worstRatio } from '../../../test/harness/finite_difference.js';
import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';

const golden = GOLDEN_ROOT;
const numel = (s: readonly number[]) => s.reduce((p, d) => p * d, 1);

interface Case { x: number[]; control: number[]; order: CrossNormReferenceParams['order']; eps: number; scaleTensor: boolean; residual?: boolean }

const cases: Case[] = [
  { x: [2, 3, 3, 5], control: [2, 3, 7, 9], order: 'pool_then_norm', eps: 1e-12, scaleTensor: true },
  { x: [3, 2, 2, 3], control: [1, 2, 5, 4], order: 'norm_then_pool', eps: 1e-5, scaleTensor: false },
  { x: [2, 2, 3, 3], control: [1, 2, 3, 3], order: 'pool_then_norm', eps: 1e-12, scaleTensor: false, residual: false },
  { x: [2, 3, 4, 4], control: [2, 3, 3, 3], order: 'norm_then_pool', eps: 1e-12, scaleTensor: true }, // control smaller
  { x: [1, 5, 2, 3], control: [1, 5, 4, 6], order: 'pool_then_norm', eps: 1e-5, scaleTensor: true, residual: false },
];

describe('cross norm CPU reference: forward', () => {
  it('agrees with CpuBackend.crossNorm (both orders, Nc = 1, tensor and number scales, residual off)', async () => {
    const cpu = new CpuBackend();
    let seed = 1;
    for (const c of cases) {
      const x = randomArray(numel(c.x), seed++, 1, 0.3), ctl = randomArray(numel(c.control), seed++, 2, -0.5);
      const s = randomArray(c.x[0]!, seed++, 1);
      const p: CrossNormReferenceParams = { eps: c.eps, order: c.order, scale: c.scaleTensor ? s : 0.6, residual: c.residual };
      const got = crossNormForward({ shape: c.x, data: x }, { shape: c.control, data: ctl }, p);
      const ref = await crossNorm(cpu.fromRaw(x, c.x), cpu.fromRaw(ctl, c.control), {
        eps: c.eps, order: c.order, scale: c.scaleTensor ? cpu.fromRaw(s, [c.x[0]!]) : 0.6, residual: c.residual,
      }).data();
      // CpuBackend pools to f32 before the statistics; values are O(1): a few f32 roundings apart
      const w = worstRatio(got.data, ref, 1e-6, 1e-6);
      expect(w.ratio, `${JSON.stringify(c)} at ${w.index}`).toBeLessThanOrEqual(1);
    }
  });

  it('rejects a control batch other than N or 1 and a wrong scale length', () => {
    const a = (shape: number[]) => ({ shape, data: new Float32Array(numel(shape)) });
    expect(() => crossNormForward(a([2, 3, 2, 2]), a([3, 3, 4, 4]), { eps: 1e-5, order: 'pool_then_norm', scale: 1 })).toThrow(/control \[N or 1, C, h', w'\].*\[3, 3, 4, 4\]/);
    expect(() => crossNormForward(a([2, 3, 2, 2]), a([1, 3, 4, 4]), { eps: 1e-5, order: 'pool_then_norm', scale: [1, 2, 3] })).toThrow(/per-sample scale \[2\], found 3/);
  });
});

describe('cross norm CPU reference: backward vs finite differences', () => {
  let seed = 100;
  for (const c of cases) {
    it(JSON.stringify(c), () => {
      const N = c.x[0]!;
      const inputs = [
        Float64Array.from(randomArray(numel(c.x), seed++, 1, 0.3)),
        Float64Array.from(randomArray(numel(c.control), seed++, 2, -0.5)),
        Float64Array.from(randomArray(c.scaleTensor ? N : 1, seed++, 1)),
      ];
      const dy = Float64Array.from(randomArray(numel(c.x), seed++));
      const params = (x: Float64Array[]): CrossNormReferenceParams => ({ eps: c.eps, order: c.order, residual: c.residual, scale: c.scaleTensor ? x[2]! : x[2]![0]! });
      const fwd = (x: Float64Array[]) => [crossNormForwardF64({ shape: c.x, data: x[0]! }, { shape: c.control, data: x[1]! }, params(x)).data];
      const g = crossNormBackwardF64({ shape: c.x, data: inputs[0]! }, { shape: c.control, data: inputs[1]! }, { shape: c.x, data: dy }, params(inputs));
      expect(g.dscale.shape).toEqual([c.scaleTensor ? N : 1]);
      [g.dx, g.dcontrol, g.dscale].forEach((grad, which) => {
        const fd = finiteDifferenceVjp(fwd, inputs, [dy], which);
        const scale = fd.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        const w = worstRatio(grad.data, fd, 1e-6 * (1 + scale), 1e-6);
        expect(w.ratio, `${['dx', 'dcontrol', 'dscale'][which]} at ${w.index}: ${grad.data[w.index]} vs FD ${fd[w.index]}`).toBeLessThanOrEqual(1);
      });
    });
  }
});

describe('cross norm CPU reference: golden grad_cross_norm (torch autograd)', () => {
  const dir = join(golden, 'grad_cross_norm');
  const meta = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8')) as {
    args: { variants: { name: string; scale: number; scale_is_tensor: boolean }[] };
    tolerance: Record<string, { max_abs: number; rel_l2: number }>;
  };
  for (const v of meta.args.variants) {
    it(v.name, () => {
      const io = SafetensorsFile.open(join(dir, 'io.safetensors'));
      try {
        const read = (n: string) => io.readFloat32(`${v.name}.${n}`);
        const x = read('sample'), control = read('control'), gy = read('gy');
        const N = x.shape[0]!;
        // The case's call: pool -> normalise by the pooled control's statistics, eps 1e-12 (SD1.5-Training).
        // A tensor scale of shape [1] is broadcast over the batch: per-sample values, gradients summed.
        const s = v.scale_is_tensor ? read('scale').data[0]! : v.scale;
        const p: CrossNormReferenceParams = { eps: 1e-12, order: 'pool_then_norm', scale: v.scale_is_tensor ? new Float32Array(N).fill(s) : s };
        const y = crossNormForward(x, control, p);
        const g = crossNormBackward(x, control, gy, p);
        const outs: [string, Float32Array][] = [['y', y.data], ['grad.sample', g.dx.data], ['grad.control', g.dcontrol.data]];
        if (v.scale_is_tensor) outs.push(['grad.scale', Float32Array.of(g.dscale.data.reduce((a, b) => a + b, 0))]);
        for (const [name, got] of outs) {
          const ref = read(name).data;
          const tol = meta.tolerance[`${v.name}.${name}`]!;
          let maxAbs = 0, num = 0, den = 0;
          for (let i = 0; i < ref.length; i++) {
            const d = got[i]! - ref[i]!;
            maxAbs = Math.max(maxAbs, Math.abs(d));
            num += d * d;
            den += ref[i]! * ref[i]!;
          }
          expect(maxAbs, `${v.name}.${name} max_abs`).toBeLessThanOrEqual(tol.max_abs);
          expect(Math.sqrt(num / den), `${v.name}.${name} rel_l2`).toBeLessThanOrEqual(tol.rel_l2);
        }
      } finally {
        io.close();
      }
    });
  }
});
