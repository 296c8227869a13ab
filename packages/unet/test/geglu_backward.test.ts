// CPU reference of the GEGLU backward (cpu/geglu_backward.ts):
//  - its float64 forward agrees with CpuBackend.geglu;
//  - dh against central finite differences of the float64 forward (error model in finite_difference.ts;
//    tolerance 1e-6 relative to the gradient's scale) on odd F, several leading dims, gates out to |x| ~ 6
//    (GELU's tails) and exactly 0;
//  - the derivative gelu'(x) = Phi(x) + x phi(x) against a float64 central difference of gelu itself;
//  - golden grad_misc geglu_ff: diffusers FeedForward(geglu) = Linear -> GEGLU -> Linear, whose grads of
//    x and of every weight are assembled here from this backward and float64 matrix products, with the
//    case's tolerances (max_abs, rel_l2).
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CpuBackend, SafetensorsFile } from '@cnx/tensor';
import { geglu, gegluBackward, gegluBackwardF64, gegluForwardF64, geluErfDerivative } from '@cnx/unet';
import { randomArray } from '../../../test/harness/allclose.js';
import { finiteDifferenceVjp, worstRatio } from '../../../test/harness/finite_difference.js';
import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';

const golden = GOLDEN_ROOT;
const numel = (s: readonly number[]) => s.reduce((p, d) => p * d, 1);

describe('geglu CPU reference', () => {
  it('forward agrees with CpuBackend.geglu', async () => {
    const cpu = new CpuBackend();
    const h = randomArray(3 * 5 * 14, 1, 4);
    const ref = await geglu(cpu.fromRaw(h, [3, 5, 14])).data();
    const got = gegluForwardF64({ shape: [3, 5, 14], data: h });
    expect(got.shape).toEqual([3, 5, 7]);
    expect(worstRatio(got.data, ref, 1e-7, 2.4e-7).ratio).toBeLessThanOrEqual(1);
  });

  it("gelu'(x) matches a central difference of x Phi(x)", () => {
    const gelu = (x: number) => gegluForwardF64({ shape: [2], data: [1, x] }).data[0]!;
    for (const x of [-6, -3.3, -1, -0.2, 0, 0.1, 0.46875 * Math.SQRT2, 1.7, 4, 7]) {
      const h = 1e-5;
      expect(geluErfDerivative(x)).toBeCloseTo((gelu(x + h) - gelu(x - h)) / (2 * h), 8);
    }
  });

  for (const shape of [[2, 3, 10], [7, 6], [1, 1, 1, 2], [4, 16]]) {
    it(`backward vs finite differences, h ${JSON.stringify(shape)}`, () => {
      const h = Float64Array.from(randomArray(numel(shape), shape.length * 7 + shape[0]!, 6));
      h[h.length - 1] = 0; // a gate exactly 0
      const outShape = [...shape.slice(0, -1), shape[shape.length - 1]! / 2];
      const dout = Float64Array.from(randomArray(numel(outShape), 5));
      const dh = gegluBackwardF64({ shape, data: h }, { shape: outShape, data: dout });
      const fd = finiteDifferenceVjp((x) => [gegluForwardF64({ shape, data: x[0]! }).data], [h], [dout], 0);
      const scale = fd.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const w = worstRatio(dh.data, fd, 1e-6 * (1 + scale), 1e-6);
      expect(w.ratio, `at ${w.index}: ${dh.data[w.index]} vs FD ${fd[w.index]}`).toBeLessThanOrEqual(1);
    });
  }

  it('rejects an odd last dim and a mismatched dout', () => {
    expect(() => gegluBackward({ shape: [2, 3], data: new Float32Array(6) }, { shape: [2, 1], data: new Float32Array(2) })).toThrow(/even last dim/);
    expect(() => gegluBackward({ shape: [2, 4], data: new Float32Array(8) }, { shape: [2, 3], data: new Float32Array(6) })).toThrow(/expected dout \[2, 2\]/);
  });

  it('golden grad_misc geglu_ff: FeedForward(geglu) grads of x and every weight (torch autograd)', () => {
    const dir = join(golden, 'grad_misc');
    const meta = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8')) as { tolerance: Record<string, { max_abs: number; rel_l2: number }> };
    const io = SafetensorsFile.open(join(dir, 'io.safetensors'));
    try {
      const read = (n: string) => io.readFloat32(`geglu_ff.${n}`);
      const x = read('x'), gy = read('gy');
      const w0 = read('module.net.0.proj.weight'), b0 = read('module.net.0.proj.bias');
      const w2 = read('module.net.2.weight'), b2 = read('module.net.2.bias');
      const [H2, Din] = w0.shape as [number, number];
      const [Dout, F] = w2.shape as [number, number];
      const rows = numel(x.shape) / Din;
      // float64 linear layers around the GEGLU under test
      const h = new Float64Array(rows * H2);
      for (let r = 0; r < rows; r++) for (let o = 0; o < H2; o++) {
        let s = b0.data[o]!;
        for (let i = 0; i < Din; i++) s += x.data[r * Din + i]! * w0.data[o * Din + i]!;
        h[r * H2 + o] = s;
      }
      const m = gegluForwardF64({ shape: [rows, H2], data: h }).data;
      const y = new Float64Array(rows * Dout), dm = new Float64Array(rows * F);
      const dw2 = new Float64Array(Dout * F), db2 = new Float64Array(Dout);
      for (let r = 0; r < rows; r++) for (let o = 0; o < Dout; o++) {
        let s = b2.data[o]!;
        const g = gy.data[r * Dout + o]!;
        db2[o] = db2[o]! + g;
        for (let j = 0; j < F; j++) {
          s += m[r * F + j]! * w2.data[o * F + j]!;
          dm[r * F + j] = dm[r * F + j]! + g * w2.data[o * F + j]!;
          dw2[o * F + j] = dw2[o * F + j]! + g * m[r * F + j]!;
        }
        y[r * Dout + o] = s;
      }
      const dh = gegluBackwardF64({ shape: [rows, H2], data: h }, { shape: [rows, F], data: dm }).data;
      const dx = new Float64Array(rows * Din), dw0 = new Float64Array(H2 * Din), db0 = new Float64Array(H2);
      for (let r = 0; r < rows; r++) for (let o = 0; o < H2; o++) {
        const g = dh[r * H2 + o]!;
        db0[o] = db0[o]! + g;
        for (let i = 0; i < Din; i++) {
          dx[r * Din + i] = dx[r * Din + i]! + g * w0.data[o * Din + i]!;
          dw0[o * Din + i] = dw0[o * Din + i]! + g * x.data[r * Din + i]!;
        }
      }
      const outs: [string, Float64Array][] = [
        ['y', y], ['grad.x', dx], ['grad.module.net.0.proj.weight', dw0], ['grad.module.net.0.proj.bias', db0],
        ['grad.module.net.2.weight', dw2], ['grad.module.net.2.bias', db2],
      ];
      for (const [name, got64] of outs) {
        const got = Float32Array.from(got64), ref = read(name).data;
        const tol = meta.tolerance[`geglu_ff.${name}`]!;
        let maxAbs = 0, num = 0, den = 0;
        for (let i = 0; i < ref.length; i++) {
          const d = got[i]! - ref[i]!;
          maxAbs = Math.max(maxAbs, Math.abs(d));
          num += d * d;
          den += ref[i]! * ref[i]!;
        }
        expect(maxAbs, `geglu_ff.${name} max_abs`).toBeLessThanOrEqual(tol.max_abs);
        expect(Math.sqrt(num / den), `geglu_ff.${name} rel_l2`).toBeLessThanOrEqual(tol.rel_l2);
      }
    } finally {
      io.close();
    }
  });
});
