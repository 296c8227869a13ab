// Backend selection by name. WebGPU adapter choice is explicit and reported (see webgpu/device.ts).
import { CpuBackend, type Backend } from '@cnx/tensor';
import { WasmBackend } from './wasm/wasm_backend.js';
import { WebgpuBackend } from './webgpu/webgpu_backend.js';

export type BackendName = 'cpu' | 'webgpu' | 'wasm';

export interface CreateBackendOptions {
  /** WebGPU adapter preference: 'gpu', 'swiftshader', 'llvmpipe' (or env CNX_ADAPTER). */
  adapter?: string;
}

export async function createBackend(name: BackendName, opts: CreateBackendOptions = {}): Promise<Backend> {
  if (name === 'cpu') return new CpuBackend();
  if (name === 'webgpu') return WebgpuBackend.create(opts.adapter !== undefined ? { adapter: opts.adapter } : {});
  if (name === 'wasm') return WasmBackend.create();
  throw new Error(`createBackend: unknown backend '${String(name)}'; expected cpu, webgpu or wasm`);
}
