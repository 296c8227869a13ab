// The `webgpu` backend: WGSL kernels on the adapter the options' provider finds (navigator.gpu by
// default; the Node entry passes Dawn's provider).
import type { Backend } from '@cnx/tensor';
import type { CreateBackendOptions } from '../create_backend.js';
import { acquireDevice } from '../webgpu/device.js';
import { WebgpuBackend } from '../webgpu/webgpu_backend.js';

export async function create(opts: CreateBackendOptions): Promise<Backend> {
  return new WebgpuBackend(await acquireDevice(opts), {
    ...(opts.maxPooledBytes !== undefined ? { maxPooledBytes: opts.maxPooledBytes } : {}),
    ...(opts.weightDtype ? { weightDtype: opts.weightDtype } : {}),
    ...(opts.compute ? { compute: opts.compute } : {}),
  });
}
