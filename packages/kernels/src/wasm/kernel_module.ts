// The fast CPU backend's WebAssembly module: every kernel family emitted into one module that imports
// its memory, built once per engine (relaxed-SIMD FMA and atomics chosen by the feature probe) and
// instantiated by every thread of the pool on the same memory.

import { emitAttentionKernels } from './attention_kernels.js';
import { emitConvKernels } from './conv_kernels.js';
import type { EmitOptions } from './emit_util.js';
import { emitElementwiseKernels } from './elementwise_kernels.js';
import { emitEpilogueKernels } from './epilogue_kernels.js';
import { emitGemmKernels, GEMM_MR, GEMM_NR } from './gemm_kernels.js';
import { emitNormKernels } from './norm_kernels.js';
import { ModuleBuilder } from './wasm_binary.js';
import { emitWinogradKernels } from './winograd_kernels.js';

export interface KernelModuleOptions extends EmitOptions {
  /** Shared memory (threads) or a plain one. */
  shared: boolean;
  maximumPages: number;
}

/** The module's bytes and the names of its exported (args, task) kernels. */
export function buildKernelModule(o: KernelModuleOptions): { bytes: Uint8Array<ArrayBuffer>; kernels: string[] } {
  const m = new ModuleBuilder({ module: 'env', name: 'memory', initialPages: 1, maximumPages: o.maximumPages, shared: o.shared });
  const gemm = emitGemmKernels(m, o);
  emitConvKernels(m);
  emitWinogradKernels(m, o, gemm, GEMM_MR, GEMM_NR);
  emitEpilogueKernels(m);
  emitNormKernels(m);
  emitElementwiseKernels(m);
  emitAttentionKernels(m, o, gemm);
  return { bytes: m.bytes(), kernels: m.exportedNames() };
}
