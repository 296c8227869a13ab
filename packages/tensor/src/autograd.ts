// Reverse-mode autograd: a tape of nodes recorded while gradients are enabled, backward() over it in
// reverse recording order, noGrad regions, detach (Tensor.detach), and gradient checkpointing.
// Semantics follow PyTorch's (torch.autograd): leaves are tensors with requiresGrad and no producer;
// backward accumulates into their `.grad` until the caller clears it (zeroGrad); the graph is freed by
// backward (retain_graph=False) or when nothing can reach it any more.
//
// Recording. runOp (op_definition.ts) checks one boolean, gradState.recording (grad_state.ts). When it is
// set and an input requires a gradient, recordOp runs the op through its definition's autograd hooks:
//  - `recordParams(params)`: the params the forward runs with while recorded (group norm and layer norm:
//    `stats: true`; attention: the logsumexp). Outputs beyond those the caller's params give are HIDDEN:
//    the node keeps them for backward, the caller never sees them;
//  - `saves(needsGrad, params)`: which inputs and outputs backward reads (default all); only those are kept.
// The view methods of Tensor (reshape, permute, transpose, slice, chunk, expand, unsqueeze, contiguous)
// record themselves the same way (recordView), so ops.binary's broadcast expand sums its gradient back
// over the broadcast dims, a slice's gradient is placed into zeros, and so on.
//
// Ownership. The tape never relies on the caller's tensors staying alive: every tensor a node saves is
// its OWN view (Tensor.detach(), one more reference on the storage), created outside every memory scope
// (scope.ts untracked), so user code and scopes dispose their tensors exactly as without autograd. A node
// is reference-counted by the live tensors it produced (their `gradFn`) and by the unfreed nodes that
// consumed them; when the count reaches zero (every such tensor disposed without a backward) the node frees
// what it saved and releases its inputs' nodes. backward() frees each node right after running it (its
// saved tensors are gone before the earlier nodes run, which bounds the peak), and a second backward over
// the same graph is an error. Leaf gradients (`.grad`) are owned by their leaf, outside every scope.
//
// backward(roots, grads) runs the nodes reachable from the roots in reverse recording order (a valid
// topological order, since a node is recorded after the nodes that made its inputs). Each node's backward
// runs with gradients off inside a memory scope, so backward functions need not dispose their
// temporaries; the gradients they return are checked against the inputs' shapes (an error names the op).
// Double backward (gradients of gradients) is not supported: backward functions are not recorded.
//
// Checkpointing. checkpoint(fn, inputs) runs fn WITHOUT recording (nothing inside is kept) and records one
// node whose backward re-runs fn with recording on, from detached copies of the inputs, and runs a nested
// backward through that fresh subgraph: parameters used inside fn get their gradients directly, the
// inputs' gradients are returned. A block's activations therefore exist only while its own backward runs
// (torch.utils.checkpoint, reentrant form; fn must be deterministic: no dropout / RNG in these models).
// Whether the forward touched anything that requires a gradient (an input, or a parameter fn closes over)
// is observed while it runs (gradState.probing), so a block whose input is plain data but whose weights
// are trained is recorded too.

import { binaryOp } from './core_ops/elementwise.js';
import { gradState, setGradEnabled } from './grad_state.js';
import { executeOp, type BackwardContext, type BackwardFn, type OpDefinition, type TensorMeta } from './op_definition.js';
import { scope, untracked } from './scope.js';
import { formatShape, shapesEqual, type Shape } from './shape.js';
import type { Tensor } from './tensor.js';

export { isGradEnabled, setGradEnabled } from './grad_state.js';

/** Where a tensor sits on the tape: output `index` of `node`. */
export interface GradFn {
  readonly node: TapeNode;
  readonly index: number;
}

/** Where the gradient of a node's input goes: another node's output, or a leaf's `.grad`. */
type Edge = { node: TapeNode; index: number; leaf?: undefined } | { leaf: Tensor; node?: undefined };

let nextNodeId = 0;

/** One recorded op, view or checkpointed block. */
export class TapeNode {
  readonly id = nextNodeId++;
  /** Live tensors with gradFn on this node + unfreed nodes with an edge to it (+ a running backward's hold). */
  refs = 0;
  /** Saved tensors disposed (by backward, or when the last reference went): backward through it is impossible. */
  freed = false;

  constructor(
    /** The op's name, for messages ('conv2d', 'view:permute', 'checkpoint'). */
    readonly name: string,
    readonly ctx: BackwardContext<unknown>,
    readonly backward: BackwardFn<unknown> | undefined,
    /** Per input: where its gradient goes (undefined: it does not require one). */
    readonly edges: readonly (Edge | undefined)[],
    readonly outputShapes: readonly Shape[],
  ) {}

  /** Dispose the saved tensors; idempotent. Does not touch the edges (see release()). */
  freeSaved(): void {
    if (this.freed) return;
    this.freed = true;
    for (const t of this.ctx.inputs) t?.dispose();
    for (const t of this.ctx.outputs) t?.dispose();
  }
}

/** Drop one reference on a node; a node nobody references frees itself and releases its inputs' nodes. */
function release(node: TapeNode): void {
  const stack = [node];
  while (stack.length) {
    const n = stack.pop()!;
    if (--n.refs > 0) continue;
    if (n.freed) continue;
    n.freeSaved();
    for (const e of n.edges) if (e?.node) stack.push(e.node);
  }
}

/** Called by Tensor.dispose for a tensor with a gradFn. */
export function releaseGradFn(fn: GradFn): void {
  release(fn.node);
}

/** A view of t owned by the tape (outside every scope). */
function saveView(t: Tensor): Tensor {
  return untracked(() => t.detach());
}

/** The edge of an input that requires a gradient (its node gains a reference). */
function edgeOf(x: Tensor): Edge {
  const fn = x.gradFn;
  if (fn) {
    // A node already freed by a backward() may be linked to (torch allows it): backward() fails only if it
    // actually reaches it.
    fn.node.refs++;
    return { node: fn.node, index: fn.index };
  }
  return { leaf: x };
}

/** Make `outs` the outputs of `node` (they require gradients and point at it). */
function attach(node: TapeNode, outs: readonly Tensor[]): void {
  outs.forEach((t, index) => {
    t.gradFn = { node, index };
    t.requiresGrad = true;
    node.refs++;
  });
}

/**
 * The recording path of runOp (op_definition.ts calls it when gradState.recording is set). Runs the op
 * (with its recordParams when an input requires a gradient) and records a node.
 */
export function recordOp<P>(op: OpDefinition<P>, inputs: readonly (Tensor | undefined)[], params: P): Tensor[] {
  let needs = false;
  for (const x of inputs) if (x?.requiresGrad) { needs = true; break; }
  if (!needs) return executeOp(op, inputs, params);
  if (gradState.probing > 0) {
    gradState.probeSawGrad = true;
    return withoutRecording(() => executeOp(op, inputs, params));
  }
  const runParams = op.recordParams ? op.recordParams(params) : params;
  const visible = runParams === params ? -1 : op.outputs(inputs.map((x) => x && { shape: x.shape, dtype: x.dtype }), params).length;
  const outs = withoutRecording(() => executeOp(op, inputs, runParams));
  const shown = visible < 0 ? outs : outs.slice(0, visible);
  const needsGrad = inputs.map((x) => x?.requiresGrad === true);
  const spec = op.saves?.(needsGrad, runParams);
  const keepIn = spec?.inputs, keepOut = spec?.outputs;
  const savedInputs = inputs.map((x, i) => (x && (!keepIn || keepIn.includes(i)) ? saveView(x) : undefined));
  const savedOutputs = outs.map((t, i) => (!keepOut || keepOut.includes(i) ? saveView(t) : undefined));
  // Hidden outputs were only made for backward: the node's views keep them, the originals go.
  for (let i = shown.length; i < outs.length; i++) outs[i]!.dispose();
  const ctx: BackwardContext<P> = {
    inputs: savedInputs, outputs: savedOutputs, params: runParams, needsGrad,
    inputShapes: inputs.map((x) => x?.shape),
  };
  const node = new TapeNode(op.name, ctx as BackwardContext<unknown>, op.backward as BackwardFn<unknown> | undefined,
    inputs.map((x) => (x?.requiresGrad ? edgeOf(x) : undefined)), shown.map((t) => t.shape));
  attach(node, shown);
  return shown;
}

/**
 * Record a view method (tensor.ts): `out` was made from `x` (which requires a gradient); `grad` maps
 * out's gradient to x's. Views save nothing.
 */
export function recordView(kind: string, x: Tensor, out: Tensor, grad: (g: Tensor) => Tensor): void {
  if (gradState.probing > 0) {
    gradState.probeSawGrad = true;
    return;
  }
  recordFunction(`view:${kind}`, [x], [out], (_ctx, [g]) => [grad(g!)], { saveInputs: false });
}

export interface RecordFunctionOptions {
  /** Keep views of the inputs for backward (ctx.inputs); default true. */
  saveInputs?: boolean;
  /** Keep views of the outputs for backward (ctx.outputs); default false. */
  saveOutputs?: boolean;
}

/**
 * Record a custom differentiable function whose outputs were already computed: `backward` receives the
 * context (saved inputs / outputs as asked) and the outputs' gradients and returns the inputs'. Does
 * nothing unless gradients are recorded and an input requires one. For composite functions with a
 * hand-written backward (ops.cast, checkpoint) and user code.
 */
export function recordFunction(
  name: string, inputs: readonly (Tensor | undefined)[], outputs: readonly Tensor[],
  backward: BackwardFn<undefined>, opts: RecordFunctionOptions = {},
): void {
  if (!gradState.recording || !inputs.some((x) => x?.requiresGrad)) return;
  if (gradState.probing > 0) {
    gradState.probeSawGrad = true;
    return;
  }
  const ctx: BackwardContext<undefined> = {
    inputs: inputs.map((x) => (x && opts.saveInputs !== false ? saveView(x) : undefined)),
    outputs: outputs.map((t) => (opts.saveOutputs ? saveView(t) : undefined)),
    params: undefined,
    needsGrad: inputs.map((x) => x?.requiresGrad === true),
    inputShapes: inputs.map((x) => x?.shape),
  };
  const node = new TapeNode(name, ctx as BackwardContext<unknown>, backward as BackwardFn<unknown>,
    inputs.map((x) => (x?.requiresGrad ? edgeOf(x) : undefined)), outputs.map((t) => t.shape));
  attach(node, outputs);
}

/** fn with recording off: kernels that call view methods on their (gradient-requiring) inputs record nothing. */
function withoutRecording<T>(fn: () => T): T {
  if (!gradState.recording) return fn();
  const prev = setGradEnabled(false);
  try {
    return fn();
  } finally {
    setGradEnabled(prev);
  }
}

// ---------------------------------------------------------------- grad mode

/** Run fn with gradients off (nothing is recorded; torch.no_grad). Nests; restores the previous mode. */
export function noGrad<T>(fn: () => T): T {
  const prev = setGradEnabled(false);
  try {
    return fn();
  } finally {
    setGradEnabled(prev);
  }
}

/** Run fn with gradients on, also inside a noGrad region (torch.enable_grad). */
export function enableGrad<T>(fn: () => T): T {
  const prev = setGradEnabled(true);
  try {
    return fn();
  } finally {
    setGradEnabled(prev);
  }
}

/** Dispose and clear the `.grad` of each tensor (optimizer.zero_grad(set_to_none=True)). */
export function zeroGrad(tensors: Iterable<Tensor>): void {
  for (const t of tensors) {
    t.grad?.dispose();
    t.grad = undefined;
  }
}

// ---------------------------------------------------------------- backward

/** Add g (owned, consumed) into leaf.grad (owned by the leaf, outside every scope). */
function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (leaf.isDisposed) {
    g.dispose();
    throw new Error(`backward: a leaf ${formatShape(leaf.shape)} that requires a gradient was disposed before backward()`);
  }
  const prev = leaf.grad;
  leaf.grad = untracked(() => (prev ? addGrad(prev, g) : g.contiguous()));
  g.dispose();
  prev?.dispose();
}

/** a + b for two gradients of one tensor (same shape; either may be a strided view), as a new tensor. */
function addGrad(a: Tensor, b: Tensor): Tensor {
  return executeOp(binaryOp, [a, b], { op: 'add' as const })[0]!;
}

/** A tensor the caller owns that is the same object as none of `taken` (a fresh view when it is). */
function distinct(t: Tensor, taken: Set<Tensor>): Tensor {
  const r = taken.has(t) ? t.detach() : t;
  taken.add(r);
  return r;
}

/**
 * Reverse-mode differentiation: gradients of the roots (weighted by `grads`: the upstream gradient of
 * each root, default ones for a root of one element) wrt every leaf that requires a gradient, ADDED into
 * the leaves' `.grad`. The graph behind the roots is freed (a second backward over it is an error).
 */
export function backward(roots: Tensor | readonly Tensor[], grads?: Tensor | readonly (Tensor | undefined)[]): void {
  const rs = Array.isArray(roots) ? (roots as readonly Tensor[]) : [roots as Tensor];
  const gs = grads === undefined ? [] : Array.isArray(grads) ? (grads as readonly (Tensor | undefined)[]) : [grads as Tensor];
  if (gs.length > rs.length) throw new Error(`backward: ${gs.length} gradients for ${rs.length} root(s)`);
  const prevMode = setGradEnabled(false);
  try {
    runBackward(rs, gs);
  } finally {
    setGradEnabled(prevMode);
  }
}

function runBackward(roots: readonly Tensor[], grads: readonly (Tensor | undefined)[]): void {
  // Seeds: an owned gradient per root.
  const seeds: { root: Tensor; g: Tensor }[] = [];
  for (let i = 0; i < roots.length; i++) {
    const root = roots[i]!;
    if (!root.requiresGrad) throw new Error(`backward: root ${root.toString()} does not require a gradient (nothing recorded produced it)`);
    const given = grads[i];
    let g: Tensor;
    if (given) {
      if (!shapesEqual(given.shape, root.shape)) throw new Error(`backward: gradient ${formatShape(given.shape)} does not match root ${formatShape(root.shape)}`);
      g = given.detach();
    } else {
      if (root.size !== 1) throw new Error(`backward: a root of ${root.size} elements ${formatShape(root.shape)} needs an explicit gradient`);
      g = root.backend.fromRaw(Float32Array.of(1), root.shape);
    }
    seeds.push({ root, g });
  }
  // The nodes reachable from the roots, held for the duration (refcounting must not free them early).
  const reachable = new Set<TapeNode>();
  const stack: TapeNode[] = [];
  for (const { root } of seeds) if (root.gradFn) stack.push(root.gradFn.node);
  while (stack.length) {
    const n = stack.pop()!;
    if (reachable.has(n)) continue;
    if (n.freed) {
      seeds.forEach((s) => s.g.dispose());
      throw new Error(`backward: the graph through '${n.name}' was already freed (a previous backward() ran through it, ` +
        'or every tensor it produced was disposed)');
    }
    reachable.add(n);
    for (const e of n.edges) if (e?.node) stack.push(e.node);
  }
  for (const n of reachable) n.refs++;
  const order = [...reachable].sort((a, b) => b.id - a.id);
  const pending = new Map<TapeNode, (Tensor | undefined)[]>();
  const addInto = (edge: Edge, g: Tensor) => {
    if (edge.leaf) return accumulateLeaf(edge.leaf, g);
    let slot = pending.get(edge.node);
    if (!slot) pending.set(edge.node, slot = new Array<Tensor | undefined>(edge.node.outputShapes.length).fill(undefined));
    const prev = slot[edge.index];
    if (!prev) slot[edge.index] = g;
    else {
      slot[edge.index] = addGrad(prev, g);
      prev.dispose();
      g.dispose();
    }
  };
  try {
    for (const { root, g } of seeds) addInto(root.gradFn ? { node: root.gradFn.node, index: root.gradFn.index } : { leaf: root }, g);
    seeds.length = 0;
    for (const node of order) {
      const gOuts = pending.get(node);
      pending.delete(node);
      if (gOuts?.some((g) => g !== undefined)) {
        try {
          for (const gIn of runNode(node, gOuts)) if (gIn) addInto(gIn.edge, gIn.g);
        } finally {
          gOuts.forEach((g) => g?.dispose());
        }
      }
      node.freeSaved();
    }
  } finally {
    seeds.forEach((s) => s.g.dispose());
    for (const slot of pending.values()) slot.forEach((g) => g?.dispose());
    for (const n of order) {
      n.freeSaved();
      release(n);
    }
  }
}

/** Run one node's backward: the gradients of its inputs that require one, each with its edge. */
function runNode(node: TapeNode, gOuts: readonly (Tensor | undefined)[]): ({ edge: Edge; g: Tensor } | undefined)[] {
  if (!node.backward) {
    throw new Error(`backward: '${node.name}' has no backward (an input of it requires a gradient; detach() it if it is a constant)`);
  }
  const gIns = scope(() => node.backward!(node.ctx, gOuts));
  const taken = new Set<Tensor>();
  for (const g of gOuts) if (g) taken.add(g);
  for (const t of node.ctx.inputs) if (t) taken.add(t);
  for (const t of node.ctx.outputs) if (t) taken.add(t);
  const out: ({ edge: Edge; g: Tensor } | undefined)[] = [];
  const owned: Tensor[] = [];
  try {
    node.edges.forEach((edge, i) => {
      const g = gIns[i];
      if (!edge || !g) return;
      const want = node.ctx.inputShapes[i]!;
      if (!shapesEqual(g.shape, want)) {
        throw new Error(`backward of '${node.name}': the gradient of input ${i} is ${formatShape(g.shape)}, the input is ${formatShape(want)}`);
      }
      const mine = distinct(g, taken);
      owned.push(mine);
      out.push({ edge, g: mine });
    });
  } catch (e) {
    owned.forEach((t) => t.dispose());
    throw e;
  } finally {
    // Returned gradients nobody asked for (inputs that need none).
    for (const g of gIns) if (g && !taken.has(g)) g.dispose();
  }
  return out;
}

// ---------------------------------------------------------------- checkpointing

/**
 * Gradient checkpointing: fn(...inputs) runs without keeping anything for backward (inside a memory
 * scope: only its outputs survive); backward re-runs it with recording on (see the header). fn must be
 * deterministic and return new tensors. Outside a recorded region (gradients off, or nothing requires
 * one) it is just fn(...inputs).
 */
export function checkpoint(fn: (...xs: any[]) => Tensor, inputs: readonly (Tensor | undefined)[]): Tensor;
export function checkpoint(fn: (...xs: any[]) => Tensor[], inputs: readonly (Tensor | undefined)[]): Tensor[];
export function checkpoint(fn: (...xs: (Tensor | undefined)[]) => Tensor | Tensor[], inputs: readonly (Tensor | undefined)[]): Tensor | Tensor[];
export function checkpoint(fn: (...xs: (Tensor | undefined)[]) => Tensor | Tensor[], inputs: readonly (Tensor | undefined)[]): Tensor | Tensor[] {
  if (!gradState.recording || gradState.probing > 0) return fn(...inputs);
  const outer = gradState.probeSawGrad;
  gradState.probing++;
  gradState.probeSawGrad = inputs.some((x) => x?.requiresGrad === true);
  let result: Tensor | Tensor[];
  let saw: boolean;
  try {
    // fn's temporaries go with the scope: nothing but its outputs outlives the forward.
    result = scope(() => fn(...inputs));
  } finally {
    gradState.probing--;
    saw = gradState.probeSawGrad;
    gradState.probeSawGrad = outer;
  }
  if (!saw) return result;
  const single = !Array.isArray(result);
  // An output that is an input (fn returned it unchanged) or any tensor made outside fn gets a view of
  // its own, which the node can own.
  const outs = (single ? [result as Tensor] : (result as Tensor[])).map((t) => (inputs.includes(t) || t.gradFn ? t.detach() : t));
  const shapes = outs.map((t) => t.shape);
  const ctx: BackwardContext<undefined> = {
    inputs: inputs.map((x) => x && saveView(x)), outputs: outs.map(() => undefined), params: undefined,
    needsGrad: inputs.map((x) => x?.requiresGrad === true), inputShapes: inputs.map((x) => x?.shape),
  };
  const node = new TapeNode('checkpoint', ctx as BackwardContext<unknown>, (c, gOuts) => recomputeBackward(fn, c, gOuts, shapes),
    inputs.map((x) => (x?.requiresGrad ? edgeOf(x) : undefined)), shapes);
  attach(node, outs);
  return single ? outs[0]! : outs;
}

/** The backward of a checkpoint node: recompute fn with recording, then a nested backward through it. */
function recomputeBackward(
  fn: (...xs: (Tensor | undefined)[]) => Tensor | Tensor[], ctx: BackwardContext<unknown>, gOuts: readonly (Tensor | undefined)[],
  shapes: readonly Shape[],
): (Tensor | undefined)[] {
  const xs = ctx.inputs.map((x, i) => {
    if (!x) return undefined;
    const d = x.detach();
    if (ctx.needsGrad[i]) d.requiresGrad = true;
    return d;
  });
  try {
    const r = enableGrad(() => fn(...xs));
    const outs = Array.isArray(r) ? r : [r];
    try {
      if (outs.length !== shapes.length || outs.some((t, i) => !shapesEqual(t.shape, shapes[i]!))) {
        throw new Error(`checkpoint: the recomputation returned [${outs.map((t) => formatShape(t.shape)).join(', ')}], ` +
          `the forward [${shapes.map(formatShape).join(', ')}] (fn must be deterministic)`);
      }
      const roots: Tensor[] = [], grads: Tensor[] = [];
      outs.forEach((t, i) => {
        const g = gOuts[i];
        if (g && t.requiresGrad) { roots.push(t); grads.push(g); }
      });
      if (roots.length) backward(roots, grads);
      return xs.map((x) => {
        const g = x?.grad;
        if (x) x.grad = undefined;
        return g;
      });
    } finally {
      outs.forEach((t) => t.dispose());
    }
  } finally {
    xs.forEach((x) => x?.dispose());
  }
}

/** TensorMeta of a tensor (for definitions' checks). */
export function metaOf(x: Tensor | undefined): TensorMeta | undefined {
  return x && { shape: x.shape, dtype: x.dtype };
}
