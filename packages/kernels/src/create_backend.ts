// Backend selection by name. WebGPU adapter choice is explicit and reported (see webgpu/device.ts).
import { CpuBackend, type Backend } from '@cnx/tensor';
import { WebgpuBackend } from './webgpu/webgpu_backend.js';

export type BackendName = 'cpu' | 'webgpu';

export interface CreateBackendOptions {
  /** WebGPU adapter preference: 'gpu', 'swiftshader', 'llvmpipe' (or env CNX_ADAPTER). */
  adapter?: string;
}

export async function createBackend(name: BackendName, opts: CreateBackendOptions = {}): Promise<Backend> {
  if (name === 'cpu') return new CpuBackend();
  if (name === 'webgpu') return WebgpuBackend.create(opts.adapter !== undefined ? { adapter: opts.adapter } : {});
  throw new Error(`createBackend: unknown backend '${String(name)}'; expected cpu or webgpu`);
}
