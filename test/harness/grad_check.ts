// Gradient checks of differentiable computations through the autograd tape (@cnx/tensor autograd.ts).
//
//  - checkGradients: on the CPU reference backend, builds random awkward inputs (gridded so that the
//    finite-difference steps are exact, see finite_difference.ts), runs build() with gradients recorded,
//    backward() with a random upstream gradient, and compares every input's `.grad` with central finite
//    differences of the same forward run with gradients off (the op definitions' float64-accumulating
//    references). It also checks that the tape released everything: after the tensors of the check are
//    disposed, the backend's live bytes are back where they started.
//  - gradientsOn: forward + backward of build() on any backend, returning y and every input's gradient
//    as arrays (for WebGPU-vs-CPU agreement).
// build() runs inside a memory scope (its intermediates are disposed as soon as it returns), so these
// checks also test that the tape keeps its own references to what backward needs.

import { CpuBackend, backward, noGrad, scope, type Backend, type Tensor } from '@cnx/tensor';
import { expect } from 'vitest';
import { randomArray } from './allclose.js';
import { expectGradMatchesFd, FD_STEP, gridded } from './finite_difference.js';

export interface GradInput {
  shape: readonly number[];
  /** Values uniform in shift +- scale (default 1, 0), gridded to 2^-12. */
  scale?: number;
  shift?: number;
  /** Explicit values (gridded); overrides scale/shift. */
  data?: Float32Array;
  /** Default true; false: a constant input (no gradient checked). */
  requiresGrad?: boolean;
  /** Keep |x| >= this (kinks of relu / abs, poles of recip and log): values inside are pushed out. */
  awayFromZero?: number;
}

/** The gridded values of each input (deterministic from the input's index and the seed). */
export function inputValues(inputs: readonly GradInput[], seed = 1): Float32Array[] {
  return inputs.map((inp, i) => {
    const n = inp.shape.reduce((p, d) => p * d, 1);
    const raw = inp.data ? Float32Array.from(inp.data) : randomArray(n, seed * 101 + i * 7 + 3, inp.scale ?? 1, inp.shift ?? 0);
    const g = gridded(raw);
    const m = inp.awayFromZero;
    if (m !== undefined) for (let j = 0; j < g.length; j++) if (Math.abs(g[j]!) < m) g[j] = g[j]! < 0 ? -m - Math.abs(g[j]!) : m + g[j]!;
    return gridded(g);
  });
}

/** y and the input gradients of sum(gy * build(xs)) on `backend`. */
export async function gradientsOn(
  backend: Backend, inputs: readonly GradInput[], build: (xs: Tensor[]) => Tensor, seed = 1,
): Promise<{ y: Float32Array; gy: Float32Array; grads: (Float32Array | undefined)[] }> {
  const values = inputValues(inputs, seed);
  const xs = values.map((v, i) => {
    const t = backend.fromRaw(v, inputs[i]!.shape);
    if (inputs[i]!.requiresGrad !== false) t.requiresGrad = true;
    return t;
  });
  const y = scope(() => build(xs));
  const gyData = gridded(randomArray(y.size, seed * 31 + 17));
  const gy = backend.fromRaw(gyData, y.shape);
  backward(y, gy);
  const out = { y: await y.data(), gy: gyData, grads: await Promise.all(xs.map((x) => x.grad?.data())) };
  [y, gy, ...xs].forEach((t) => t.dispose());
  return out;
}

/**
 * Every input gradient of sum(gy * build(xs)) against finite differences on the CPU reference backend
 * (what: the name in failure messages), and the tape's memory released afterwards.
 */
export async function checkGradients(what: string, inputs: readonly GradInput[], build: (xs: Tensor[]) => Tensor, seed = 1): Promise<void> {
  const cpu = new CpuBackend();
  const before = cpu.memory().liveBytes;
  const { gy, grads } = await gradientsOn(cpu, inputs, build, seed);
  expect(cpu.memory().liveBytes, `${what}: live bytes after backward and dispose (the tape must release everything)`).toBe(before);
  const values = inputValues(inputs, seed);
  const f = (arrays: Float32Array[]): Float32Array => noGrad(() => scope(() => {
    const ts = arrays.map((a, i) => cpu.fromRaw(a, inputs[i]!.shape));
    const y = build(ts);
    return cpu.values(y);
  }));
  inputs.forEach((inp, i) => {
    if (inp.requiresGrad === false) return;
    const g = grads[i];
    if (!g) expect.fail(`${what}: input ${i} [${inp.shape.join(', ')}] got no gradient`);
    expectGradMatchesFd(`${what}: d/d input ${i} [${inp.shape.join(', ')}]`, g, f, values, gy, i);
  });
}

export { FD_STEP };
