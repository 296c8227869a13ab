// AdamW and clip_grad_norm_ references (cpu/adamw.ts) against the optim_adamw golden case (torch 1.13
// AdamW with the ControlNeXt-SD1.5-Training hyperparameters and group layout, with and without
// clipping, 5 steps, every intermediate state), with the case's tolerances; plus the properties that
// pin the operation order: decay before the moment update, eps after the bias-corrected sqrt.

import { adamwScalars, adamwStep, clipCoefficient, clipGradNorm, gradNorm, type AdamWState } from '@cnx/tensor';
import { describe, expect, it } from 'vitest';
import { openGoldenCase } from '../../../test/harness/golden_case_data.js';
import { adamwCaseVariants, expectAdamwTrajectory, type AdamwTrajectory } from '../../../test/harness/optim_adamw_case.js';

describe('AdamW (CPU reference)', () => {
  it('replays every optim_adamw variant (per-group lr, clipping or not, 5 steps)', () => {
    const gc = openGoldenCase('optim_adamw');
    try {
      const variants = adamwCaseVariants(gc);
      expect(variants.length).toBeGreaterThan(0);
      for (const v of variants) {
        const state: AdamWState[] = v.params.map((p) => ({ param: p.slice(), expAvg: new Float32Array(p.length), expAvgSq: new Float32Array(p.length) }));
        const t: AdamwTrajectory = { totalNorm: [], clippedGrad: [], param: [], expAvg: [], expAvgSq: [] };
        for (let s = 0; s < v.steps; s++) {
          let grads = v.grads[s]!;
          if (v.clip !== null) {
            const c = clipGradNorm(grads, v.clip);
            t.totalNorm!.push(c.totalNorm);
            t.clippedGrad!.push(c.grads);
            grads = c.grads;
          }
          for (const group of v.groups) {
            const h = { lr: group.lr, beta1: v.betas[0], beta2: v.betas[1], eps: v.eps, weightDecay: v.weightDecay };
            for (const j of group.members) state[j] = adamwStep(state[j]!, grads[j]!, s + 1, h);
          }
          t.param.push(state.map((x) => x.param));
          t.expAvg.push(state.map((x) => x.expAvg));
          t.expAvgSq.push(state.map((x) => x.expAvgSq));
        }
        expectAdamwTrajectory(gc, v, t, 'cpu');
      }
    } finally {
      gc.close();
    }
  });

  it('decoupled decay acts on the pre-update value; eps is added after the bias-corrected sqrt', () => {
    const h = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-3, weightDecay: 0.5 };
    // zero gradient: only the decay moves the parameter
    const s0 = adamwStep({ param: Float32Array.of(2), expAvg: Float32Array.of(0), expAvgSq: Float32Array.of(0) }, Float32Array.of(0), 1, h);
    expect(s0.param[0]).toBe(Math.fround(2 * (1 - 0.1 * 0.5)));
    // step 3 with a given state: the torch formula, written out
    const st = { param: Float32Array.of(1), expAvg: Float32Array.of(0.2), expAvgSq: Float32Array.of(4e-6) };
    const g = 0.01;
    const m = 0.9 * Math.fround(0.2) + 0.1 * g, v = 0.999 * Math.fround(4e-6) + 0.001 * g * g;
    const denom = Math.sqrt(v) / Math.sqrt(1 - 0.999 ** 3) + 1e-3;
    const want = 1 * (1 - 0.05) - (0.1 / (1 - 0.9 ** 3)) * m / denom;
    const got = adamwStep(st, Float32Array.of(g), 3, h);
    expect(got.param[0]).toBe(Math.fround(want));
    expect(got.expAvg[0]).toBe(Math.fround(m));
    expect(got.expAvgSq[0]).toBe(Math.fround(v));
    expect(adamwScalars(3, h).bc2Sqrt).toBe(Math.sqrt(1 - 0.999 ** 3));
  });

  it('clip_grad_norm_ multiplies by min(max_norm / (total + 1e-6), 1)', () => {
    const g = [Float32Array.of(3, 0), Float32Array.of(4)];
    expect(gradNorm(g)).toBe(5);
    expect(clipCoefficient(5, 10)).toBe(1);
    const c = clipGradNorm(g, 1);
    expect(c.totalNorm).toBe(5);
    expect(c.grads[0]![0]).toBe(Math.fround(3 / (5 + 1e-6)));
    expect(() => adamwStep({ param: new Float32Array(2), expAvg: new Float32Array(2), expAvgSq: new Float32Array(1) }, new Float32Array(2), 1,
      { lr: 1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0 })).toThrow(/adamw: expected param, grad, exp_avg and exp_avg_sq of equal length, found 2, 2, 2, 1/);
    expect(() => adamwScalars(0, { lr: 1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0 })).toThrow(/step count >= 1/);
  });
});
