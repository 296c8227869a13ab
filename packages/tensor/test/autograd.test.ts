// The autograd tape's mechanics (packages/tensor/src/autograd.ts) on the CPU reference backend: gradient
// accumulation and zeroGrad, noGrad / enableGrad nesting, detach, ownership (memory scopes and user
// disposes around a recorded forward), freeing (after backward, and without backward when every output
// is disposed), flat memory over many steps, checkpointing (same gradients, less kept between forward and
// backward, parameters reached through closures, nesting), and the error messages.

import {
  CpuBackend, backward, checkpoint, defineOp, enableGrad, f32, isGradEnabled, noGrad, ops, runOp1, scope, zeroGrad, type Tensor,
} from '@cnx/tensor';
import { describe, expect, it } from 'vitest';
import { randomArray } from '../../../test/harness/allclose.js';

const cpu = new CpuBackend();
const tensor = (shape: number[], seed: number, scale = 1) => cpu.fromRaw(randomArray(shape.reduce((a, b) => a * b, 1), seed, scale), shape);
const param = (shape: number[], seed: number, scale = 0.5) => {
  const t = tensor(shape, seed, scale);
  t.requiresGrad = true;
  return t;
};
const values = (t: Tensor | undefined) => Array.from(cpu.values(t!));

/** A two-layer MLP with a group norm: loss = mse(linear2(silu(groupnorm(linear1(x)))), target). */
function mlpLoss(x: Tensor, target: Tensor, w1: Tensor, b1: Tensor, w2: Tensor): Tensor {
  return scope(() => {
    const h = ops.linear(x, w1, b1);
    const n = ops.groupNorm(h.reshape([h.shape[0]!, h.shape[1]!, 1]), 2, undefined, undefined, 1e-5, true);
    const y = ops.linear(n.reshape([h.shape[0]!, h.shape[1]!]), w2);
    return ops.mseLoss(y, target);
  });
}

describe('autograd tape', () => {
  it('accumulates into .grad across backward calls until zeroGrad', () => {
    const w = param([3, 4], 1), x = tensor([5, 4], 2);
    const run = () => {
      const y = ops.linear(x, w);
      const l = ops.sum(y);
      backward(l);
      [y, l].forEach((t) => t.dispose());
    };
    run();
    const once = values(w.grad);
    run();
    values(w.grad).forEach((v, i) => expect(v).toBeCloseTo(2 * once[i]!, 5));
    zeroGrad([w]);
    expect(w.grad).toBeUndefined();
    run();
    expect(values(w.grad)).toEqual(once);
    [w, x].forEach((t) => t.dispose());
  });

  it('noGrad records nothing; enableGrad nests inside it; the mode is restored after a throw', () => {
    const w = param([2, 2], 3);
    const y = noGrad(() => ops.scale(w, 2));
    expect(y.requiresGrad).toBe(false);
    expect(y.gradFn).toBeUndefined();
    const z = noGrad(() => enableGrad(() => ops.scale(w, 2)));
    expect(z.requiresGrad).toBe(true);
    expect(() => noGrad(() => { throw new Error('boom'); })).toThrow('boom');
    expect(isGradEnabled()).toBe(true);
    [w, y, z].forEach((t) => t.dispose());
  });

  it('detach cuts the graph', () => {
    const w = param([4], 4);
    const d = w.detach();
    expect(d.requiresGrad).toBe(false);
    const y = ops.mul(w, d); // d/dw (w * const) = const
    const l = ops.sum(y);
    backward(l);
    expect(values(w.grad)).toEqual(values(w));
    [w, d, y, l].forEach((t) => t.dispose());
  });

  it('keeps its own references: a scope disposing every intermediate does not break backward', () => {
    const base = cpu.memory().liveBytes;
    const w1 = param([6, 4], 5), b1 = param([6], 6), w2 = param([3, 6], 7);
    const x = tensor([5, 4], 8), target = tensor([5, 3], 9);
    const l = mlpLoss(x, target, w1, b1, w2);
    backward(l);
    for (const p of [w1, b1, w2]) expect(values(p.grad).some((v) => v !== 0)).toBe(true);
    [w1, b1, w2, x, target, l].forEach((t) => t.dispose());
    expect(cpu.memory().liveBytes).toBe(base);
  });

  it('frees a recorded graph nobody runs backward through once its outputs are disposed', () => {
    const w = param([8, 8], 10), x = tensor([4, 8], 11);
    const base = cpu.memory().liveBytes;
    const y = scope(() => ops.silu(ops.linear(ops.silu(ops.linear(x, w)), w)));
    expect(cpu.memory().liveBytes).toBeGreaterThan(base + y.size * 4); // the tape holds activations
    y.dispose();
    expect(cpu.memory().liveBytes).toBe(base);
    [w, x].forEach((t) => t.dispose());
  });

  it('a second backward over a freed graph is an error naming the op', () => {
    const w = param([3], 12);
    const y = ops.exp(w);
    const l = ops.sum(y);
    backward(l);
    expect(() => backward(l)).toThrow(/already freed/);
    const z = ops.mul(y, y); // y may still be used (e.g. for logging); a backward that reaches its graph fails
    const s = ops.sum(z);
    expect(() => backward(s)).toThrow(/graph through 'unary' was already freed/);
    [w, y, l, z, s].forEach((t) => t.dispose());
  });

  it('errors: non-scalar root without a gradient, root that requires none, op without backward, disposed leaf', () => {
    const w = param([3], 13);
    const y = ops.exp(w);
    expect(() => backward(y)).toThrow(/needs an explicit gradient/);
    const c = tensor([1], 14);
    expect(() => backward(c)).toThrow(/does not require a gradient/);
    const noBackward = defineOp<Record<string, never>>({
      name: 'test.no_backward',
      outputs: ([x]) => f32(x!.shape),
      cpu: ([x]) => [Float32Array.from(x!.data as Float32Array)],
    });
    const n = runOp1(noBackward, [w], {});
    const s = ops.sum(n);
    expect(() => backward(s)).toThrow(/'test.no_backward' has no backward/);
    const v = param([2], 15);
    const sv = ops.sum(v);
    v.dispose();
    expect(() => backward(sv)).toThrow(/disposed before backward/);
    [w, y, c, n, s, sv].forEach((t) => t.dispose());
    const p = param([1], 16), e = ops.exp(p);
    expect(() => { e.requiresGrad = false; }).toThrow(/only leaves/);
    [p, e].forEach((t) => t.dispose());
  });

  it('memory stays flat over 50 training-like steps (forward, backward, zeroGrad)', () => {
    const base = cpu.memory().liveBytes;
    const w1 = param([16, 8], 17), b1 = param([16], 18), w2 = param([4, 16], 19);
    const x = tensor([6, 8], 20), target = tensor([6, 4], 21);
    let after: number | undefined;
    for (let step = 0; step < 50; step++) {
      zeroGrad([w1, b1, w2]);
      const l = mlpLoss(x, target, w1, b1, w2);
      backward(l);
      l.dispose();
      const live = cpu.memory().liveBytes;
      if (after === undefined) after = live;
      expect(live).toBe(after);
    }
    zeroGrad([w1, b1, w2]);
    [w1, b1, w2, x, target].forEach((t) => t.dispose());
    expect(cpu.memory().liveBytes).toBe(base);
  });
});

describe('checkpoint', () => {
  const block = (w: Tensor, b: Tensor) => (x: Tensor) => {
    const h = ops.linear(x, w, b);
    const n = ops.layerNorm(h, undefined, undefined, 1e-5);
    return ops.silu(n);
  };

  it('gives the gradients of the plain forward, keeping only the block inputs between forward and backward', () => {
    const w1 = param([32, 16], 22), b1 = param([32], 23), w2 = param([16, 32], 24), b2 = param([16], 25);
    const x = param([9, 16], 26);
    const plainGrads = (useCheckpoint: boolean) => {
      zeroGrad([w1, b1, w2, b2, x]);
      const base = cpu.memory().liveBytes;
      const run = (f: (t: Tensor) => Tensor, t: Tensor) => (useCheckpoint ? checkpoint(f, [t]) : scope(() => f(t)));
      const h = run(block(w1, b1), x);
      const y = run(block(w2, b2), h);
      h.dispose();
      const l = ops.sum(y);
      const held = cpu.memory().liveBytes - base;
      backward(l);
      [y, l].forEach((t) => t.dispose());
      expect(cpu.memory().liveBytes - base).toBe([w1, b1, w2, b2, x].reduce((s, p) => s + p.size * 4, 0)); // the .grads only
      return { held, grads: [w1, b1, w2, b2, x].map((p) => values(p.grad)) };
    };
    const plain = plainGrads(false), ckpt = plainGrads(true);
    expect(ckpt.grads).toEqual(plain.grads);
    expect(ckpt.held).toBeLessThan(plain.held / 2);
    zeroGrad([w1, b1, w2, b2, x]);
    [w1, b1, w2, b2, x].forEach((t) => t.dispose());
  });

  it('records a block whose input needs no gradient but whose parameters do, and nests', () => {
    const base = cpu.memory().liveBytes;
    const w = param([8, 8], 27), b = param([8], 28);
    const x = tensor([3, 8], 29);
    const ref = (() => {
      const l = scope(() => ops.sum(block(w, b)(block(w, b)(x))));
      backward(l);
      l.dispose();
      const g = [values(w.grad), values(b.grad)];
      zeroGrad([w, b]);
      return g;
    })();
    const outer = checkpoint((t: Tensor) => {
      const inner = checkpoint(block(w, b), [t]);
      const r = block(w, b)(inner);
      inner.dispose();
      return r;
    }, [x]);
    expect(outer.requiresGrad).toBe(true);
    const l = ops.sum(outer);
    backward(l);
    values(w.grad).forEach((v, i) => expect(v).toBeCloseTo(ref[0]![i]!, 5));
    values(b.grad).forEach((v, i) => expect(v).toBeCloseTo(ref[1]![i]!, 5));
    [outer, l].forEach((t) => t.dispose());
    zeroGrad([w, b]);
    [w, b, x].forEach((t) => t.dispose());
    expect(cpu.memory().liveBytes).toBe(base);
  });

  it('is a plain call when nothing requires a gradient or gradients are off', () => {
    const x = tensor([2, 3], 30);
    const y = checkpoint((t: Tensor) => ops.exp(t), [x]);
    expect(y.requiresGrad).toBe(false);
    const p = param([2, 3], 31);
    const z = noGrad(() => checkpoint((t: Tensor) => ops.exp(t), [p]));
    expect(z.requiresGrad).toBe(false);
    [x, y, p, z].forEach((t) => t.dispose());
  });
});
