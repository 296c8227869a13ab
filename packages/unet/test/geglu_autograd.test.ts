// GEGLU and diffusers FeedForward(geglu) through the autograd tape: against central finite differences of
// the float64-accumulating forward (test/harness/grad_check.ts), and WebGPU against the CPU.

import { geglu } from '@cnx/unet';
import { CpuBackend, ops, type Backend, type Tensor } from '@cnx/tensor';
import { describe, expect, it } from 'vitest';
import { expectAllClose, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { checkGradients, gradientsOn, type GradInput } from '../../../test/harness/grad_check.js';

const cases: [string, GradInput[], (xs: Tensor[]) => Tensor][] = [
  ['geglu, odd F', [{ shape: [2, 3, 10], scale: 3 }], ([h]) => geglu(h!)],
  ['feed-forward: proj -> geglu -> out', [{ shape: [2, 5, 6] }, { shape: [16, 6] }, { shape: [16] }, { shape: [6, 8] }, { shape: [6] }],
    ([x, w0, b0, w2, b2]) => ops.linear(geglu(ops.linear(x!, w0!, b0)), w2!, b2)],
];

describe('GEGLU gradients through the tape (finite differences, CPU)', () => {
  for (const [name, inputs, build] of cases) it(name, async () => { await checkGradients(name, inputs, build); });
});

describeEachBackend('GEGLU gradients vs the CPU reference', (test) => {
  test('every case', async (backend: Backend) => {
    const cpu = new CpuBackend();
    for (const [name, inputs, build] of cases) {
      const before = backend.memory().liveBytes;
      const got = await gradientsOn(backend, inputs, build);
      expect(backend.memory().liveBytes, `${name}: live bytes`).toBe(before);
      const ref = await gradientsOn(cpu, inputs, build);
      [[got.y, ref.y], ...ref.grads.map((r, i) => [got.grads[i], r])].forEach(([g, r], i) => {
        const scale = r!.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        expectAllClose(g!, r!, tolFor('f32', 16, scale), `${name}: output ${i}`);
      });
    }
  });
}, ['webgpu']);
