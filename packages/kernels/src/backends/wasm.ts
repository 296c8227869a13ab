// The `wasm` backend: the fast CPU path, f32 WebAssembly SIMD kernels on worker threads over shared
// memory (wasm/wasm_backend.ts). Thread count: CNX_WASM_THREADS, else the hardware's parallelism.
import type { Backend } from '@cnx/tensor';
import type { CreateBackendOptions } from '../create_backend.js';
import { WasmBackend } from '../wasm/wasm_backend.js';

export function create(_opts: CreateBackendOptions): Promise<Backend> {
  return WasmBackend.create();
}
