// Concatenation of tensors of one dtype and rank along an axis (any dtype: a copy).
// Backward: each input's gradient is its slice of the output's gradient (a view, no copy).

import { rawArrayFor } from '../dtype.js';
import { defineOp } from '../op_definition.js';
import { formatShape, numel } from '../shape.js';

export interface ConcatParams {
  /** Non-negative axis. */
  axis: number;
}

export const concatOp = defineOp<ConcatParams>({
  name: 'concat',
  outputs(xs, { axis }) {
    const first = xs[0];
    if (!first) throw new Error('concat: no tensors');
    if (!Number.isInteger(axis) || axis < 0 || axis >= first.shape.length) throw new Error(`concat: axis ${axis} out of range for rank ${first.shape.length}`);
    for (const x of xs) {
      if (!x || x.shape.length !== first.shape.length || x.dtype !== first.dtype || x.shape.some((d, i) => i !== axis && d !== first.shape[i])) {
        throw new Error(`concat: ${x ? `${formatShape(x.shape)} (${x.dtype})` : 'a missing tensor'} does not match ${formatShape(first.shape)} (${first.dtype}) outside axis ${axis}`);
      }
    }
    const shape = [...first.shape];
    shape[axis] = xs.reduce((s, x) => s + x!.shape[axis]!, 0);
    return [{ shape, dtype: first.dtype }];
  },
  cpu(xs, { axis }) {
    const first = xs[0]!;
    const shape = [...first.shape];
    shape[axis] = xs.reduce((s, x) => s + x!.shape[axis]!, 0);
    const outer = numel(shape.slice(0, axis)), inner = numel(shape.slice(axis + 1));
    const out = rawArrayFor(first.dtype, numel(shape));
    const rowLen = shape[axis]! * inner;
    let col = 0;
    for (const x of xs) {
      const len = x!.shape[axis]! * inner;
      for (let o = 0; o < outer; o++) out.set(x!.data.subarray(o * len, (o + 1) * len), o * rowLen + col);
      col += len;
    }
    return [out];
  },
  saves: () => ({ inputs: [], outputs: [] }),
  backward({ params: { axis }, inputShapes, needsGrad }, [g]) {
    let start = 0;
    return inputShapes.map((s, i) => {
      const len = s![axis]!;
      start += len;
      return needsGrad[i] ? g!.slice(axis, start - len, start) : undefined;
    });
  },
});
