// CPU reference of attention forward-with-logsumexp and backward (cpu/attention_backward.ts):
//  - the forward agrees with CpuBackend.attention and its lse with a direct log(sum(exp)) of the scores;
//  - the backward against central finite differences of the float64 forward (finite_difference.ts
//    has the error model: FD error <= ~1e-7 here, so tolerance 1e-6 relative to the gradient's scale)
//    on awkward shapes: batch > 1, Lq != Lk, D not a multiple of 4, Dv != D, one query row, causal,
//    sharp logits;
//  - the f32 entry points against golden grad_attention (torch autograd of softmax(q k^T d^-1/2) v; raw
//    q/k/v variants), with the case's tolerances (max_abs, rel_l2).
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  attentionOp, runOp1,
  CpuBackend, SafetensorsFile, attentionBackward, attentionBackwardF64, attentionForwardF64, attentionForwardWithLse,
} from '@cnx/tensor';
import { randomArray } from '../../../test/harness/allclose.js';
import { finiteDifferenceVjp, worstRatio } from '../../../test/harness/finite_difference.js';
import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';

const golden = GOLDEN_ROOT;

interface Case { B: number; Lq: number; Lk: number; H: number; D: number; Dv: number; causal?: boolean; scale?: number; qk?: number }

const f64 = (n: number, seed: number, s = 1) => Float64Array.from(randomArray(n, seed, s));

describe('attention CPU reference: forward with logsumexp', () => {
  it('matches CpuBackend.attention; lse = log sum exp(scale q.k) per (b, query, head)', async () => {
    const cpu = new CpuBackend();
    for (const c of [{ B: 2, Lq: 5, Lk: 7, H: 3, D: 6, Dv: 5 }, { B: 1, Lq: 9, Lk: 9, H: 2, D: 4, Dv: 4, causal: true }] as Case[]) {
      const q = randomArray(c.B * c.Lq * c.H * c.D, 1), k = randomArray(c.B * c.Lk * c.H * c.D, 2), v = randomArray(c.B * c.Lk * c.H * c.Dv, 3);
      const opts = { scale: 0.7, causal: c.causal };
      const r = attentionForwardWithLse({ shape: [c.B, c.Lq, c.H, c.D], data: q }, { shape: [c.B, c.Lk, c.H, c.D], data: k }, { shape: [c.B, c.Lk, c.H, c.Dv], data: v }, opts);
      const ref = await runOp1(attentionOp, [cpu.fromRaw(q, [c.B, c.Lq, c.H, c.D]), cpu.fromRaw(k, [c.B, c.Lk, c.H, c.D]), cpu.fromRaw(v, [c.B, c.Lk, c.H, c.Dv])], opts).data();
      // both accumulate in f64 and round once: within one f32 rounding
      expect(worstRatio(r.out.data, ref, 1e-7, 2.4e-7).ratio).toBeLessThanOrEqual(1);
      expect(r.lse.shape).toEqual([c.B, c.Lq, c.H]);
      for (let b = 0; b < c.B; b++) for (let i = 0; i < c.Lq; i++) for (let h = 0; h < c.H; h++) {
        let z = 0;
        for (let j = 0; j < (c.causal ? i + 1 : c.Lk); j++) {
          let dot = 0;
          for (let d = 0; d < c.D; d++) dot += q[((b * c.Lq + i) * c.H + h) * c.D + d]! * k[((b * c.Lk + j) * c.H + h) * c.D + d]!;
          z += Math.exp(dot * opts.scale);
        }
        expect(r.lse.data[(b * c.Lq + i) * c.H + h]).toBeCloseTo(Math.log(z), 6);
      }
    }
  });

  it('rejects mismatched shapes and causal with Lq != Lk, naming what it found', () => {
    const a = (shape: number[]) => ({ shape, data: new Float32Array(shape.reduce((p, d) => p * d, 1)) });
    expect(() => attentionForwardWithLse(a([1, 2, 1, 4]), a([1, 3, 2, 4]), a([1, 3, 1, 4]), { scale: 1 })).toThrow(/expected k \[1, 3, 1, 4\].*found \[1, 3, 2, 4\]/);
    expect(() => attentionForwardWithLse(a([1, 2, 1, 4]), a([1, 3, 1, 4]), a([1, 3, 1, 4]), { scale: 1, causal: true })).toThrow(/Lq === Lk/);
  });
});

describe('attention CPU reference: backward vs finite differences', () => {
  const cases: Case[] = [
    { B: 2, Lq: 5, Lk: 7, H: 2, D: 3, Dv: 5 },
    { B: 1, Lq: 6, Lk: 6, H: 3, D: 5, Dv: 2, causal: true },
    { B: 2, Lq: 1, Lk: 9, H: 1, D: 7, Dv: 7 },
    { B: 1, Lq: 4, Lk: 3, H: 2, D: 2, Dv: 3, scale: 3, qk: 2 }, // sharp logits (|S| up to ~24)
  ];
  for (const c of cases) {
    it(JSON.stringify(c), () => {
      const qs = [c.B, c.Lq, c.H, c.D], ks = [c.B, c.Lk, c.H, c.D], vs = [c.B, c.Lk, c.H, c.Dv];
      const opts = { scale: c.scale ?? 1 / Math.sqrt(c.D), causal: c.causal };
      const inputs = [f64(c.B * c.Lq * c.H * c.D, 11, c.qk), f64(c.B * c.Lk * c.H * c.D, 12, c.qk), f64(c.B * c.Lk * c.H * c.Dv, 13)];
      const dO = f64(c.B * c.Lq * c.H * c.Dv, 14);
      const fwd = (x: Float64Array[]) => [attentionForwardF64({ shape: qs, data: x[0]! }, { shape: ks, data: x[1]! }, { shape: vs, data: x[2]! }, opts).out.data];
      const { out, lse } = attentionForwardF64({ shape: qs, data: inputs[0]! }, { shape: ks, data: inputs[1]! }, { shape: vs, data: inputs[2]! }, opts);
      const g = attentionBackwardF64({ shape: qs, data: inputs[0]! }, { shape: ks, data: inputs[1]! }, { shape: vs, data: inputs[2]! }, out, { shape: out.shape, data: dO }, lse, opts);
      [g.dq, g.dk, g.dv].forEach((grad, which) => {
        const fd = finiteDifferenceVjp(fwd, inputs, [dO], which);
        const scale = fd.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
        const w = worstRatio(grad.data, fd, 1e-6 * (1 + scale), 1e-6);
        expect(w.ratio, `${['dq', 'dk', 'dv'][which]} at ${w.index}: ${grad.data[w.index]} vs FD ${fd[w.index]}`).toBeLessThanOrEqual(1);
      });
    });
  }
});

describe('attention CPU reference: golden grad_attention (torch autograd)', () => {
  const dir = join(golden, 'grad_attention');
  const meta = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8')) as {
    args: { variants: { name: string; op: string; qk_scale?: number }[] };
    tolerance: Record<string, { max_abs: number; rel_l2: number }>;
  };
  /** [B, H, L, D] (torch sdpa layout) <-> [B, L, H, D] (ours). */
  const swap12 = (t: { shape: readonly number[]; data: Float32Array }) => {
    const [B, A, C, D] = t.shape as [number, number, number, number];
    const out = new Float32Array(t.data.length);
    for (let b = 0; b < B; b++) for (let a = 0; a < A; a++) for (let c = 0; c < C; c++) for (let d = 0; d < D; d++) {
      out[((b * C + c) * A + a) * D + d] = t.data[((b * A + a) * C + c) * D + d]!;
    }
    return { shape: [B, C, A, D], data: out };
  };
  for (const v of meta.args.variants.filter((x) => x.op === 'sdpa')) {
    it(v.name, () => {
      const io = SafetensorsFile.open(join(dir, 'io.safetensors'));
      try {
        const read = (n: string) => swap12(io.readFloat32(`${v.name}.${n}`));
        const q = read('q'), k = read('k'), v4 = read('v'), gy = read('gy');
        // torch scales the scores by d^-1/2; `qk_scale` is how the inputs were generated, not a parameter
        const opts = { scale: 1 / Math.sqrt(q.shape[3]!) };
        const { out, lse } = attentionForwardWithLse(q, k, v4, opts);
        const g = attentionBackward(q, k, v4, out, gy, lse, opts);
        for (const [name, got] of [['y', out], ['grad.q', g.dq], ['grad.k', g.dk], ['grad.v', g.dv]] as const) {
          const ref = read(name).data;
          const tol = meta.tolerance[`${v.name}.${name}`]!;
          let maxAbs = 0, num = 0, den = 0;
          for (let i = 0; i < ref.length; i++) {
            const d = got.data[i]! - ref[i]!;
            maxAbs = Math.max(maxAbs, Math.abs(d));
            num += d * d;
            den += ref[i]! * ref[i]!;
          }
          const relL2 = Math.sqrt(num / den);
          expect(maxAbs, `${v.name}.${name} max_abs`).toBeLessThanOrEqual(tol.max_abs);
          expect(relL2, `${v.name}.${name} rel_l2`).toBeLessThanOrEqual(tol.rel_l2);
        }
      } finally {
        io.close();
      }
    });
  }
});
