// Reductions: sum / mean / max / min over a set of axes (kept as size-1 dims), and the row softmax.
// Backward: sum -> the gradient broadcast back (a stride-0 view, no copy); mean -> the same divided by the
// reduced count; max / min -> the gradient to the elements equal to the result, split evenly among ties
// (torch.amax / amin); softmax -> softmax_backward from the saved output.

import type { ReduceOp } from '../backend.js';
import { compareOp, softmaxBackwardOp } from '../grad_ops/elementwise_backward.js';
import { defineOp, expectF32, f32, runOp1, type OpDefinition } from '../op_definition.js';
import { formatShape, numel } from '../shape.js';
import { affineOp, binaryOp } from './elementwise.js';

export interface ReduceParams {
  op: ReduceOp;
  /** Sorted, unique, non-negative axes. */
  axes: readonly number[];
}

/** Reduce over `axes`, keeping them as size-1 dims; max/min propagate NaN (torch.amax). */
export const reduceOp: OpDefinition<ReduceParams> = defineOp<ReduceParams>({
  name: 'reduce',
  inputLayout: 'strided',
  outputs([x], p) {
    expectF32(p.op, [x]);
    const rank = x!.shape.length;
    p.axes.forEach((a, i) => {
      if (!Number.isInteger(a) || a < 0 || a >= rank || (i > 0 && a <= p.axes[i - 1]!)) {
        throw new Error(`${p.op}: expected sorted unique axes in [0, ${rank}), found ${formatShape(p.axes)} for ${formatShape(x!.shape)}`);
      }
    });
    return f32(x!.shape.map((d, i) => (p.axes.includes(i) ? 1 : d)));
  },
  cpu([x], { op, axes }) {
    const shape = x!.shape;
    const v = x!.data as Float32Array;
    // Visit the input once in row-major order; each element goes to the output cell of its kept dims.
    const outShape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const outStrides: number[] = new Array(shape.length);
    let s = 1;
    for (let i = shape.length - 1; i >= 0; i--) { outStrides[i] = axes.includes(i) ? 0 : s; s *= outShape[i]!; }
    const acc = new Float64Array(numel(outShape)).fill(op === 'max' ? -Infinity : op === 'min' ? Infinity : 0);
    const idx = new Array<number>(shape.length).fill(0);
    let o = 0;
    for (let i = 0; i < v.length; i++) {
      const e = v[i]!;
      if (op === 'max') acc[o] = e > acc[o]! || Number.isNaN(e) ? e : acc[o]!;
      else if (op === 'min') acc[o] = e < acc[o]! || Number.isNaN(e) ? e : acc[o]!;
      else acc[o] = acc[o]! + e;
      for (let d = shape.length - 1; d >= 0; d--) {
        idx[d]!++;
        o += outStrides[d]!;
        if (idx[d]! < shape[d]!) break;
        o -= outStrides[d]! * shape[d]!;
        idx[d] = 0;
      }
    }
    const len = numel(axes.map((a) => shape[a]!));
    return [Float32Array.from(acc, (a) => (op === 'mean' ? a / len : a))];
  },
  saves: (_, p) => (p.op === 'max' || p.op === 'min' ? {} : { inputs: [], outputs: [] }),
  backward({ inputs: [x], outputs: [y], params: { op, axes }, inputShapes }, [g]) {
    const shape = inputShapes[0]!;
    if (op === 'sum') return [g!.expand(shape)];
    if (op === 'mean') {
      const n = numel(axes.map((a) => shape[a]!));
      return [runOp1(affineOp, [g!], { mul: 1 / n, add: 0 }).expand(shape)];
    }
    const mask = runOp1(compareOp, [x!, y!.expand(shape)], { op: 'eq' });
    const count = runOp1(reduceOp, [mask], { op: 'sum', axes });
    const share = runOp1(binaryOp, [g!, count], { op: 'div' });
    return [runOp1(binaryOp, [mask, share.expand(shape)], { op: 'mul' })];
  },
});

/** Softmax over the last dim, numerically stable (the row max subtracted). */
export const softmaxOp: OpDefinition<Record<string, never>> = defineOp<Record<string, never>>({
  name: 'softmax',
  outputs([x]) {
    expectF32('softmax', [x]);
    if (x!.shape.length === 0) throw new Error('softmax: expected rank >= 1, found a scalar');
    return f32(x!.shape);
  },
  cpu([x]) {
    const v = x!.data as Float32Array;
    const D = x!.shape[x!.shape.length - 1]!;
    const out = new Float32Array(v.length);
    const e = new Float64Array(D);
    for (let r = 0; r < v.length / D; r++) {
      let m = -Infinity;
      for (let j = 0; j < D; j++) m = Math.max(m, v[r * D + j]!);
      let s = 0;
      for (let j = 0; j < D; j++) s += e[j] = Math.exp(v[r * D + j]! - m);
      for (let j = 0; j < D; j++) out[r * D + j] = e[j]! / s;
    }
    return [out];
  },
  saves: () => ({ inputs: [] }),
  backward({ outputs: [y] }, [g]) {
    return [runOp1(softmaxBackwardOp, [y, g], {})];
  },
});
