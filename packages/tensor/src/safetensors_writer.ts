// safetensors writer, producing files the Rust crate (huggingface/safetensors, safetensors/src/tensor.rs
// `prepare` / `serialize_to_file`) would: the JSON header padded with spaces to a multiple of 8 bytes,
// so the data section starts 8-byte aligned, and data laid out largest element size first so that every
// tensor is naturally aligned in the file. Header keys are sorted by name (`__metadata__` first).
// writeSafetensors is atomic: it writes a temporary file in the target directory and renames it over
// the target, so a reader never sees a half-written file and an error leaves nothing behind.

import { SAFETENSORS_DTYPE_BYTES, type SafetensorsDType } from './safetensors.js';
import { formatShape, numel } from './shape.js';
import { nodeFs, nodePath } from './node_fs.js';

/** The typed array that holds each dtype's elements (F16/BF16 as bit patterns, BOOL as 0/1 bytes). */
export interface SafetensorsDataFor {
  F32: Float32Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  I64: BigInt64Array;
  I32: Int32Array;
  U8: Uint8Array;
  BOOL: Uint8Array;
}

export type SafetensorsEntry = {
  [D in SafetensorsDType]: { dtype: D; shape: readonly number[]; data: SafetensorsDataFor[D] };
}[SafetensorsDType];

const ARRAY_TYPE: Readonly<Record<SafetensorsDType, abstract new (...args: never[]) => ArrayBufferView>> = {
  F32: Float32Array, F16: Uint16Array, BF16: Uint16Array, I64: BigInt64Array, I32: Int32Array,
  U8: Uint8Array, BOOL: Uint8Array,
};

interface Layout {
  /** 8-byte length + padded JSON header. */
  head: Uint8Array;
  /** Tensor bytes in file order. */
  pieces: Uint8Array[];
  totalBytes: number;
}

function planLayout(entries: Readonly<Record<string, SafetensorsEntry>>, metadata: Readonly<Record<string, string>> | undefined, target: string): Layout {
  const names = Object.keys(entries).sort();
  for (const name of names) {
    const e = entries[name]!;
    const where = `${target}: tensor '${name}'`;
    if (name === '__metadata__') throw new Error(`${target}: '__metadata__' is reserved and cannot name a tensor`);
    if (!(e.dtype in SAFETENSORS_DTYPE_BYTES)) throw new Error(`${where}: unsupported dtype '${String(e.dtype)}'`);
    if (!e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new Error(`${where}: shape ${formatShape(e.shape)} is not a list of non-negative integers`);
    if (!(e.data instanceof ARRAY_TYPE[e.dtype])) {
      throw new Error(`${where}: ${e.dtype} data must be a ${ARRAY_TYPE[e.dtype].name}, found ${(e.data as object).constructor.name}`);
    }
    if (e.data.length !== numel(e.shape)) {
      throw new Error(`${where}: shape ${formatShape(e.shape)} needs ${numel(e.shape)} elements, data has ${e.data.length}`);
    }
  }
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (typeof v !== 'string') throw new Error(`${target}: metadata['${k}'] must be a string, found ${typeof v}`);
  }
  // Data order: element size descending, then name, so no tensor is misaligned (as the Rust crate).
  const order = [...names].sort((a, b) =>
    SAFETENSORS_DTYPE_BYTES[entries[b]!.dtype] - SAFETENSORS_DTYPE_BYTES[entries[a]!.dtype] || (a < b ? -1 : a > b ? 1 : 0));
  const offsets = new Map<string, [number, number]>();
  const pieces: Uint8Array[] = [];
  let at = 0;
  for (const name of order) {
    const d = entries[name]!.data;
    offsets.set(name, [at, at + d.byteLength]);
    pieces.push(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    at += d.byteLength;
  }
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  for (const name of names) {
    const e = entries[name]!;
    header[name] = { dtype: e.dtype, shape: [...e.shape], data_offsets: offsets.get(name) };
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const head = new Uint8Array(8 + padded).fill(0x20); // spaces, as the Rust crate pads
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  return { head, pieces, totalBytes: head.length + at };
}

/** The bytes of a safetensors file holding `entries` (and string `metadata`, if any). */
export function encodeSafetensors(entries: Readonly<Record<string, SafetensorsEntry>>, metadata?: Readonly<Record<string, string>>): Uint8Array {
  const { head, pieces, totalBytes } = planLayout(entries, metadata, '<encodeSafetensors>');
  const out = new Uint8Array(totalBytes);
  out.set(head, 0);
  let at = head.length;
  for (const p of pieces) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Write `entries` to `path` atomically (temp file in the same directory, fsync, rename). Tensor data is
 * written straight from the given arrays, so no second copy of the whole file is held in memory.
 */
export function writeSafetensors(path: string, entries: Readonly<Record<string, SafetensorsEntry>>, metadata?: Readonly<Record<string, string>>): void {
  const { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } = nodeFs('writeSafetensors');
  const { basename, dirname, join } = nodePath('writeSafetensors');
  const { head, pieces } = planLayout(entries, metadata, path);
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  const fd = openSync(tmp, 'wx');
  let renamed = false;
  try {
    for (const p of [head, ...pieces]) {
      let done = 0;
      while (done < p.length) done += writeSync(fd, p, done, Math.min(p.length - done, 1 << 30));
    }
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
    renamed = true;
  } finally {
    if (!renamed) {
      try { closeSync(fd); } catch { /* already closed */ }
      try { unlinkSync(tmp); } catch { /* never created or already gone */ }
    }
  }
}
