// Memory scopes (tf.tidy-style): tensors created while a scope runs are disposed when it ends,
// except those returned from it or passed to keep(). Scopes nest. Sampling loops run each step in a
// scope so a 50-step loop does not grow memory.

import type { Tensor } from './tensor.js';

const stack: Set<Tensor>[] = [];

/** Called by the Tensor constructor. */
export function trackTensor(t: Tensor): void {
  stack[stack.length - 1]?.add(t);
}

/** Exclude a tensor from the innermost scope (it then belongs to the enclosing one, if any). */
export function keep<T extends Tensor>(t: T): T {
  const inner = stack[stack.length - 1];
  if (inner?.delete(t)) stack[stack.length - 2]?.add(t);
  return t;
}

/**
 * Exclude a tensor from every enclosing scope: long-lived state created while scopes run (an optimizer's
 * moments and flat parameter storages, gradient views), which the caller disposes explicitly.
 */
export function persist<T extends Tensor>(t: T): T {
  for (const s of stack) s.delete(t);
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

function close(own: Set<Tensor>, result: unknown): void {
  const survivors = new Set<Tensor>();
  collect(result, survivors);
  for (const t of own) if (!survivors.has(t)) t.dispose();
  const outer = stack[stack.length - 1];
  if (outer) for (const t of survivors) if (own.has(t)) outer.add(t);
}

/** Run fn; dispose every tensor it created that is not part of its result (arrays/objects are searched). */
export function scope<T>(fn: () => T): T {
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
  close(own, result);
  return result;
}

/**
 * The async form. Only for sequential use: while it awaits, tensors created by unrelated concurrent
 * code would be attributed to this scope.
 */
export async function scopeAsync<T>(fn: () => Promise<T>): Promise<T> {
  const own = new Set<Tensor>();
  stack.push(own);
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    stack.splice(stack.lastIndexOf(own), 1);
    for (const t of own) t.dispose();
    throw e;
  }
  stack.splice(stack.lastIndexOf(own), 1);
  close(own, result);
  return result;
}

/**
 * Run fn with tensor tracking suspended: tensors it creates belong to no scope (the caller owns them and
 * must dispose them). The autograd tape keeps its saved tensors and every leaf's `.grad` this way, so that
 * a user's scope closing around a forward or backward pass does not free what the tape or a parameter owns.
 */
export function untracked<T>(fn: () => T): T {
  stack.push(new Set());
  try {
    return fn();
  } finally {
    stack.pop();
  }
}
