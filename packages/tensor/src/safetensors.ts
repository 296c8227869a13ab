// Validating, lazy safetensors reader (https://github.com/huggingface/safetensors, format section).
// Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON
//   { "<name>": { "dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end] }, ...,
//     "__metadata__": { "<key>": "<string value>" } }
// then the data section; offsets are relative to its start. Every header entry is checked before any
// tensor is read (dtype, shape, byte size = numel * dtype size, range inside the data section, no two
// tensors overlapping), so a corrupt or truncated file fails at open() with an error naming the file,
// the tensor and what was expected vs found, and never returns garbage. Tensors are read one at a
// time, on demand (peak host memory stays near one tensor: DESIGN.md, "Models and weights").
// Element data is little-endian; typed-array views assume a little-endian host (every platform Node
// and browsers run on).

import type { DType, RawArray } from './dtype.js';
import type { Backend } from './backend.js';
import type { Tensor } from './tensor.js';
import { fromFloat32, toFloat32 } from './dtype.js';
import { formatShape } from './shape.js';
import { nodeFs } from './node_fs.js';
import { openRegularFile } from './model_folder_files.js';

export type SafetensorsDType = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'U8' | 'BOOL';

/** Bytes per element of each supported dtype. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = {
  F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1, BOOL: 1,
};

/** Valid safetensors dtypes this reader does not support (named in the error instead of "unknown"). */
const KNOWN_UNSUPPORTED = new Set(['F64', 'I8', 'I16', 'U16', 'U32', 'U64', 'F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F6_E2M3', 'F6_E3M2', 'F4', 'C64']);

/**
 * Largest accepted header. The Rust crate's limit is 100 MB (MAX_HEADER_SIZE in safetensors/src/
 * tensor.rs); real headers are well under 1 MB even for SDXL (~2,500 tensors).
 */
export const MAX_SAFETENSORS_HEADER_BYTES = 100_000_000;

/**
 * Most header entries (tensors + __metadata__) accepted, counted in the JSON text before it is parsed,
 * so a hostile header cannot make the reader build millions of objects (a 1,000,000-entry header took
 * 28 s and 946 MB to open). Real files hold a few thousand (SDXL's single-file checkpoint ~2,500).
 */
export const MAX_SAFETENSORS_HEADER_ENTRIES = 100_000;

/**
 * Deepest JSON nesting accepted, checked before parsing (a valid header nests 3 deep: the header
 * object, an entry, its shape; the rest is slack for specific messages about mildly malformed
 * entries). Deeper values are hostile: nesting 100,000 deep overflowed the stack.
 */
export const MAX_SAFETENSORS_HEADER_DEPTH = 8;

/** Highest tensor rank accepted (NumPy 1.x's NPY_MAXDIMS; frameworks stay far below). */
export const MAX_SAFETENSORS_RANK = 32;

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
  /** A fresh copy (byteOffset 0 of its own ArrayBuffer, so aligned for any typed-array view). */
  bytes: Uint8Array<ArrayBuffer>;
}

/** Reads `length` bytes at absolute `position` into a fresh buffer. */
type ByteReader = (position: number, length: number) => Uint8Array<ArrayBuffer>;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A JSON value for an error message, at most `max` characters. Bounded work whatever the value: it
 * walks only as far as the budget reaches (never JSON.stringify of a whole hostile value, which
 * overflowed the stack on deep nesting and copied megabytes to print 80 characters).
 */
export function describeJsonValue(v: unknown, max = 80): string {
  if (v === undefined) return 'nothing';
  let out = '';
  const full = (): boolean => out.length > max;
  const walk = (x: unknown, depth: number): void => {
    if (full()) return;
    if (x === null || typeof x !== 'object') {
      out += typeof x === 'string' ? JSON.stringify(x.length > max ? x.slice(0, max) : x) : String(JSON.stringify(x) ?? x);
      return;
    }
    if (depth >= 8) { out += Array.isArray(x) ? '[...]' : '{...}'; return; }
    if (Array.isArray(x)) {
      out += '[';
      for (let i = 0; i < x.length && !full(); i++) { if (i > 0) out += ','; walk(x[i], depth + 1); }
      out += ']';
      return;
    }
    out += '{';
    let first = true;
    for (const k in x) {
      if (full()) break;
      if (!Object.prototype.hasOwnProperty.call(x, k)) continue;
      out += `${first ? '' : ','}${JSON.stringify(k.length > max ? k.slice(0, max) : k)}:`;
      first = false;
      walk((x as Record<string, unknown>)[k], depth + 1);
    }
    out += '}';
  };
  walk(v, 0);
  return out.length > max ? `${out.slice(0, max - 3)}...` : out;
}
const describe = describeJsonValue;

/** A name from the file for an error message, clipped (hostile names can be megabytes long). */
function clip(name: string, max = 200): string {
  return name.length > max ? `${name.slice(0, max - 3)}...` : name;
}

/**
 * Check the header text's shape before JSON.parse builds it: nesting depth and the number of
 * top-level entries (colons at depth 1 outside strings), in one pass over the text. Text that is not
 * JSON passes here and fails in JSON.parse with its own message.
 */
function checkHeaderStructure(source: string, text: string): void {
  let depth = 0, entries = 0, inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) { // { [
      if (++depth > MAX_SAFETENSORS_HEADER_DEPTH) {
        throw new Error(`${source}: header nests deeper than ${MAX_SAFETENSORS_HEADER_DEPTH} levels (at byte ${i} of the header; ` +
          'a safetensors header nests 3 deep: not a safetensors file?)');
      }
    } else if (c === 0x7d || c === 0x5d) { // } ]
      depth--;
    } else if (c === 0x3a && depth === 1) { // ':' of a top-level entry
      if (++entries > MAX_SAFETENSORS_HEADER_ENTRIES) {
        throw new Error(`${source}: header has more than ${MAX_SAFETENSORS_HEADER_ENTRIES} entries (the reader's limit; ` +
          'real checkpoints hold a few thousand tensors per file)');
      }
    }
  }
}

function isSupportedDType(s: string): s is SafetensorsDType {
  return Object.prototype.hasOwnProperty.call(SAFETENSORS_DTYPE_BYTES, s);
}

/** Validate one header entry; `where` prefixes every message (file and tensor name). */
function parseEntry(where: string, v: unknown, dataStart: number, dataBytes: number): TensorInfo {
  if (!isPlainObject(v)) throw new Error(`${where}: expected an object {dtype, shape, data_offsets}, found ${describe(v)}`);
  const { dtype, shape, data_offsets: offsets } = v;
  if (dtype === undefined) throw new Error(`${where}: missing 'dtype'`);
  if (typeof dtype !== 'string') throw new Error(`${where}: 'dtype' must be a string, found ${describe(dtype)}`);
  if (!isSupportedDType(dtype)) {
    const kind = KNOWN_UNSUPPORTED.has(dtype) ? 'unsupported' : 'unknown';
    throw new Error(`${where}: ${kind} dtype '${dtype}' (supported: ${Object.keys(SAFETENSORS_DTYPE_BYTES).join(', ')})`);
  }
  if (shape === undefined) throw new Error(`${where}: missing 'shape'`);
  if (!Array.isArray(shape)) throw new Error(`${where}: 'shape' must be an array of non-negative integers, found ${describe(shape)}`);
  if (shape.length > MAX_SAFETENSORS_RANK) throw new Error(`${where}: shape has ${shape.length} dims, more than the ${MAX_SAFETENSORS_RANK} the reader accepts`);
  shape.forEach((d, i) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new Error(`${where}: shape ${describe(shape)} has dim ${i} = ${describe(d)}, expected a non-negative integer`);
    }
  });
  if (offsets === undefined) throw new Error(`${where}: missing 'data_offsets'`);
  if (!Array.isArray(offsets) || offsets.length !== 2) {
    throw new Error(`${where}: 'data_offsets' must be an array [begin, end], found ${describe(offsets)}`);
  }
  const [begin, end] = offsets as unknown[];
  for (const [label, o] of [['begin', begin], ['end', end]] as const) {
    if (typeof o !== 'number' || !Number.isSafeInteger(o) || o < 0) {
      throw new Error(`${where}: data_offsets ${label} must be a non-negative integer, found ${describe(o)}`);
    }
  }
  const b = begin as number, e = end as number;
  if (b > e) throw new Error(`${where}: data_offsets [${b}, ${e}] has begin > end`);
  const dims = shape as number[];
  let count = 1;
  for (const d of dims) count *= d;
  const expected = count * SAFETENSORS_DTYPE_BYTES[dtype];
  if (e - b !== expected) {
    throw new Error(`${where}: data_offsets [${b}, ${e}] span ${e - b} bytes, expected ${expected} = ${count} elements ` +
      `(shape ${formatShape(dims)}) x ${SAFETENSORS_DTYPE_BYTES[dtype]} bytes (${dtype})`);
  }
  if (e > dataBytes) {
    throw new Error(`${where}: data_offsets [${b}, ${e}] end past the data section of ${dataBytes} bytes (file truncated?)`);
  }
  return { dtype, shape: [...dims], begin: dataStart + b, end: dataStart + e };
}

/** Elements of raw tensor bytes as f32 (see SafetensorsFile.readFloat32). */
export function rawToFloat32(r: RawTensor): { shape: number[]; data: Float32Array } {
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

/** Non-finite elements (NaN, +-Inf) of raw float tensor bytes: how many and the first; integers have none. */
export function findNonFinite(r: RawTensor): { count: number; firstIndex: number; firstValue: number } | undefined {
  let count = 0, firstIndex = -1;
  const note = (i: number): void => { if (count++ === 0) firstIndex = i; };
  if (r.dtype === 'F32') {
    const v = new Float32Array(r.bytes.buffer);
    for (let i = 0; i < v.length; i++) if (v[i]! - v[i]! !== 0) note(i); // NaN and +-Inf give NaN
  } else if (r.dtype === 'F16' || r.dtype === 'BF16') {
    const exp = r.dtype === 'F16' ? 0x7c00 : 0x7f80; // all exponent bits set: Inf or NaN
    const v = new Uint16Array(r.bytes.buffer);
    for (let i = 0; i < v.length; i++) if ((v[i]! & exp) === exp) note(i);
  }
  if (count === 0) return undefined;
  const firstValue = rawToFloat32({ dtype: r.dtype, shape: [1], bytes: r.bytes.slice(firstIndex * SAFETENSORS_DTYPE_BYTES[r.dtype], (firstIndex + 1) * SAFETENSORS_DTYPE_BYTES[r.dtype]) }).data[0]!;
  return { count, firstIndex, firstValue };
}

export class SafetensorsFile {
  private closed = false;

  private constructor(
    /** The file path, or the name given to fromBytes(); every error message starts with it. */
    readonly source: string,
    private readonly readBytes: ByteReader,
    readonly infos: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Readonly<Record<string, string>>,
    private readonly closeFn: () => void,
  ) {}

  /**
   * Open a file: reads and validates the header now, keeps the fd for lazy tensor reads. Regular
   * files only (a FIFO is refused at once instead of blocking; model_folder_files.ts).
   */
  static open(path: string): SafetensorsFile {
    const { readSync, closeSync } = nodeFs('SafetensorsFile.open');
    const { fd, size } = openRegularFile(path, 'SafetensorsFile.open');
    try {
      const read: ByteReader = (position, length) => {
        const buf = new Uint8Array(length);
        let done = 0;
        while (done < length) {
          // readSync moves at most ~2 GiB per call; loop also covers short reads.
          const n = readSync(fd, buf, done, Math.min(length - done, 1 << 30), position + done);
          if (n === 0) throw new Error(`${path}: unexpected end of file at byte ${position + done} (wanted ${length} bytes at ${position}; file shrank?)`);
          done += n;
        }
        return buf;
      };
      return SafetensorsFile.parse(path, size, read, () => closeSync(fd));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Parse an in-memory file; `name` stands for the file in error messages. */
  static fromBytes(bytes: Uint8Array, name = '<buffer>'): SafetensorsFile {
    // Uint8Array.prototype.slice: a fresh copy even for a Node Buffer, whose own slice() is a view into
    // a shared pool (the readers below use each result's whole .buffer).
    return SafetensorsFile.parse(name, bytes.length, (p, n) => Uint8Array.prototype.slice.call(bytes, p, p + n), () => {});
  }

  private static parse(source: string, size: number, read: ByteReader, close: () => void): SafetensorsFile {
    if (size < 8) throw new Error(`${source}: file is ${size} bytes, too short for the 8-byte header length`);
    const lenBytes = read(0, 8);
    const n64 = new DataView(lenBytes.buffer).getBigUint64(0, true);
    if (n64 > BigInt(MAX_SAFETENSORS_HEADER_BYTES)) {
      throw new Error(`${source}: header length ${n64} exceeds the ${MAX_SAFETENSORS_HEADER_BYTES}-byte limit (not a safetensors file?)`);
    }
    const n = Number(n64);
    if (8 + n > size) throw new Error(`${source}: header length ${n} larger than the file (${size} bytes, ${size - 8} after the length)`);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(read(8, n));
    } catch {
      throw new Error(`${source}: header is not valid UTF-8`);
    }
    checkHeaderStructure(source, text);
    let header: unknown;
    try {
      header = JSON.parse(text);
    } catch (e) {
      throw new Error(`${source}: header is not valid JSON (${(e as Error).message}); header starts ${describe(text.slice(0, 40))}`);
    }
    if (!isPlainObject(header)) throw new Error(`${source}: header must be a JSON object, found ${describe(header)}`);

    const dataStart = 8 + n;
    const dataBytes = size - dataStart;
    const infos = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    for (const [name, v] of Object.entries(header)) {
      if (name === '__metadata__') {
        if (!isPlainObject(v)) throw new Error(`${source}: __metadata__ must be an object of string values, found ${describe(v)}`);
        for (const [k, mv] of Object.entries(v)) {
          if (typeof mv !== 'string') throw new Error(`${source}: __metadata__['${clip(k)}'] must be a string, found ${describe(mv)}`);
        }
        metadata = { ...(v as Record<string, string>) };
        continue;
      }
      infos.set(name, parseEntry(`${source}: tensor '${clip(name)}'`, v, dataStart, dataBytes));
    }

    // No two tensors may share bytes (zero-size tensors occupy none). Holes are tolerated: they cannot
    // make a tensor read garbage.
    const sorted = [...infos].filter(([, i]) => i.end > i.begin).sort((a, b) => a[1].begin - b[1].begin);
    for (let k = 1; k < sorted.length; k++) {
      const [pn, p] = sorted[k - 1]!, [cn, c] = sorted[k]!;
      if (c.begin < p.end) {
        throw new Error(`${source}: tensors '${clip(pn)}' (data_offsets [${p.begin - dataStart}, ${p.end - dataStart}]) and ` +
          `'${clip(cn)}' (data_offsets [${c.begin - dataStart}, ${c.end - dataStart}]) overlap`);
      }
    }
    return new SafetensorsFile(source, read, infos, metadata, close);
  }

  keys(): string[] { return [...this.infos.keys()]; }
  has(name: string): boolean { return this.infos.has(name); }
  info(name: string): TensorInfo {
    const i = this.infos.get(name);
    if (!i) throw new Error(`${this.source}: no tensor named '${name}' (the file has ${this.infos.size} tensors)`);
    return i;
  }

  /** The tensor's bytes, as a fresh aligned copy. */
  readRaw(name: string): RawTensor {
    if (this.closed) throw new Error(`${this.source}: read of '${name}' after close()`);
    const i = this.info(name);
    return { dtype: i.dtype, shape: [...i.shape], bytes: this.readBytes(i.begin, i.end - i.begin) };
  }

  /** Elements as f32 (F16/BF16 widened exactly, integers converted; I64 beyond 2^53 loses precision). */
  readFloat32(name: string): { shape: number[]; data: Float32Array } {
    return rawToFloat32(this.readRaw(name));
  }

  /**
   * Load a tensor onto a backend. Without `as`: F32 -> f32, F16/BF16 stay in their storage dtype,
   * integers and BOOL become f32. With `as`: converted to that dtype (f16/bf16 rounded to nearest even;
   * 'i32' requires integer data within the i32 range).
   */
  tensor(name: string, backend: Backend, as?: DType): Tensor {
    return this.rawToTensor(name, this.readRaw(name), backend, as);
  }

  /** tensor() for bytes already read with readRaw(name) (so a caller can inspect them first). */
  rawToTensor(name: string, r: RawTensor, backend: Backend, as?: DType): Tensor {
    const half = r.dtype === 'F16' ? 'f16' : r.dtype === 'BF16' ? 'bf16' : undefined;
    if (half && (as === undefined || as === half)) return backend.fromRaw(new Uint16Array(r.bytes.buffer), r.shape, half);
    if (as === 'i32') return backend.fromRaw(this.readInt32(name, r), r.shape, 'i32');
    const { shape, data } = rawToFloat32(r);
    if (as === undefined || as === 'f32') return backend.fromRaw(data, shape, 'f32');
    return backend.fromRaw(fromFloat32(data, as), shape, as);
  }

  private readInt32(name: string, r: RawTensor): Int32Array {
    const buf = r.bytes.buffer;
    switch (r.dtype) {
      case 'I32': return new Int32Array(buf);
      case 'U8': case 'BOOL': return Int32Array.from(r.bytes);
      case 'I64': {
        const src = new BigInt64Array(buf);
        const out = new Int32Array(src.length);
        for (let k = 0; k < src.length; k++) {
          const x = src[k]!;
          if (x < -2147483648n || x > 2147483647n) throw new Error(`${this.source}: tensor '${name}' element ${k} = ${x} does not fit in i32`);
          out[k] = Number(x);
        }
        return out;
      }
      default:
        throw new Error(`${this.source}: tensor '${name}' is ${r.dtype}, expected integer data for an i32 tensor`);
    }
  }

  /** Release the file descriptor; later reads throw. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeFn();
  }
}
