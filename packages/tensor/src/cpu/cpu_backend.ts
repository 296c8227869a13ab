// The CPU reference backend: host memory (typed arrays) plus running every op through its definition's
// float64 `cpu` reference (op_definition.ts), so it agrees with the definitions by construction. What the
// ops mean lives in core_ops/ and in the extension ops' definitions, not here.

import type { Backend, MemoryStats, Storage } from '../backend.js';
import { DTYPE_BYTES, fromFloat32, rawArrayFor, toFloat32, type DType, type RawArray } from '../dtype.js';
import type { HostTensor, OpDefinition, TensorMeta } from '../op_definition.js';
import { numel, type Shape } from '../shape.js';
import { Tensor } from '../tensor.js';
import type { WeightDtype } from '../weight_dtype.js';

export interface CpuStorage extends Storage {
  data: RawArray;
}

/** Offsets into storage of each element of a strided view, in row-major order. */
export function stridedOffsets(shape: Shape, strides: readonly number[], offset: number): Int32Array {
  const n = numel(shape);
  const out = new Int32Array(n);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let off = offset;
  for (let i = 0; i < n; i++) {
    out[i] = off;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      off += strides[d]!;
      if (idx[d]! < shape[d]!) break;
      off -= strides[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

export interface CpuBackendOptions {
  /** Storage dtype of model weights (weight_dtype.ts); the references decode 16-bit weights exactly. */
  weightDtype?: WeightDtype;
}

export class CpuBackend implements Backend {
  readonly name: string = 'cpu';
  readonly description: string;
  readonly weightDtype: WeightDtype;
  private live = 0;
  private peak = 0;

  constructor(opts: CpuBackendOptions = {}) {
    this.weightDtype = opts.weightDtype ?? 'f32';
    this.description = `CPU reference (float64 accumulation)${this.weightDtype === 'f32' ? '' : `, ${this.weightDtype} weights`}`;
  }

  // ------------------------------------------------------------------ memory
  /** A tensor owning `data` (no copy). */
  protected make(data: RawArray, shape: Shape, dtype: DType): Tensor {
    const storage: CpuStorage = { refs: 0, byteLength: data.length * DTYPE_BYTES[dtype], data };
    this.live += storage.byteLength;
    this.peak = Math.max(this.peak, this.live);
    return new Tensor(this, storage, dtype, shape);
  }
  zeros(shape: Shape, dtype: DType = 'f32'): Tensor {
    return this.make(rawArrayFor(dtype, numel(shape)), shape, dtype);
  }
  fromRaw(data: RawArray, shape: Shape, dtype: DType = 'f32'): Tensor {
    if (data.length !== numel(shape)) throw new Error(`fromRaw: ${data.length} elements do not fill shape [${shape.join(', ')}]`);
    return this.make(data.slice(), shape, dtype);
  }
  /** Raw storage of a tensor (the CPU backend's own accessor; views share it). */
  raw(x: Tensor): RawArray {
    return (x.storage as CpuStorage).data;
  }
  /** The elements of any view in row-major order, in its dtype: the storage itself when contiguous. */
  private dense(x: Tensor): RawArray {
    const raw = this.raw(x);
    if (x.isContiguous) return raw.length === x.size ? raw : (raw.subarray(0, x.size) as RawArray);
    const offs = stridedOffsets(x.shape, x.strides, x.offset);
    const out = rawArrayFor(x.dtype, offs.length);
    for (let i = 0; i < offs.length; i++) out[i] = raw[offs[i]!]!;
    return out;
  }
  /** f32 values of a tensor in row-major order, synchronously (a copy). */
  values(x: Tensor): Float32Array {
    const d = this.dense(x);
    return x.dtype === 'f32' ? (d as Float32Array).slice() : toFloat32(d, x.dtype);
  }
  async read(x: Tensor): Promise<Float32Array> {
    return this.values(x);
  }
  free(storage: Storage): void {
    this.live -= storage.byteLength;
    (storage as CpuStorage).data = new Float32Array(0);
  }
  memory(): MemoryStats {
    return { liveBytes: this.live, peakBytes: this.peak, pooledBytes: 0 };
  }
  resetPeak(): void {
    this.peak = this.live;
  }
  async sync(): Promise<void> {}
  destroy(): void {}

  /** `a` itself when it is a fresh array, else a copy (never a view of another tensor's storage). */
  private owned<A extends RawArray>(a: A, x: Tensor): A {
    return (a.buffer === this.raw(x).buffer ? a.slice() : a) as A;
  }
  contiguous(x: Tensor): Tensor {
    return this.make(this.owned(this.dense(x), x), x.shape, x.dtype);
  }
  cast(x: Tensor, dtype: DType): Tensor {
    const v = toFloat32(this.dense(x), x.dtype);
    return this.make(dtype === 'f32' ? this.owned(v, x) : fromFloat32(v, dtype), x.shape, dtype);
  }

  // ------------------------------------------------------------------ ops
  /** The host view of an input: its storage when contiguous, else a row-major copy. */
  host(x: Tensor): HostTensor {
    return { shape: x.shape, dtype: x.dtype, data: this.dense(x) };
  }
  run<P>(op: OpDefinition<P>, inputs: readonly (Tensor | undefined)[], params: P, outputs: readonly TensorMeta[]): Tensor[] {
    const data = op.cpu(inputs.map((x) => x && this.host(x)), params);
    if (data.length !== outputs.length || data.some((d, i) => d.length !== numel(outputs[i]!.shape))) {
      throw new Error(`${op.name}: the CPU reference returned ${data.length} array(s) of ${data.map((d) => d.length).join(', ')} elements, ` +
        `the definition's outputs are ${outputs.map((o) => `[${o.shape.join(', ')}]`).join(', ')}`);
    }
    const written = op.inPlace?.(inputs.length) ?? [];
    return outputs.map((o, i) => {
      const j = written[i];
      if (j === undefined) return this.make(data[i]!, o.shape, o.dtype);
      // in place (runOp checked: contiguous, offset 0, same shape and dtype): copy into the input's storage
      const x = inputs[j]!;
      this.raw(x).set(data[i]!, 0);
      return new Tensor(this, x.storage, o.dtype, o.shape);
    });
  }
}
