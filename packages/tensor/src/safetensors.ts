// safetensors reader (minimal first version; validation and the writer come next).
// Format: u64 LE header length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}},
// then the data section; offsets are relative to the data section.

import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import type { DType, RawArray } from './dtype.js';
import type { Backend } from './backend.js';
import type { Tensor } from './tensor.js';
import { toFloat32 } from './dtype.js';

export type SafetensorsDType = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'U8' | 'BOOL';

export interface TensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

export interface RawTensor {
  dtype: SafetensorsDType;
  shape: number[];
  bytes: Uint8Array;
}

export class SafetensorsFile {
  private constructor(
    readonly source: string,
    private readonly readBytes: (begin: number, end: number) => Uint8Array,
    readonly infos: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Record<string, string>,
    private readonly closeFn: () => void,
  ) {}

  static open(path: string): SafetensorsFile {
    const fd = openSync(path, 'r');
    const size = fstatSync(fd).size;
    const read = (begin: number, end: number) => {
      const buf = new Uint8Array(end - begin);
      readSync(fd, buf, 0, end - begin, begin);
      return buf;
    };
    return SafetensorsFile.parse(path, size, read, () => closeSync(fd));
  }

  static fromBytes(bytes: Uint8Array, name = '<buffer>'): SafetensorsFile {
    return SafetensorsFile.parse(name, bytes.length, (b, e) => bytes.subarray(b, e), () => {});
  }

  private static parse(source: string, size: number, read: (b: number, e: number) => Uint8Array, close: () => void): SafetensorsFile {
    const lenBytes = read(0, 8);
    const n = Number(new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(read(8, 8 + n))) as Record<string, unknown>;
    const infos = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    for (const [name, v] of Object.entries(header)) {
      if (name === '__metadata__') { metadata = v as Record<string, string>; continue; }
      const e = v as { dtype: SafetensorsDType; shape: number[]; data_offsets: [number, number] };
      infos.set(name, { dtype: e.dtype, shape: e.shape, begin: 8 + n + e.data_offsets[0], end: 8 + n + e.data_offsets[1] });
    }
    void size;
    return new SafetensorsFile(source, read, infos, metadata, close);
  }

  keys(): string[] { return [...this.infos.keys()]; }
  has(name: string): boolean { return this.infos.has(name); }
  info(name: string): TensorInfo {
    const i = this.infos.get(name);
    if (!i) throw new Error(`${this.source}: no tensor named '${name}'`);
    return i;
  }

  readRaw(name: string): RawTensor {
    const i = this.info(name);
    return { dtype: i.dtype, shape: i.shape, bytes: this.readBytes(i.begin, i.end).slice() };
  }

  /** Elements as f32 (F16/BF16 widened exactly, integers converted). */
  readFloat32(name: string): { shape: number[]; data: Float32Array } {
    const r = this.readRaw(name);
    const buf = r.bytes.buffer;
    let data: Float32Array;
    switch (r.dtype) {
      case 'F32': data = new Float32Array(buf); break;
      case 'F16': data = toFloat32(new Uint16Array(buf), 'f16'); break;
      case 'BF16': data = toFloat32(new Uint16Array(buf), 'bf16'); break;
      case 'I32': data = Float32Array.from(new Int32Array(buf)); break;
      case 'I64': data = Float32Array.from(new BigInt64Array(buf), (x) => Number(x)); break;
      case 'U8': case 'BOOL': data = Float32Array.from(r.bytes); break;
    }
    return { shape: r.shape, data };
  }

  /** Load a tensor onto a backend; F16/BF16 stay in their storage dtype unless `as` says f32. */
  tensor(name: string, backend: Backend, as?: DType): Tensor {
    const r = this.readRaw(name);
    if ((r.dtype === 'F16' || r.dtype === 'BF16') && as !== 'f32') {
      return backend.fromRaw(new Uint16Array(r.bytes.buffer) as RawArray, r.shape, r.dtype === 'F16' ? 'f16' : 'bf16');
    }
    const { shape, data } = this.readFloat32(name);
    return backend.fromRaw(data, shape, 'f32');
  }

  close(): void { this.closeFn(); }
}
