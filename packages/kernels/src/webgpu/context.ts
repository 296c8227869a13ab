// What a kernel family needs from the WebGPU backend: allocation of output tensors, the GPU buffer
// behind a tensor, and a dispatch that caches pipelines by their WGSL source text.
//
// Binding convention for `dispatch`: binding i of group 0 is `bindings[i]` (a tensor's storage buffer,
// declared in WGSL as var<storage, read> or var<storage, read_write>); when `uniforms` is given it is
// bound at binding `bindings.length` as var<uniform>. Pipelines use layout 'auto', so every declared
// binding must be used by the shader. Tensors passed to kernels (other than the strided elementwise
// family) are contiguous with offset 0.

import type { DType, Shape, Tensor } from '@cnx/tensor';

export interface DispatchSpec {
  /** Shown in errors and GPU timestamps. */
  label: string;
  /** Complete WGSL module source; the pipeline cache key. */
  code: string;
  entryPoint?: string;
  bindings: readonly (Tensor | GPUBuffer)[];
  /** Uniform block bytes (std140-like rules are the kernel's business; pad to 16 bytes). */
  uniforms?: ArrayBuffer | ArrayBufferView;
  /** Workgroup counts; each must be <= limits.maxComputeWorkgroupsPerDimension. */
  workgroups: readonly [number, number?, number?];
}

export interface GpuContext {
  readonly device: GPUDevice;
  readonly limits: GPUSupportedLimits;
  readonly features: ReadonlySet<string>;
  /**
   * 'f16' where the backend was created with compute 'f16' and the device has `shader-f16`: the hot
   * kernels then use their f16-operand, f32-accumulation variants (f16_compute.ts). Absent: f32.
   */
  readonly computeDtype?: 'f32' | 'f16';
  /** A new contiguous tensor on the GPU (contents undefined). */
  empty(shape: Shape, dtype?: DType): Tensor;
  /** The storage buffer of a tensor of this backend. */
  buffer(t: Tensor): GPUBuffer;
  dispatch(spec: DispatchSpec): void;
}

/** Pack uniforms: each entry is ['u32' | 'i32' | 'f32', value]; padded to a multiple of 16 bytes. */
export function packUniforms(fields: readonly (readonly ['u32' | 'i32' | 'f32', number])[]): ArrayBuffer {
  const bytes = Math.max(16, Math.ceil((fields.length * 4) / 16) * 16);
  const buf = new ArrayBuffer(bytes);
  const view = new DataView(buf);
  fields.forEach(([t, v], i) => {
    if (t === 'u32') view.setUint32(i * 4, v, true);
    else if (t === 'i32') view.setInt32(i * 4, v, true);
    else view.setFloat32(i * 4, v, true);
  });
  return buf;
}

/** Split a flat workgroup count over x and y to respect maxComputeWorkgroupsPerDimension (65535 typ.). */
export function gridFor(count: number, maxPerDim = 65535): [number, number] {
  if (count <= maxPerDim) return [Math.max(count, 1), 1];
  const y = Math.ceil(count / maxPerDim);
  return [Math.ceil(count / y), y];
}
