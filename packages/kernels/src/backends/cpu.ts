// The `cpu` backend: the float64 reference (@cnx/tensor CpuBackend).
import { CpuBackend, type Backend } from '@cnx/tensor';
import type { CreateBackendOptions } from '../create_backend.js';

export function create(opts: CreateBackendOptions): Backend {
  return new CpuBackend(opts.weightDtype ? { weightDtype: opts.weightDtype } : {});
}
