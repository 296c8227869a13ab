// Memory scopes (tf.tidy-style): tensors created while a scope runs are disposed when it ends,
// except those returned from it or passed to keep(). Scopes nest. Sampling loops run each step in a
// scope so a 50-step loop does not grow memory.
//
// Concurrency (issue 17: two generate() calls at once disposed each other's tensors, 'tensor used after
// dispose()'): the stack of open scopes belongs to an asynchronous context. scopeAsync runs its body in
// a context of its own (Node's AsyncLocalStorage, looked up lazily through process.getBuiltinModule so
// the module stays browser-safe), whose stack is the caller's stack plus the new scope; tensors made by
// code awaiting in that body go to that scope, tensors of concurrent, unrelated code to theirs. Where
// no AsyncLocalStorage exists (browsers today) there is one process-wide stack, and scopeAsync is
// only for sequential use (the pipelines serialise their own calls).

import type { Tensor } from './tensor.js';

/** The stack of open scopes of the code running now: innermost last. */
type ScopeStack = Set<Tensor>[];

interface AsyncContext {
  getStore(): ScopeStack | undefined;
  run<R>(store: ScopeStack, fn: () => R): R;
}

/** The stack outside every scopeAsync context (and the only one without AsyncLocalStorage). */
const root: ScopeStack = [];
/** undefined: not looked up yet; null: unavailable. Created at the first scopeAsync (sync scopes need none). */
let context: AsyncContext | null | undefined;

function asyncContext(): AsyncContext | null {
  if (context === undefined) {
    const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
    const hooks = proc?.getBuiltinModule?.('node:async_hooks') as { AsyncLocalStorage?: new () => AsyncContext } | undefined;
    context = hooks?.AsyncLocalStorage ? new hooks.AsyncLocalStorage() : null;
  }
  return context;
}

function current(): ScopeStack {
  return context ? context.getStore() ?? root : root;
}

/** Called by the Tensor constructor. */
export function trackTensor(t: Tensor): void {
  const stack = current();
  stack[stack.length - 1]?.add(t);
}

/** Exclude a tensor from the innermost scope (it then belongs to the enclosing one, if any). */
export function keep<T extends Tensor>(t: T): T {
  const stack = current();
  const inner = stack[stack.length - 1];
  if (inner?.delete(t)) stack[stack.length - 2]?.add(t);
  return t;
}

/**
 * Exclude a tensor from every enclosing scope: long-lived state created while scopes run (an optimizer's
 * moments and flat parameter storages, gradient views), which the caller disposes explicitly.
 */
export function persist<T extends Tensor>(t: T): T {
  for (const s of current()) s.delete(t);
  return t;
}

function collect(value: unknown, out: Set<Tensor>, seen = new Set<unknown>()): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if ((value as { storage?: unknown }).storage !== undefined && 'backend' in (value as object) && 'strides' in (value as object)) {
    out.add(value as Tensor);
    return;
  }
  for (const v of Array.isArray(value) ? value : Object.values(value as object)) collect(v, out, seen);
}

/** Dispose what `own` holds except the tensors of `result`, which move to `outer` (the enclosing scope). */
function close(own: Set<Tensor>, result: unknown, outer: Set<Tensor> | undefined): void {
  const survivors = new Set<Tensor>();
  collect(result, survivors);
  for (const t of own) if (!survivors.has(t)) t.dispose();
  if (outer) for (const t of survivors) if (own.has(t)) outer.add(t);
}

/** Run fn; dispose every tensor it created that is not part of its result (arrays/objects are searched). */
export function scope<T>(fn: () => T): T {
  const stack = current();
  const own = new Set<Tensor>();
  stack.push(own);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    stack.pop();
    for (const t of own) t.dispose();
    throw e;
  }
  stack.pop();
  close(own, result, stack[stack.length - 1]);
  return result;
}

/**
 * The async form. Its body runs in an asynchronous context of its own (see the header): concurrent
 * scopeAsync calls, and unrelated code running while the body awaits, do not see each other's scopes.
 * Without AsyncLocalStorage it falls back to the process-wide stack: sequential use only.
 */
export async function scopeAsync<T>(fn: () => Promise<T>): Promise<T> {
  const ctx = asyncContext();
  const parent = current();
  const own = new Set<Tensor>();
  const outer = (): Set<Tensor> | undefined => parent[parent.length - 1];
  if (!ctx) {
    parent.push(own);
    let result: T;
    try {
      result = await fn();
    } catch (e) {
      parent.splice(parent.lastIndexOf(own), 1);
      for (const t of own) t.dispose();
      throw e;
    }
    parent.splice(parent.lastIndexOf(own), 1);
    close(own, result, outer());
    return result;
  }
  let result: T;
  try {
    // The body's stack: the caller's open scopes (shared sets) and this one.
    result = await ctx.run([...parent, own], fn);
  } catch (e) {
    for (const t of own) t.dispose();
    throw e;
  }
  close(own, result, outer());
  return result;
}

/**
 * Run fn with tensor tracking suspended: tensors it creates belong to no scope (the caller owns them and
 * must dispose them). The autograd tape keeps its saved tensors and every leaf's `.grad` this way, so that
 * a user's scope closing around a forward or backward pass does not free what the tape or a parameter owns.
 */
export function untracked<T>(fn: () => T): T {
  const stack = current();
  stack.push(new Set());
  try {
    return fn();
  } finally {
    stack.pop();
  }
}
