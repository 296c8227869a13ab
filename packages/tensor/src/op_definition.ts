// Ops as definitions. Each op is ONE object that says everything about it: its input checks and output
// shapes/dtypes, its float64 CPU reference (which defines what the op means), implementations for other
// backends keyed by backend name, and its backward (the autograd issue fills that slot). A backend is
// memory management plus `run(op, ...)`; an op that a package outside @cnx/tensor defines (ControlNeXt's
// cross normalisation, GEGLU, a user's fused op) is an object like any core op, with its own reference and
// WGSL, so adding one edits neither this package nor a backend class.
//
// Models of this design: candle's CustomOp (candle-core custom_op.rs: one trait with cpu_fwd, cuda_fwd,
// metal_fwd and bwd) and jax-js's small Backend (src/backend.ts).
//
// runOp() is the one path every op takes: it checks the inputs (same backend, the definition's checks),
// gives the backend contiguous inputs unless the op reads strided views itself, and verifies the shapes of
// what the backend returns against the definition.

import { recordOp } from './autograd.js';
import type { Backend } from './backend.js';
import type { DType, RawArray } from './dtype.js';
import { gradState } from './grad_state.js';
import { formatShape, shapesEqual, type Shape } from './shape.js';
import type { Tensor } from './tensor.js';

/** Shape and dtype: what input checks read and output specs give. */
export interface TensorMeta {
  readonly shape: Shape;
  readonly dtype: DType;
}

/**
 * A contiguous row-major host array: what a CPU reference reads. `data` is read-only for the reference
 * (it may be the backend's own storage); its length is the product of `shape`.
 */
export interface HostTensor extends TensorMeta {
  readonly data: RawArray;
}

/**
 * What backward receives (autograd.ts). The tensors are the tape's own views of what the definition's
 * `saves` asked for (all inputs and outputs by default; undefined where not saved or absent); outputs
 * include the hidden ones that `recordParams` added (saved statistics). `params` are the params the
 * forward ran with (after recordParams).
 */
export interface BackwardContext<P> {
  readonly inputs: readonly (Tensor | undefined)[];
  readonly outputs: readonly (Tensor | undefined)[];
  readonly params: P;
  /** needsGrad[i]: input i requires a gradient (others may be left undefined). */
  readonly needsGrad: readonly boolean[];
  /** Shape of every input (undefined for an absent optional input), saved or not. */
  readonly inputShapes: readonly (Shape | undefined)[];
}

/**
 * Gradients of the inputs from the gradients of the outputs (undefined = zero / not needed). Runs with
 * gradients off inside a memory scope: temporaries need no dispose; return NEW tensors (views are fine),
 * one per input, each of the input's shape.
 */
export type BackwardFn<P> = (ctx: BackwardContext<P>, gradOutputs: readonly (Tensor | undefined)[]) => (Tensor | undefined)[];

/** Which inputs and outputs (by index) backward reads; an omitted list means all of them. */
export interface SavedForBackward {
  readonly inputs?: readonly number[];
  readonly outputs?: readonly number[];
}

/**
 * An implementation of an op on one backend. `backend` is the backend instance itself (the WebGPU one is a
 * GpuContext); inputs are laid out as the definition's `inputLayout` says; returns the outputs in order.
 */
export type OpKernel<P, B = any> = (backend: B, inputs: readonly (Tensor | undefined)[], params: P) => Tensor[];

export interface OpDefinition<P = unknown> {
  /** Unique name; extension ops are prefixed with their package ('controlnext.cross_norm'). */
  readonly name: string;
  /**
   * 'contiguous' (default): every input arrives contiguous with offset 0. 'strided': inputs arrive as the
   * views the caller made (broadcast strides of 0, permutations), for ops whose kernels index strides.
   */
  readonly inputLayout?: 'contiguous' | 'strided';
  /**
   * Validate inputs and params; return each output's shape and dtype. Errors name the op, what was
   * expected and what was found. Runs before any work, so a bad call allocates nothing.
   */
  outputs(inputs: readonly (TensorMeta | undefined)[], params: P): TensorMeta[];
  /**
   * The reference: plain loops, float64 accumulation (JS numbers), one rounding to the output dtype on
   * store. Receives contiguous inputs (strided ones materialised); returns one NEW raw array per output
   * (never an input's array: the backend takes ownership).
   */
  cpu(inputs: readonly (HostTensor | undefined)[], params: P): RawArray[];
  /** Implementations on other backends, by backend name ('webgpu', 'wasm'). The CPU backend runs `cpu`. */
  readonly kernels?: Readonly<Record<string, OpKernel<P> | undefined>>;
  /**
   * Reverse mode: input gradients from output gradients. An op without one can still run on inputs that
   * require gradients; backward() fails only if a gradient actually reaches it.
   */
  readonly backward?: BackwardFn<P>;
  /**
   * In-place ops (optimizer updates, gradient clipping): `inPlace(inputCount)[i] = j` says output i is the
   * new content of input j, written into that input's storage, so every view of it (a parameter a module
   * holds, a gradient view) sees the update; undefined entries are fresh outputs. The CPU reference still
   * returns one new array per output (the backend copies it into place); other backends write in place
   * and return a view of the input. runOp refuses inputs written in place that are not contiguous with
   * offset 0 (a contiguous copy would lose the write) and checks that the backend returned views of them.
   * In-place ops have no backward: they run outside the autograd tape.
   */
  readonly inPlace?: (inputCount: number) => readonly (number | undefined)[];
  /**
   * The params the forward runs with while recorded for backward (e.g. `stats: true`, so that backward
   * reads the saved statistics instead of recomputing them). Outputs beyond those of the caller's params
   * are hidden from the caller and kept for backward.
   */
  readonly recordParams?: (params: P) => P;
  /** What backward reads, given which inputs need gradients (default: every input and output). */
  readonly saves?: (needsGrad: readonly boolean[], params: P) => SavedForBackward;
}

/** Identity with the type checked: `export const myOp = defineOp<MyParams>({ ... })`. */
export function defineOp<P>(def: OpDefinition<P>): OpDefinition<P> {
  return def;
}

/** The backend the inputs share; errors name the op when there is none or they differ. */
export function backendOf(op: string, inputs: readonly (Tensor | undefined)[]): Backend {
  let backend: Backend | undefined;
  for (const x of inputs) {
    if (!x) continue;
    if (!backend) backend = x.backend;
    else if (x.backend !== backend) throw new Error(`${op}: inputs live on different backends (${backend.name}, ${x.backend.name})`);
  }
  if (!backend) throw new Error(`${op}: no tensor input`);
  return backend;
}

/**
 * Run `op` on the inputs' backend and return its outputs (owned by the caller). While gradients are
 * recorded (autograd.ts) and an input requires one, the op is recorded on the tape.
 */
export function runOp<P>(op: OpDefinition<P>, inputs: readonly (Tensor | undefined)[], params: NoInfer<P>): Tensor[] {
  return gradState.recording && !op.inPlace ? recordOp(op, inputs, params) : executeOp(op, inputs, params);
}

/** runOp without recording: check, lay the inputs out, run on the backend, verify the outputs. */
export function executeOp<P>(op: OpDefinition<P>, inputs: readonly (Tensor | undefined)[], params: NoInfer<P>): Tensor[] {
  const backend = backendOf(op.name, inputs);
  const specs = op.outputs(inputs.map((x) => x && { shape: x.shape, dtype: x.dtype }), params);
  const written = inPlaceTargets(op, inputs, specs);
  const laid = op.inputLayout === 'strided' ? inputs : inputs.map((x) => (x && !x.isContiguous ? backend.contiguous(x) : x));
  let outs: Tensor[];
  try {
    outs = backend.run(op, laid, params, specs);
  } finally {
    laid.forEach((x, i) => { if (x && x !== inputs[i]) x.dispose(); });
  }
  if (outs.length !== specs.length || outs.some((t, i) => !shapesEqual(t.shape, specs[i]!.shape) || t.dtype !== specs[i]!.dtype)) {
    const got = outs.map((t) => `${t.dtype} ${formatShape(t.shape)}`).join(', ');
    outs.forEach((t) => t.dispose());
    throw new Error(`${op.name} on ${backend.name}: the backend returned [${got}], the definition says ` +
      `[${specs.map((s) => `${s.dtype} ${formatShape(s.shape)}`).join(', ')}]`);
  }
  const notInPlace = written.findIndex((j, i) => j !== undefined && outs[i]!.storage !== inputs[j]!.storage);
  if (notInPlace >= 0) {
    outs.forEach((t) => t.dispose());
    throw new Error(`${op.name} on ${backend.name}: output ${notInPlace} must be written into input ${written[notInPlace]}'s storage ` +
      '(an in-place op), the backend returned a new tensor');
  }
  return outs;
}

/** The input each output overwrites (in-place ops), checked against the specs; [] for other ops. */
function inPlaceTargets<P>(op: OpDefinition<P>, inputs: readonly (Tensor | undefined)[], specs: readonly TensorMeta[]): readonly (number | undefined)[] {
  if (!op.inPlace) return [];
  const targets = op.inPlace(inputs.length);
  targets.forEach((j, i) => {
    if (j === undefined) return;
    const x = inputs[j];
    const spec = specs[i];
    if (!x || !spec) throw new Error(`${op.name}: in-place output ${i} names input ${j}, which ${x ? 'has no output spec' : 'is missing'}`);
    if (!x.isContiguous) {
      throw new Error(`${op.name}: input ${j} is written in place, so it must be contiguous with offset 0; found ` +
        `${formatShape(x.shape)} strides ${formatShape(x.strides)} offset ${x.offset}`);
    }
    if (!shapesEqual(x.shape, spec.shape) || x.dtype !== spec.dtype) {
      throw new Error(`${op.name}: output ${i} overwrites input ${j} (${x.dtype} ${formatShape(x.shape)}) but is ${spec.dtype} ${formatShape(spec.shape)}`);
    }
  });
  return targets;
}

/** runOp for an op with one output. */
export function runOp1<P>(op: OpDefinition<P>, inputs: readonly (Tensor | undefined)[], params: NoInfer<P>): Tensor {
  return runOp(op, inputs, params)[0]!;
}

// ---------------------------------------------------------------- helpers for definitions' checks

/** Throws unless every given input is f32. */
export function expectF32(op: string, inputs: readonly (TensorMeta | undefined)[], names?: readonly string[]): void {
  inputs.forEach((x, i) => {
    if (x && x.dtype !== 'f32') throw new Error(`${op}: expected f32 ${names?.[i] ?? `input ${i}`}, found ${x.dtype} ${formatShape(x.shape)}`);
  });
}

/** Throws unless the input exists with the given rank; `what` describes it ('input [N, C, H, W]'). */
export function expectRank(op: string, x: TensorMeta | undefined, rank: number, what: string): TensorMeta {
  if (!x) throw new Error(`${op}: missing ${what}`);
  if (x.shape.length !== rank) throw new Error(`${op}: expected ${what} of rank ${rank}, found ${formatShape(x.shape)}`);
  return x;
}

/** Throws unless an optional per-channel vector (weight, bias) is [n]. */
export function expectVector(op: string, name: string, x: TensorMeta | undefined, n: number): void {
  if (x && (x.shape.length !== 1 || x.shape[0] !== n)) throw new Error(`${op}: expected ${name} [${n}], found ${formatShape(x.shape)}`);
}

/** f32 output specs of the given shapes. */
export function f32(...shapes: Shape[]): TensorMeta[] {
  return shapes.map((shape) => ({ shape, dtype: 'f32' as const }));
}
