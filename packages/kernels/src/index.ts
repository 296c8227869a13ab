// The main entry: browser-safe (no Node module reachable). Node code gets src/node.ts through the
// package's "node" export condition, which adds Dawn's adapters.
// The WebGPU types (GPUDevice, GPUBuffer, ...) in this package's declarations come from @webgpu/types (a
// dependency); the directive is kept in dist/index.d.ts so that consumers get them without configuring "types".
/// <reference types="@webgpu/types" preserve="true" />
export { backendNames, createBackend, registerBackend, type BackendModule, type CreateBackendOptions } from './create_backend.js';
export { WebgpuBackend, type WebgpuBackendOptions } from './webgpu/webgpu_backend.js';
export { compileProgressPrinter, watchCompiles, type CompileProgress } from './webgpu/compile_progress.js';
export type { CompileStatus } from './webgpu/pipeline_cache.js';
export { coreKernels, type WebgpuKernel } from './webgpu/core_kernels.js';
export { gradKernels } from './webgpu/grad_kernels.js';
export {
  acquireDevice, browserAdapters, formatAdapterReport, ADAPTER_KINDS, type AcquiredDevice, type AdapterCandidate, type AdapterKind,
  type AdapterProvider, type AdapterReport, type AcquireOptions,
} from './webgpu/device.js';
export { packUniforms, gridFor, type DispatchSpec, type GpuContext } from './webgpu/context.js';
export { BufferPool, sizeClass } from './webgpu/buffer_pool.js';
// Kernel families (webgpu-kernels-b): called by WebgpuBackend; exported for kernel tests and benchmarks.
export * as conv2dKernel from './conv2d.js';
export * as normKernels from './norm.js';
export * as resampleKernels from './resample.js';
// Kernel families (webgpu-kernels-a): called by WebgpuBackend; exported for kernel tests and benchmarks.
export * as matmulKernel from './matmul.js';
export * as matmulNaiveKernel from './matmul_naive.js';
export * as attentionKernel from './attention.js';
export * as wgslMath from './wgsl_math.js';
export * as wgslMoments from './wgsl_moments.js';
// f16 compute with f32 accumulation (issue 16): shared by the f16 variants of matmul, conv2d, attention.
export * as f16Compute from './f16_compute.js';
// Backward kernel families and the optimizer (autograd issue, bwd-a).
export * as normBackwardKernels from './norm_backward.js';
export * as conv2dBackwardKernel from './conv2d_backward.js';
export * as elementwiseBackwardKernels from './elementwise_backward.js';
export * as resampleBackwardKernels from './resample_backward.js';
export * as sumSquaresKernels from './sum_squares.js';
export * as mseLossKernels from './mse_loss.js';
export * as adamwKernels from './adamw.js';
// Backward kernel families (autograd issue): called by the op definitions' backward; exported for tests.
export * as attentionBackwardKernel from './attention_backward.js';
// The fast CPU backend (WebAssembly SIMD, f32, worker threads): packages/kernels/src/wasm/.
export { WasmBackend } from './wasm/wasm_backend.js';
export { WasmRuntime, type WasmRuntimeOptions, type WinogradMode } from './wasm/runtime.js';
export { detectWasmFeatures, type WasmFeatures } from './wasm/features.js';
export * as wasmOps from './wasm/wasm_ops.js';
