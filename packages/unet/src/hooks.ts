// Forward hooks by name: the one extension point of every model forward (PyTorch's register_forward_hook /
// register_forward_pre_hook, applied for the duration of one call instead of registered on the module).
//
//   hooks = { 'down_blocks.1': f, 'mid_block:before': g, 'down_blocks.1.resnets.0.conv2': h }
//
// A key is a state-dict module path (the module tree is the checkpoint key tree, module.ts), optionally
// followed by ':before'. Without the suffix the hook receives the module's output and returns the value
// that flows on; with it, the hook receives the module's first input. A hook returns a NEW tensor (or its
// argument unchanged, to observe); the model owns and frees both.
//
// Two layers, one map:
//  - Sites: a model names the points of its own forward where the hidden stream can be changed
//    (UNet2DConditionModel.SITES: conv_in, down_blocks.<i>, mid_block:before, mid_block, up_blocks.<i>).
//    The model applies these keys itself, because the stream there is not always a module's output: a
//    down block returns its hidden state AND its skips (the hook sees the hidden state; the skips keep
//    their values), and after conv_in the first skip keeps the raw conv_in output (ControlNeXt-SDXL).
//  - Every other key is applied by Module (withModuleHooks below): the named module's `forward` is wrapped
//    for the call and restored after it. A module whose forward fuses an epilogue the caller asked for
//    (Conv2d's residual add, Linear's activation, GroupNorm's SiLU) declares it (Module.hookEpilogue), so
//    the hook sees the module's own output, as in PyTorch, and the epilogue is applied after the hook.
// With no hooks nothing is wrapped: the forward runs exactly as without this file.

import { Tensor } from '@cnx/tensor';
import type { Module } from './module.js';

/** Receives the value at a site or module (its output, or its input with ':before') and returns what flows on. */
export type FeatureHook = (x: Tensor) => Tensor;

/** Hooks keyed by site or module path (see the header). */
export type Hooks = Readonly<Record<string, FeatureHook>>;

export const BEFORE_SUFFIX = ':before';

/** 'down_blocks.1:before' -> { path: 'down_blocks.1', before: true }. */
export function parseHookKey(key: string): { path: string; before: boolean } {
  const before = key.endsWith(BEFORE_SUFFIX);
  return { path: before ? key.slice(0, -BEFORE_SUFFIX.length) : key, before };
}

/**
 * Apply the hook at `site` (if any) to x. Returns x itself when there is none or the hook returned its
 * argument; otherwise the hook's new tensor. Disposes nothing: the caller decides who owns x.
 */
export function applySiteHook(hooks: Hooks | undefined, site: string, x: Tensor): Tensor {
  const h = hooks?.[site];
  if (!h) return x;
  const y = h(x);
  if (!(y instanceof Tensor)) throw new Error(`hook '${site}': expected the hook to return a tensor, found ${typeof y}`);
  return y;
}

/**
 * One hook map from two: where both name the same key, `first` runs, then `second` on its result (the
 * intermediate value is freed). Either may be undefined.
 */
export function composeHooks(first: Hooks | undefined, second: Hooks | undefined): Hooks | undefined {
  if (!first || Object.keys(first).length === 0) return second;
  if (!second || Object.keys(second).length === 0) return first;
  const out: Record<string, FeatureHook> = { ...first };
  for (const [k, g] of Object.entries(second)) {
    const f = first[k];
    out[k] = f
      ? (x: Tensor) => {
        const a = applySiteHook({ [k]: f }, k, x);
        const b = applySiteHook({ [k]: g }, k, a);
        if (a !== x && a !== b) a.dispose();
        return b;
      }
      : g;
  }
  return out;
}

/** Split a hook map into the keys a model handles as its own sites and the module-path keys. */
export function splitSiteHooks(hooks: Hooks | undefined, sites: ReadonlySet<string>): { sites?: Hooks; modules?: Hooks } {
  if (!hooks) return {};
  let own: Record<string, FeatureHook> | undefined, rest: Record<string, FeatureHook> | undefined;
  for (const [k, f] of Object.entries(hooks)) {
    if (typeof f !== 'function') throw new Error(`hook '${k}': expected a function (x: Tensor) => Tensor, found ${typeof f}`);
    if (sites.has(k)) (own ??= {})[k] = f;
    else (rest ??= {})[k] = f;
  }
  return { sites: own, modules: rest };
}

/** What Module.hookEpilogue returns: the arguments without the fused epilogue, and the epilogue itself. */
export interface HookEpilogue {
  args: unknown[];
  epilogue(y: Tensor): Tensor;
}

interface Installed {
  module: Module;
  /** The own `forward` property before installation (undefined: the prototype's). */
  previous: PropertyDescriptor | undefined;
  fired: boolean;
  keys: string[];
}

type ForwardFn = (...args: unknown[]) => unknown;

/**
 * Run `fn` with the module-path hooks installed on `root`'s modules (see the header); every hook must
 * fire during `fn` (a hook on a module the forward does not run through forward() is an error, not a
 * silent no-op). `sites` are listed in errors about unknown paths.
 */
export function withModuleHooks<T>(root: Module, hooks: Hooks | undefined, fn: () => T, sites: readonly string[] = []): T {
  if (!hooks || Object.keys(hooks).length === 0) return fn();
  const byModule = new Map<Module, { before?: FeatureHook; after?: FeatureHook; keys: string[] }>();
  for (const [key, hook] of Object.entries(hooks)) {
    const { path, before } = parseHookKey(key);
    let module: Module;
    try {
      module = root.getModule(path);
    } catch (e) {
      const siteText = sites.length > 0 ? `; the model's own sites are ${sites.join(', ')}` : '';
      throw new Error(`hook '${key}': ${(e as Error).message}${siteText}`);
    }
    if (typeof (module as unknown as { forward?: unknown }).forward !== 'function') {
      throw new Error(`hook '${key}': ${module.constructor.name} has no forward()`);
    }
    const entry = byModule.get(module) ?? { keys: [] };
    if ((before ? entry.before : entry.after) !== undefined) throw new Error(`hook '${key}': two hooks name the same module and side`);
    if (before) entry.before = hook;
    else entry.after = hook;
    entry.keys.push(key);
    byModule.set(module, entry);
  }
  const installed: Installed[] = [];
  try {
    for (const [module, { before, after, keys }] of byModule) {
      const record: Installed = { module, previous: Object.getOwnPropertyDescriptor(module, 'forward'), fired: false, keys };
      const inner = (module as unknown as { forward: ForwardFn }).forward;
      const label = keys.join(', ');
      const wrapped: ForwardFn = function (this: unknown, ...args: unknown[]) {
        record.fired = true;
        const input = args[0];
        let hooked = input;
        if (before) {
          if (!(input instanceof Tensor)) throw new Error(`hook '${label}': ${module.constructor.name}.forward's first argument is not a tensor`);
          hooked = applySiteHook({ [label]: before }, label, input);
        }
        let call = [hooked, ...args.slice(1)];
        const split = after ? module.hookEpilogue(call) : undefined;
        if (split) call = split.args;
        const out = inner.apply(this, call);
        let result = out;
        if (after) {
          if (!(out instanceof Tensor)) {
            throw new Error(`hook '${label}': ${module.constructor.name}.forward returns ${out === null ? 'null' : typeof out}, not a tensor; hook one of its sub-modules, or a site of the model`);
          }
          result = applySiteHook({ [label]: after }, label, out);
          if (split) {
            const e = split.epilogue(result as Tensor);
            if (result !== out && result !== e) (result as Tensor).dispose();
            result = e;
          }
          if (result !== out && out !== input && out !== hooked) out.dispose();
        }
        if (hooked !== input && hooked !== result) (hooked as Tensor).dispose();
        return result;
      };
      Object.defineProperty(module, 'forward', { value: wrapped, configurable: true, writable: true, enumerable: false });
      installed.push(record);
    }
    const result = fn();
    const silent = installed.filter((r) => !r.fired).flatMap((r) => r.keys);
    if (silent.length > 0) {
      if (result instanceof Tensor) result.dispose();
      throw new Error(`hooks ${silent.map((k) => `'${k}'`).join(', ')} did not fire: this forward does not call that module's forward()`);
    }
    return result;
  } finally {
    for (const r of installed.reverse()) {
      if (r.previous) Object.defineProperty(r.module, 'forward', r.previous);
      else delete (r.module as unknown as { forward?: unknown }).forward;
    }
  }
}
