// AdamW (one fused dispatch per parameter group) and clip_grad_norm_ on WebGPU (adamw.ts, sum_squares.ts)
// against the optim_adamw golden case (torch 1.13: the ControlNeXt-SD1.5-Training group layout, per-group
// lr, with and without clipping, 5 steps, every intermediate state) with the case's tolerances, and
// against the float64 CPU reference (@cnx/tensor adamwStep / clipGradNorm) on a group of 70 001 values.
//
// Each group's parameters, gradients and moments are packed into flat tensors (the layout a trainer
// keeps so that one dispatch updates a whole group); the checks unpack them per parameter.
// Error model vs the CPU reference: the update is ~10 f32 operations per element, so a few ulp of
// the magnitudes of the terms, which may cancel: p * decay and the step (lr/bc1) |m| / denom (<= 10 lr
// here): atol = 8 eps (|p| + 10 lr). exp_avg = beta1 m + (1 - beta1) g also cancels: a few ulp of the
// terms' scale (|m|, |g| <= 0.01 here), atol = 16 eps * 0.01 per step; exp_avg_sq adds non-negative
// terms: 16 eps relative. Norm: a sum of 70 001 squares, relative error <= eps sqrt(n).

import { adamwKernels, type GpuContext } from '@cnx/kernels';
import { adamwStep, clipGradNorm, type Backend, type Tensor } from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { openGoldenCase } from '../../../test/harness/golden_case_data.js';
import { adamwCaseVariants, expectAdamwTrajectory, type AdamwTrajectory } from '../../../test/harness/optim_adamw_case.js';

function asContext(backend: Backend): GpuContext {
  if (!('dispatch' in backend)) throw new Error(`expected a WebGPU backend (GpuContext), found ${backend.name}`);
  return backend as unknown as GpuContext;
}
const EPS = 1.19e-7;

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

describeEachBackend('adamw kernels', (test) => {
  test('optim_adamw golden case: every variant, one dispatch per group', async (backend) => {
    const ctx = asContext(backend);
    const gc = openGoldenCase('optim_adamw');
    try {
      for (const v of adamwCaseVariants(gc)) {
        // flat group buffers
        const groups = v.groups.map((g) => {
          const param = concat(g.members.map((j) => v.params[j]!));
          return {
            ...g,
            sizes: g.members.map((j) => v.params[j]!.length),
            state: { param: backend.fromRaw(param, [param.length]), expAvg: backend.zeros([param.length]), expAvgSq: backend.zeros([param.length]) },
          };
        });
        const t: AdamwTrajectory = { totalNorm: [], clippedGrad: [], param: [], expAvg: [], expAvgSq: [] };
        const split = async (x: Tensor, sizes: number[]) => {
          const d = await x.data();
          let o = 0;
          return sizes.map((n) => d.slice(o, (o += n)));
        };
        for (let s = 0; s < v.steps; s++) {
          const grads = groups.map((g) => {
            const flat = concat(g.members.map((j) => v.grads[s]![j]!));
            return backend.fromRaw(flat, [flat.length]);
          });
          if (v.clip !== null) {
            const out = adamwKernels.clipGradNorm(ctx, grads, v.clip);
            t.totalNorm!.push((await out.data())[0]!);
            out.dispose();
            t.clippedGrad!.push((await Promise.all(grads.map((g, i) => split(g, groups[i]!.sizes)))).flat());
          }
          for (const [i, g] of groups.entries()) {
            adamwKernels.adamwStep(ctx, g.state, grads[i]!, s + 1, { lr: g.lr, beta1: v.betas[0], beta2: v.betas[1], eps: v.eps, weightDecay: v.weightDecay });
          }
          const unpack = async (key: 'param' | 'expAvg' | 'expAvgSq') => (await Promise.all(groups.map((g) => split(g.state[key], g.sizes)))).flat();
          t.param.push(await unpack('param'));
          t.expAvg.push(await unpack('expAvg'));
          t.expAvgSq.push(await unpack('expAvgSq'));
          grads.forEach((g) => g.dispose());
        }
        expectAdamwTrajectory(gc, v, t, 'webgpu');
        for (const g of groups) for (const x of Object.values(g.state)) x.dispose();
      }
    } finally {
      gc.close();
    }
  });

  test('adamwStep and clipGradNorm vs the float64 reference on a 70 001-value group', async (backend) => {
    const ctx = asContext(backend);
    const n = 70001, h = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
    let ref = { param: randomArray(n, 1), expAvg: randomArray(n, 2, 1e-2), expAvgSq: randomArray(n, 3, 1e-4, 1e-4) };
    const state = { param: backend.fromRaw(ref.param, [n]), expAvg: backend.fromRaw(ref.expAvg, [n]), expAvgSq: backend.fromRaw(ref.expAvgSq, [n]) };
    const g1 = randomArray(n, 4, 0.05), g2 = randomArray(30, 5, 3);
    // clip over two tensors (the 70 001 values and another 30), norm ~ 9.8 -> coef ~ 0.1
    const t1 = backend.fromRaw(g1, [n]), t2 = backend.fromRaw(g2, [30]);
    const out = await adamwKernels.clipGradNorm(ctx, [t1, t2], 1).data();
    const c = clipGradNorm([g1, g2], 1);
    expectAllClose([out[0]!], [c.totalNorm], { atol: 0, rtol: 8 * EPS * Math.sqrt(n) }, 'total norm');
    expect(out[1]).toBeLessThan(1);
    expectAllClose(await t1.data(), c.grads[0]!, { atol: 0, rtol: 8 * EPS * Math.sqrt(n) }, 'clipped grad 0');
    expectAllClose(await t2.data(), c.grads[1]!, { atol: 0, rtol: 8 * EPS * Math.sqrt(n) }, 'clipped grad 1');
    // then 3 steps from the clipped gradient (step counts 7, 8, 9: bias corrections away from 1)
    for (const step of [7, 8, 9]) {
      adamwKernels.adamwStep(ctx, state, t1, step, h);
      ref = adamwStep(ref, c.grads[0]!, step, h);
    }
    const p = await state.param.data();
    const atol = p.map((_, i) => 8 * EPS * (Math.abs(ref.param[i]!) + 10 * h.lr));
    expect(p.filter((v, i) => !(Math.abs(v - ref.param[i]!) <= atol[i]!)).length, 'param').toBe(0);
    expectAllClose(await state.expAvg.data(), ref.expAvg, { atol: 3 * 16 * EPS * 0.01, rtol: 16 * EPS }, 'exp_avg');
    expectAllClose(await state.expAvgSq.data(), ref.expAvgSq, { atol: 1e-14, rtol: 16 * EPS }, 'exp_avg_sq');
    for (const x of [t1, t2, state.param, state.expAvg, state.expAvgSq]) x.dispose();
  });

  test('mismatched group buffers are errors naming the tensor', async (backend) => {
    const ctx = asContext(backend);
    const a = backend.zeros([4]), b = backend.zeros([3]);
    expect(() => adamwKernels.adamwStep(ctx, { param: a, expAvg: a, expAvgSq: b }, a, 1, { lr: 1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0 }))
      .toThrow(/adamwStep: expected contiguous f32 exp_avg_sq of 4 elements \(the param's\), found f32 \[3\]/);
    a.dispose(); b.dispose();
  });
}, ['webgpu']);
