// Gradients of the view methods of Tensor that are not themselves views: expand (sum the gradient over
// the broadcast dims) and slice (place the gradient into zeros of the full shape). Used by the view
// recording in tensor.ts; they run inside backward (gradients off), through the core ops, so they work on
// every backend.

import { concatOp } from './core_ops/concat.js';
import { reduceOp } from './core_ops/reduce.js';
import { runOp1 } from './op_definition.js';
import { formatShape, type Shape } from './shape.js';
import type { Tensor } from './tensor.js';

/**
 * g [...to] summed down to `from` (the shape before an expand): over the leading dims expand added and
 * over the dims where `from` has size 1 and `to` does not. A new tensor (a view of g when nothing is summed).
 */
export function sumToShape(g: Tensor, from: Shape): Tensor {
  const to = g.shape;
  const lead = to.length - from.length;
  if (lead < 0) throw new Error(`sumToShape: gradient ${formatShape(to)} has lower rank than ${formatShape(from)}`);
  const axes: number[] = [];
  for (let i = 0; i < to.length; i++) {
    if (i < lead || (from[i - lead] === 1 && to[i] !== 1)) axes.push(i);
  }
  if (axes.length === 0) return g.reshape(from);
  const r = runOp1(reduceOp, [g], { op: 'sum', axes });
  const out = r.reshape(from);
  r.dispose();
  return out;
}

/** The gradient of x.slice(axis, start, start + len): g (len along `axis`) placed into zeros of `full`. */
export function padSlice(g: Tensor, full: Shape, axis: number, start: number): Tensor {
  const len = g.shape[axis]!;
  const after = full[axis]! - start - len;
  if (start === 0 && after === 0) return g.reshape(full);
  const parts: Tensor[] = [];
  const zeros = (n: number) => {
    const s = [...full];
    s[axis] = n;
    return g.backend.zeros(s);
  };
  if (start > 0) parts.push(zeros(start));
  parts.push(g);
  if (after > 0) parts.push(zeros(after));
  try {
    return runOp1(concatOp, parts, { axis });
  } finally {
    for (const p of parts) if (p !== g) p.dispose();
  }
}
