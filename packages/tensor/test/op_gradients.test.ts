// Every differentiable core op and view method through the autograd tape, against central finite
// differences of the float64-accumulating CPU forward (test/harness/grad_check.ts; error model in
// test/harness/finite_difference.ts), on random awkward shapes: odd sizes, batch > 1, broadcast inputs,
// strided views. Each check also verifies that the tape released all its memory after backward.

import { ops, type Tensor, type UnaryOp } from '@cnx/tensor';
import { describe, it } from 'vitest';
import { checkGradients } from '../../../test/harness/grad_check.js';

describe('unary and affine gradients', () => {
  const unary: [UnaryOp, { scale?: number; shift?: number; awayFromZero?: number }][] = [
    ['neg', {}], ['abs', { awayFromZero: 0.05 }], ['exp', {}], ['log', { scale: 1, shift: 2 }], ['sqrt', { scale: 1, shift: 2 }],
    ['rsqrt', { scale: 1, shift: 2 }], ['recip', { awayFromZero: 0.5 }], ['square', {}], ['sin', { scale: 3 }], ['cos', { scale: 3 }],
    ['tanh', { scale: 3 }], ['sigmoid', { scale: 4 }], ['relu', { awayFromZero: 0.05 }], ['silu', { scale: 4 }], ['gelu', { scale: 4 }],
    ['gelu_tanh', { scale: 4 }], ['quick_gelu', { scale: 4 }],
  ];
  for (const [op, range] of unary) {
    it(op, async () => {
      await checkGradients(op, [{ shape: [3, 5], ...range }], ([x]) => ops.unary(op, x!));
    });
  }
  it('affine (strided input: a transposed view)', async () => {
    await checkGradients('affine', [{ shape: [4, 3] }], ([x]) => {
      const t = x!.transpose(0, 1);
      return ops.affine(t, -1.75, 0.5);
    });
  });
});

describe('binary gradients with broadcasting (reduced over the broadcast dims)', () => {
  const cases: [string, number[], number[]][] = [
    ['same shape', [2, 3, 5], [2, 3, 5]],
    ['row vector', [2, 3, 5], [5]],
    ['column and leading', [2, 3, 5], [3, 1]],
    ['both broadcast', [2, 1, 5], [1, 3, 1]],
  ];
  for (const op of ['add', 'sub', 'mul', 'div'] as const) {
    for (const [name, sa, sb] of cases) {
      it(`${op}, ${name}: [${sa}] and [${sb}]`, async () => {
        const b = op === 'div' ? { shape: sb, awayFromZero: 0.5 } : { shape: sb };
        await checkGradients(`${op} ${name}`, [{ shape: sa }, b], ([x, y]) => ops.binary(op, x!, y!));
      });
    }
  }
  for (const op of ['max', 'min'] as const) {
    it(`${op} with broadcasting (no ties within the step)`, async () => {
      // a in [-1, 1]; b at odd multiples of 1/8 + a small offset, never within 2h of an a value
      const a = new Float32Array(2 * 3 * 4).map((_, i) => ((i * 37) % 17) / 8 - 1);
      const b = Float32Array.from([-0.53, 0.28, 0.71, -0.09]);
      await checkGradients(op, [{ shape: [2, 3, 4], data: a }, { shape: [4], data: b }], ([x, y]) => ops.binary(op, x!, y!));
    });
  }
  it('a tensor used twice accumulates both gradients', async () => {
    await checkGradients('x * x + x', [{ shape: [3, 4] }], ([x]) => {
      const sq = ops.mul(x!, x!);
      return ops.add(sq, x!);
    });
  });
});

describe('reduction and softmax gradients', () => {
  for (const op of ['sum', 'mean'] as const) {
    it(`${op} over axes [0, 2] and all, keepDims or not`, async () => {
      await checkGradients(`${op} [0,2]`, [{ shape: [3, 4, 5] }], ([x]) => ops.reduce(op, x!, [0, 2]));
      await checkGradients(`${op} keep`, [{ shape: [3, 4, 5] }], ([x]) => ops.reduce(op, x!, [1], true));
      await checkGradients(`${op} all`, [{ shape: [3, 5] }], ([x]) => ops.reduce(op, x!));
    });
  }
  for (const op of ['max', 'min'] as const) {
    it(`${op} over an axis (distinct values)`, async () => {
      const data = new Float32Array(3 * 7).map((_, i) => ((i * 11) % 21) / 4 - 2.5);
      await checkGradients(op, [{ shape: [3, 7], data }], ([x]) => ops.reduce(op, x!, 1));
    });
  }
  it('max with a tie splits the gradient evenly', async () => {
    const { CpuBackend, backward } = await import('@cnx/tensor');
    const cpu = new CpuBackend();
    const x = cpu.fromRaw(Float32Array.from([1, 3, 3, 2]), [4]);
    x.requiresGrad = true;
    const y = ops.max(x);
    backward(y);
    const { expect } = await import('vitest');
    expect(Array.from(cpu.values(x.grad!))).toEqual([0, 0.5, 0.5, 0]);
    [x, y].forEach((t) => t.dispose());
  });
  it('softmax over the last dim (large logits) and over a middle dim', async () => {
    await checkGradients('softmax last', [{ shape: [2, 3, 7], scale: 5 }], ([x]) => ops.softmax(x!));
    await checkGradients('softmax large', [{ shape: [2, 9], scale: 4, shift: 100 }], ([x]) => ops.softmax(x!));
    await checkGradients('softmax axis 1', [{ shape: [2, 5, 3] }], ([x]) => ops.softmax(x!, 1));
  });
  it('mse loss (mean) wrt pred and target', async () => {
    await checkGradients('mse', [{ shape: [2, 3, 5] }, { shape: [2, 3, 5] }], ([p, t]) => ops.mseLoss(p!, t!));
  });
});

describe('view gradients', () => {
  it('reshape, permute, transpose, slice, chunk, unsqueeze, expand, contiguous', async () => {
    await checkGradients('views', [{ shape: [2, 3, 5] }, { shape: [5, 1] }], ([x, w]) => {
      const p = x!.permute([2, 0, 1]);              // [5, 2, 3]
      const s = p.slice(0, 1, 4);                   // [3, 2, 3]
      const [c0, c1] = s.chunk(2, 1);               // [3, 1, 3] each
      const t = c1!.transpose(0, 2);                // [3, 1, 3]
      const r = t.reshape([9]);                      // copies (non-contiguous)
      const u = r.unsqueeze(0);                      // [1, 9]
      const e = u.expand([4, 9]);                    // broadcast view
      const cc = c0!.contiguous().reshape([1, 9]);
      const sum = ops.add(e, cc);                    // [4, 9]
      const wv = w!.slice(0, 0, 4).expand([4, 9]);   // [4, 1] -> [4, 9]
      return ops.mul(sum, wv);
    });
  });
  it('concat along a middle and the last axis', async () => {
    await checkGradients('concat 1', [{ shape: [2, 3, 4] }, { shape: [2, 1, 4] }, { shape: [2, 5, 4] }],
      ([a, b, c]) => ops.concat([a!, b!, c!], 1));
    await checkGradients('concat -1 with a constant', [{ shape: [3, 2] }, { shape: [3, 5], requiresGrad: false }],
      ([a, b]) => ops.concat([a!, b!], -1));
  });
});

describe('matmul and linear gradients', () => {
  it('plain, batched, broadcast batch, transposed views as flags', async () => {
    await checkGradients('mm', [{ shape: [3, 5] }, { shape: [5, 4] }], ([a, b]) => ops.matmul(a!, b!));
    await checkGradients('bmm', [{ shape: [2, 3, 5] }, { shape: [2, 5, 4] }], ([a, b]) => ops.matmul(a!, b!));
    await checkGradients('a batched, b shared', [{ shape: [3, 2, 5] }, { shape: [5, 3] }], ([a, b]) => ops.matmul(a!, b!));
    await checkGradients('a shared, b batched', [{ shape: [2, 5] }, { shape: [3, 5, 4] }], ([a, b]) => ops.matmul(a!, b!));
    await checkGradients('transA transB', [{ shape: [2, 5, 3] }, { shape: [2, 4, 5] }],
      ([a, b]) => ops.matmul(a!.transpose(1, 2), b!.transpose(1, 2)));
    await checkGradients('transA shared b transB', [{ shape: [5, 3] }, { shape: [3, 4, 5] }],
      ([a, b]) => ops.matmul(a!.transpose(0, 1), b!.transpose(1, 2)));
  });
  it('alpha, bias, activation epilogue and residual', async () => {
    for (const activation of ['silu', 'gelu', 'gelu_tanh'] as const) { // relu's kink: covered by the unary test away from 0
      await checkGradients(`epilogue ${activation}`, [{ shape: [2, 3, 5] }, { shape: [5, 4] }, { shape: [4] }, { shape: [2, 3, 4] }],
        ([a, b, bias, res]) => ops.matmul(a!, b!, { alpha: 0.75, bias, activation, residual: res }));
    }
  });
  it('linear (torch layout weight, with and without bias)', async () => {
    await checkGradients('linear', [{ shape: [2, 3, 6] }, { shape: [5, 6] }, { shape: [5] }], ([x, w, b]) => ops.linear(x!, w!, b));
    await checkGradients('linear no bias', [{ shape: [7, 6] }, { shape: [5, 6] }], ([x, w]) => ops.linear(x!, w!));
  });
});

describe('conv2d gradients', () => {
  const conv = (name: string, x: number[], w: number[], args: Parameters<typeof ops.conv2d>[3], bias = true, residual = false) => {
    it(name, async () => {
      const inputs = [{ shape: x }, { shape: w, scale: 0.5 }];
      if (bias) inputs.push({ shape: [w[0]!] });
      await checkGradients(name, residual ? [...inputs, { shape: residualShape(x, w, args) }] : inputs, (ts: Tensor[]) =>
        ops.conv2d(ts[0]!, ts[1]!, bias ? ts[2] : undefined, { ...args, residual: residual ? ts[ts.length - 1] : undefined }));
    });
  };
  conv('3x3 stride 1 pad 1, batch 2, odd sizes', [2, 3, 5, 7], [4, 3, 3, 3], { padding: 1 });
  conv('3x3 stride 2 pad 1 (rows the forward drops)', [1, 2, 8, 7], [3, 2, 3, 3], { stride: 2, padding: 1 });
  conv('asymmetric padding (0, 1, 0, 1) + stride 2 (VAE)', [2, 2, 6, 5], [3, 2, 3, 3], { stride: 2, padding: [0, 1, 0, 1] });
  conv('groups 2, no bias', [2, 4, 5, 4], [6, 2, 3, 3], { padding: 1, groups: 2 }, false);
  conv('1x1, residual', [2, 3, 4, 3], [5, 3, 1, 1], {}, true, true);
  conv('activation silu + residual', [1, 3, 5, 5], [4, 3, 3, 3], { padding: 1, activation: 'silu' }, true, true);
});

function residualShape(x: number[], w: number[], args: Parameters<typeof ops.conv2d>[3] = {}): number[] {
  const st = typeof args.stride === 'number' ? [args.stride, args.stride] : args.stride ?? [1, 1];
  const p = args.padding ?? 0;
  const pad = typeof p === 'number' ? [p, p, p, p] : p.length === 2 ? [p[0], p[0], p[1], p[1]] : p;
  return [x[0]!, w[0]!, Math.floor((x[2]! + pad[0]! + pad[1]! - w[2]!) / st[0]!) + 1, Math.floor((x[3]! + pad[2]! + pad[3]! - w[3]!) / st[1]!) + 1];
}

describe('attention gradients (flash backward from the saved logsumexp)', () => {
  it('self-attention, 2 heads, batch 2', async () => {
    await checkGradients('self', [{ shape: [2, 5, 6] }, { shape: [2, 5, 6] }, { shape: [2, 5, 6] }], ([q, k, v]) => ops.attention(q!, k!, v!, 2));
  });
  it('cross-attention Lk != Lq, Dv != D, explicit scale', async () => {
    await checkGradients('cross', [{ shape: [1, 3, 8] }, { shape: [1, 7, 8] }, { shape: [1, 7, 6] }],
      ([q, k, v]) => ops.attention(q!, k!, v!, 2, { scale: 0.9 }));
  });
  it('causal', async () => {
    await checkGradients('causal', [{ shape: [2, 4, 3] }, { shape: [2, 4, 3] }, { shape: [2, 4, 3] }],
      ([q, k, v]) => ops.attention(q!, k!, v!, 1, { causal: true }));
  });
});

describe('normalisation gradients (from saved statistics)', () => {
  it('group norm affine, groups 3, batch 2, odd spatial', async () => {
    await checkGradients('gn', [{ shape: [2, 6, 3, 5] }, { shape: [6] }, { shape: [6] }], ([x, w, b]) => ops.groupNorm(x!, 3, w, b, 1e-5));
  });
  it('group norm + fused SiLU, offset input', async () => {
    await checkGradients('gn silu', [{ shape: [2, 4, 3, 3], scale: 0.5, shift: 2 }, { shape: [4] }, { shape: [4] }],
      ([x, w, b]) => ops.groupNorm(x!, 2, w, b, 1e-6, true));
  });
  it('group norm without affine, rank 3 input', async () => {
    await checkGradients('gn plain', [{ shape: [3, 4, 5] }], ([x]) => ops.groupNorm(x!, 1, undefined, undefined, 1e-5));
  });
  it('layer norm affine and non-affine', async () => {
    await checkGradients('ln', [{ shape: [2, 3, 7] }, { shape: [7] }, { shape: [7] }], ([x, w, b]) => ops.layerNorm(x!, w, b, 1e-5));
    await checkGradients('ln plain', [{ shape: [5, 6] }], ([x]) => ops.layerNorm(x!, undefined, undefined, 1e-6));
  });
});

describe('resampling gradients', () => {
  it('nearest upsampling: 2x and to a non-multiple size', async () => {
    await checkGradients('up 2x', [{ shape: [2, 3, 3, 4] }], ([x]) => ops.upsampleNearest(x!, [6, 8]));
    await checkGradients('up odd', [{ shape: [1, 2, 3, 5] }], ([x]) => ops.upsampleNearest(x!, [7, 8]));
  });
  it('adaptive average pooling: divisible and overlapping bins', async () => {
    await checkGradients('pool div', [{ shape: [2, 2, 6, 4] }], ([x]) => ops.adaptiveAvgPool2d(x!, [3, 2]));
    await checkGradients('pool nondiv', [{ shape: [1, 3, 7, 5] }], ([x]) => ops.adaptiveAvgPool2d(x!, [3, 2]));
  });
});
