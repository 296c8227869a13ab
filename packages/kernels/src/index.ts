export { createBackend, type BackendName, type CreateBackendOptions } from './create_backend.js';
export { WebgpuBackend } from './webgpu/webgpu_backend.js';
export { acquireDevice, formatAdapterReport, ADAPTER_KINDS, type AdapterKind, type AdapterReport, type AcquireOptions } from './webgpu/device.js';
export { packUniforms, gridFor, type DispatchSpec, type GpuContext } from './webgpu/context.js';
export { BufferPool, sizeClass } from './webgpu/buffer_pool.js';
