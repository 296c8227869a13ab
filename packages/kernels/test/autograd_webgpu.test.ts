// Gradients through the autograd tape on WebGPU agree with the CPU reference backend, for every
// differentiable core op (so every gradient op's WGSL kernel, wired in webgpu/grad_kernels.ts, runs
// through runOp): the forward output and each input's gradient of sum(gy * f(inputs)) on small awkward
// shapes (SwiftShader is slow). Tolerance: f32 sums of R terms on the GPU against float64 sums rounded
// once, |err| <= 8 eps sqrt(R) max|ref| (tolFor('f32', R, max|ref|)), R the longest reduction a value goes
// through (forward and backward). WebGPU memory returns to where it started after each check (the tape
// released everything).

import { CpuBackend, ops, type Backend, type Tensor, type UnaryOp } from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { gradientsOn, type GradInput } from '../../../test/harness/grad_check.js';

const cpu = new CpuBackend();

async function agree(backend: Backend, what: string, inputs: GradInput[], build: (xs: Tensor[]) => Tensor, R: number): Promise<void> {
  const before = backend.memory().liveBytes;
  const got = await gradientsOn(backend, inputs, build);
  expect(backend.memory().liveBytes, `${what}: live bytes after backward and dispose`).toBe(before);
  const ref = await gradientsOn(cpu, inputs, build);
  const check = (name: string, g: Float32Array | undefined, r: Float32Array | undefined) => {
    if (!r) return;
    if (!g) expect.fail(`${what}: ${name} missing on ${backend.name}`);
    const scale = r.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expectAllClose(g, r, tolFor('f32', R, scale), `${what}: ${name}`);
  };
  check('y', got.y, ref.y);
  ref.grads.forEach((r, i) => check(`grad of input ${i}`, got.grads[i], r));
}

describeEachBackend('autograd gradients vs the CPU reference', (test) => {
  test('unary ops and affine', async (b) => {
    // (not sin/cos: the FORWARD kernel uses WGSL's builtins, good to 2^-11 absolute only)
    const ops1: UnaryOp[] = ['exp', 'tanh', 'sigmoid', 'silu', 'gelu', 'gelu_tanh', 'quick_gelu', 'square', 'neg'];
    for (const op of ops1) await agree(b, op, [{ shape: [3, 37], scale: 3 }], ([x]) => ops.unary(op, x!), 1);
    await agree(b, 'sqrt', [{ shape: [5, 7], shift: 2 }], ([x]) => ops.sqrt(x!), 1);
    await agree(b, 'affine of a transposed view', [{ shape: [6, 5] }], ([x]) => ops.affine(x!.transpose(0, 1), 1.5, -2), 1);
  });

  test('binary ops with broadcasting (sums over the broadcast dims)', async (b) => {
    for (const op of ['add', 'sub', 'mul', 'div'] as const) {
      await agree(b, op, [{ shape: [2, 3, 17] }, { shape: [3, 1], awayFromZero: 0.5 }], ([x, y]) => ops.binary(op, x!, y!), 34);
    }
    const a = new Float32Array(2 * 3 * 4).map((_, i) => ((i * 37) % 17) / 8 - 1);
    for (const op of ['max', 'min'] as const) {
      await agree(b, op, [{ shape: [2, 3, 4], data: a }, { shape: [4], data: Float32Array.from([-0.53, 0.28, 0.71, -0.09]) }],
        ([x, y]) => ops.binary(op, x!, y!), 6);
    }
  });

  test('reductions, softmax, mse loss, views, concat', async (b) => {
    await agree(b, 'sum', [{ shape: [3, 4, 5] }], ([x]) => ops.sum(x!, [0, 2]), 15);
    await agree(b, 'mean', [{ shape: [3, 4, 5] }], ([x]) => ops.mean(x!, 1, true), 4);
    const d = new Float32Array(3 * 7).map((_, i) => ((i * 11) % 21) / 4 - 2.5);
    await agree(b, 'max', [{ shape: [3, 7], data: d }], ([x]) => ops.max(x!, 1), 7);
    await agree(b, 'softmax', [{ shape: [2, 3, 33], scale: 5 }], ([x]) => ops.softmax(x!), 33);
    await agree(b, 'mse', [{ shape: [2, 3, 11] }, { shape: [2, 3, 11] }], ([p, t]) => ops.mseLoss(p!, t!), 66);
    await agree(b, 'views', [{ shape: [2, 3, 5] }], ([x]) => {
      const p = x!.permute([2, 0, 1]).slice(0, 1, 4);
      const r = p.reshape([3, 6]).unsqueeze(0).expand([2, 3, 6]);
      return ops.mul(r, r);
    }, 2);
    await agree(b, 'concat', [{ shape: [2, 3, 4] }, { shape: [2, 2, 4] }], ([x, y]) => ops.concat([x!, y!], 1), 1);
  });

  test('matmul: flags, broadcast batch, epilogue; linear', async (b) => {
    await agree(b, 'bmm shared b', [{ shape: [3, 5, 9] }, { shape: [9, 7] }], ([x, y]) => ops.matmul(x!, y!), 15);
    await agree(b, 'transA transB', [{ shape: [2, 9, 5] }, { shape: [2, 7, 9] }], ([x, y]) => ops.matmul(x!.transpose(1, 2), y!.transpose(1, 2)), 9);
    await agree(b, 'epilogue', [{ shape: [2, 5, 9] }, { shape: [9, 7] }, { shape: [7] }, { shape: [2, 5, 7] }],
      ([x, y, bias, res]) => ops.matmul(x!, y!, { alpha: 0.5, bias, activation: 'gelu', residual: res }), 10);
    await agree(b, 'linear', [{ shape: [2, 13, 10] }, { shape: [6, 10] }, { shape: [6] }], ([x, w, bias]) => ops.linear(x!, w!, bias), 26);
  });

  test('conv2d: stride 2, asymmetric padding, groups, residual, activation', async (b) => {
    await agree(b, 'k3 s1 p1', [{ shape: [2, 3, 7, 6] }, { shape: [5, 3, 3, 3], scale: 0.5 }, { shape: [5] }],
      ([x, w, bias]) => ops.conv2d(x!, w!, bias, { padding: 1 }), 84);
    await agree(b, 'k3 s2 p1', [{ shape: [1, 4, 9, 7] }, { shape: [6, 4, 3, 3], scale: 0.5 }, { shape: [6] }],
      ([x, w, bias]) => ops.conv2d(x!, w!, bias, { stride: 2, padding: 1 }), 54);
    await agree(b, 'asym pad s2', [{ shape: [2, 3, 6, 6] }, { shape: [4, 3, 3, 3], scale: 0.5 }, { shape: [4] }],
      ([x, w, bias]) => ops.conv2d(x!, w!, bias, { stride: 2, padding: [0, 1, 0, 1] }), 27);
    await agree(b, 'groups, silu, residual', [{ shape: [2, 4, 5, 5] }, { shape: [6, 2, 3, 3], scale: 0.5 }, { shape: [6] }, { shape: [2, 6, 5, 5] }],
      ([x, w, bias, r]) => ops.conv2d(x!, w!, bias, { padding: 1, groups: 2, activation: 'silu', residual: r }), 50);
  });

  // (causal: kernels/test/attention_backward.test.ts; each variant compiles for minutes on SwiftShader)
  test('attention: self, cross (Dv != D)', async (b) => {
    await agree(b, 'self', [{ shape: [2, 9, 8] }, { shape: [2, 9, 8] }, { shape: [2, 9, 8] }], ([q, k, v]) => ops.attention(q!, k!, v!, 2), 18);
    await agree(b, 'cross', [{ shape: [1, 5, 8] }, { shape: [1, 11, 8] }, { shape: [1, 11, 6] }], ([q, k, v]) => ops.attention(q!, k!, v!, 2, { scale: 0.7 }), 11);
  });

  test('group norm (+SiLU), layer norm, resampling', async (b) => {
    await agree(b, 'gn silu', [{ shape: [2, 6, 5, 3] }, { shape: [6] }, { shape: [6] }], ([x, w, bias]) => ops.groupNorm(x!, 3, w, bias, 1e-5, true), 30);
    await agree(b, 'gn plain', [{ shape: [2, 4, 7] }], ([x]) => ops.groupNorm(x!, 2, undefined, undefined, 1e-6), 14);
    await agree(b, 'ln', [{ shape: [3, 5, 19] }, { shape: [19] }, { shape: [19] }], ([x, w, bias]) => ops.layerNorm(x!, w, bias, 1e-5), 19);
    await agree(b, 'upsample', [{ shape: [2, 3, 3, 5] }], ([x]) => ops.upsampleNearest(x!, [7, 10]), 4);
    await agree(b, 'pool', [{ shape: [2, 3, 7, 5] }], ([x]) => ops.adaptiveAvgPool2d(x!, [3, 2]), 9);
  });
}, ['webgpu']);
