// Backends by name, as tinygrad's device lookup finds a runtime by module name: each built-in backend is
// one module under backends/ exporting `create(opts)`, listed in the typed table below; user code adds
// its own with registerBackend(). Nothing registers itself on import.

import type { Backend, WeightDtype } from '@cnx/tensor';
import type { AcquireOptions } from './webgpu/device.js';

export interface CreateBackendOptions extends AcquireOptions {
  /** WebGPU: cap of released buffers kept for reuse (buffer_pool.ts DEFAULT_MAX_POOLED_BYTES). */
  maxPooledBytes?: number;
  /**
   * Storage dtype of model weights (@cnx/tensor weight_dtype.ts): 'f16' keeps matmul / conv2d / norm
   * weights in 16 bits, widened in the kernels (any adapter; the CPU reference decodes them). Default f32.
   */
  weightDtype?: WeightDtype;
  /**
   * WebGPU: 'f16' runs the hot kernels (matmul, conv2d, attention) with f16 operands and f32 accumulation
   * where the device has `shader-f16` (f16_compute.ts); elsewhere the backend computes in f32 and its
   * description says why. Default f32. The CPU reference always computes in float64.
   */
  compute?: 'f32' | 'f16';
}

/** What a backend module exports. */
export interface BackendModule {
  create(opts: CreateBackendOptions): Backend | Promise<Backend>;
}

/** Built-in backends: name -> its module (loaded when first asked for). */
const builtIn: Readonly<Record<string, () => Promise<BackendModule>>> = {
  cpu: () => import('./backends/cpu.js'),
  wasm: () => import('./backends/wasm.js'),
  webgpu: () => import('./backends/webgpu.js'),
};

const registered = new Map<string, BackendModule['create']>();

/**
 * Make `create` available as createBackend(name). Returns a function that removes it again. A name of a
 * built-in backend is refused (a typo would otherwise silently replace the reference).
 */
export function registerBackend(name: string, create: BackendModule['create']): () => void {
  if (!/^[a-z][a-z0-9_-]*$/.test(name)) throw new Error(`registerBackend: expected a lower-case name ([a-z][a-z0-9_-]*), found '${name}'`);
  if (name in builtIn) throw new Error(`registerBackend: '${name}' is a built-in backend`);
  if (registered.has(name)) throw new Error(`registerBackend: a backend named '${name}' is already registered`);
  registered.set(name, create);
  return () => { registered.delete(name); };
}

/** Every name createBackend accepts: the built-in ones, then the registered ones. */
export function backendNames(): string[] {
  return [...Object.keys(builtIn), ...registered.keys()];
}

/** The backend called `name` (built in or registered); errors list the known names. */
export async function createBackend(name: string, opts: CreateBackendOptions = {}): Promise<Backend> {
  const own = registered.get(name);
  if (own) return own(opts);
  const load = Object.hasOwn(builtIn, name) ? builtIn[name] : undefined;
  if (!load) throw new Error(`createBackend: unknown backend '${name}'; expected one of ${backendNames().join(', ')}`);
  return (await load()).create(opts);
}
