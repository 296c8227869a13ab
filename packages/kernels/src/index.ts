export { createBackend, type BackendName, type CreateBackendOptions } from './create_backend.js';
export { WebgpuBackend } from './webgpu/webgpu_backend.js';
export { acquireDevice, formatAdapterReport, ADAPTER_KINDS, type AdapterKind, type AdapterReport, type AcquireOptions } from './webgpu/device.js';
export { packUniforms, gridFor, type DispatchSpec, type GpuContext } from './webgpu/context.js';
export { BufferPool, sizeClass } from './webgpu/buffer_pool.js';
// Kernel families (webgpu-kernels-b): called by WebgpuBackend; exported for kernel tests and benchmarks.
export * as conv2dKernel from './conv2d.js';
export * as normKernels from './norm.js';
export * as crossNormKernel from './cross_norm.js';
export * as resampleKernels from './resample.js';
// Kernel families (webgpu-kernels-a): called by WebgpuBackend; exported for kernel tests and benchmarks.
export * as matmulKernel from './matmul.js';
export * as matmulNaiveKernel from './matmul_naive.js';
export * as attentionKernel from './attention.js';
export * as diffusionKernels from './diffusion.js';
export * as wgslMath from './wgsl_math.js';
// Backward kernel families (autograd issue): called by the op definitions' backward; exported for tests.
export * as attentionBackwardKernel from './attention_backward.js';
export * as crossNormBackwardKernel from './cross_norm_backward.js';
export * as gegluBackwardKernel from './geglu_backward.js';
