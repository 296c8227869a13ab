// Named intermediate values. A model forward accepts an optional Trace and reports the output of each
// submodule under its state-dict path (`down_blocks.0.resnets.1`), the same names the golden cases use.
// The callee must not dispose what it reports before it returns; a tracer that wants to keep a value
// copies it (or calls keep()).

import type { Tensor } from './tensor.js';

export type Trace = (path: string, value: Tensor) => void;

/** Prefix every path reported through `trace` (a submodule reports relative to itself). */
export function subTrace(trace: Trace | undefined, prefix: string): Trace | undefined {
  return trace && ((path, value) => trace(path ? `${prefix}.${path}` : prefix, value));
}
