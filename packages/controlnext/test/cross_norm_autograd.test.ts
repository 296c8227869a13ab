// ControlNeXt cross normalisation through the autograd tape: the fused backward op
// (controlnext.cross_norm_backward) against central finite differences of the float64-accumulating
// forward (test/harness/grad_check.ts), for both statistics orders, a control shared by the batch (Nc = 1),
// overlapping pooling bins, a per-sample scale tensor (also broadcast from one learned value, as the
// ControlNeXt-SD1.5 scale parameter is) and the residual-free form; then WebGPU against the CPU.

import { crossNorm } from '@cnx/controlnext';
import { CpuBackend, type Backend, type Tensor } from '@cnx/tensor';
import { describe, expect, it } from 'vitest';
import { expectAllClose, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { checkGradients, gradientsOn, type GradInput } from '../../../test/harness/grad_check.js';

const cases: [string, GradInput[], (xs: Tensor[]) => Tensor][] = [
  ['pool_then_norm, number scale, pooled 6x5 -> 3x2 (overlapping bins)',
    [{ shape: [2, 3, 3, 2] }, { shape: [2, 3, 6, 5], scale: 2, shift: 0.5 }],
    ([x, c]) => crossNorm(x!, c!, { eps: 1e-6, order: 'pool_then_norm', scale: 0.35 })],
  ['norm_then_pool, control shared by the batch, scale tensor [N]',
    [{ shape: [3, 2, 2, 3], shift: 1 }, { shape: [1, 2, 4, 5] }, { shape: [3], shift: 0.5 }],
    ([x, c, s]) => crossNorm(x!, c!, { eps: 1e-6, order: 'norm_then_pool', scale: s! })],
  ['one learned scale broadcast to [N], residual false',
    [{ shape: [2, 4, 2, 2] }, { shape: [2, 4, 2, 2] }, { shape: [1], shift: 0.8, scale: 0.1 }],
    ([x, c, s]) => crossNorm(x!, c!, { eps: 1e-5, order: 'pool_then_norm', scale: s!.expand([2]), residual: false })],
];

describe('cross normalisation gradients through the tape (finite differences, CPU)', () => {
  for (const [name, inputs, build] of cases) it(name, async () => { await checkGradients(name, inputs, build); });
});

describeEachBackend('cross normalisation gradients vs the CPU reference', (test) => {
  test('every case', async (backend: Backend) => {
    const cpu = new CpuBackend();
    for (const [name, inputs, build] of cases) {
      const before = backend.memory().liveBytes;
      const got = await gradientsOn(backend, inputs, build);
      expect(backend.memory().liveBytes, `${name}: live bytes`).toBe(before);
      const ref = await gradientsOn(cpu, inputs, build);
      const all: [string, Float32Array | undefined, Float32Array | undefined][] = [['y', got.y, ref.y], ...ref.grads.map((r, i) => [`grad ${i}`, got.grads[i], r] as [string, Float32Array | undefined, Float32Array | undefined])];
      for (const [what, g, r] of all) {
        const scale = r!.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        expectAllClose(g!, r!, tolFor('f32', 64, scale), `${name}: ${what}`);
      }
    }
  });
}, ['webgpu']);
