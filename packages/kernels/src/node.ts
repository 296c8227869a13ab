// The Node entry of @cnx/kernels (package.json exports, condition "node"): everything of the main entry,
// with WebGPU adapters from Dawn (webgpu/device_node.ts) instead of navigator.gpu. Only this file and
// what it imports may touch Node-only modules.
/// <reference types="@webgpu/types" preserve="true" />

import { createBackend as createBackendWith, type CreateBackendOptions } from './create_backend.js';
import { acquireDevice as acquireDeviceWith, type AcquireOptions, type AcquiredDevice } from './webgpu/device.js';
import { dawnAdapters } from './webgpu/device_node.js';
import type { Backend } from '@cnx/tensor';

export * from './index.js';
export { dawnAdapters } from './webgpu/device_node.js';

/** createBackend with Dawn's adapters unless opts.provider says otherwise. */
export function createBackend(name: string, opts: CreateBackendOptions = {}): Promise<Backend> {
  return createBackendWith(name, { provider: dawnAdapters, ...opts });
}

/** acquireDevice with Dawn's adapters unless opts.provider says otherwise. */
export function acquireDevice(opts: AcquireOptions = {}): Promise<AcquiredDevice> {
  return acquireDeviceWith({ provider: dawnAdapters, ...opts });
}
