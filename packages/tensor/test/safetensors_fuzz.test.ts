// Seeded fuzz test of the safetensors reader (issue 17: "a fuzz test in the suite, seeded, a few
// thousand mutated files, under a minute"). Valid files of every dtype, with metadata, are mutated
// at the byte level (bit flips, header-length rewrites, truncation, appended garbage), at the JSON
// level (each field of an entry replaced by values of the wrong type, sign, size or shape; entries
// added, removed, overlapped; hostile keys) and by hostile structures (deep nesting, huge entry
// counts). For every case exactly one of these must happen:
//   - a clean rejection: an Error (not a RangeError/TypeError from deep inside) whose message starts
//     with the file's name and is short;
//   - acceptance, after which every tensor reads back with numel(shape) elements and its byte range
//     lies inside the data section, with no overlap.
// Anything else is a crash. The counts are printed (and recorded in README.md's reliability section).

import { describe, expect, it } from 'vitest';
import {
  MAX_SAFETENSORS_HEADER_DEPTH, MAX_SAFETENSORS_HEADER_ENTRIES, SafetensorsFile, encodeSafetensors, numberToBf16Bits,
  numberToF16Bits, type SafetensorsEntry,
} from '@cnx/tensor';

const SEED = 0x5afe7e45;
const CASES = 4000;

/** mulberry32: a small seeded generator, so every run tries the same files. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function seedFiles(): Uint8Array[] {
  const all: Record<string, SafetensorsEntry> = {
    'down_blocks.0.conv.weight': { dtype: 'F32', shape: [3, 2, 3, 3], data: Float32Array.from({ length: 54 }, (_, i) => Math.sin(i)) },
    'norm.weight': { dtype: 'F16', shape: [5], data: Uint16Array.from([1, -2, 0.5, 65504, 0], (x) => numberToF16Bits(x)) },
    'emb.bf16': { dtype: 'BF16', shape: [2, 3], data: Uint16Array.from([1, 2, 3, -4, 5, 6], (x) => numberToBf16Bits(x)) },
    'position_ids': { dtype: 'I64', shape: [1, 4], data: new BigInt64Array([0n, 1n, 2n, 3n]) },
    'ids.i32': { dtype: 'I32', shape: [3], data: new Int32Array([-1, 0, 7]) },
    'mask.u8': { dtype: 'U8', shape: [2, 2], data: new Uint8Array([0, 1, 254, 255]) },
    'flag': { dtype: 'BOOL', shape: [3], data: new Uint8Array([1, 0, 1]) },
    'scalar': { dtype: 'F32', shape: [], data: new Float32Array([42]) },
    'empty': { dtype: 'F32', shape: [0, 7], data: new Float32Array(0) },
  };
  const names = Object.keys(all);
  return [
    encodeSafetensors(all, { format: 'pt', note: 'fuzz seed' }),
    encodeSafetensors(Object.fromEntries(names.slice(0, 3).map((k) => [k, all[k]!]))),
    encodeSafetensors({ [names[0]!]: all[names[0]!]! }),
    encodeSafetensors({}),
  ];
}

interface Parsed { text: string; data: Uint8Array }

function split(file: Uint8Array): Parsed {
  const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  return { text: new TextDecoder().decode(file.subarray(8, 8 + n)), data: file.subarray(8 + n) };
}

function join(text: string, data: Uint8Array, headerLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** Values of the wrong kind for any JSON field. */
function hostileValue(r: () => number): unknown {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  return pick<() => unknown>([
    () => -1, () => 0, () => 1.5, () => 2 ** 53, () => 2 ** 64, () => -(2 ** 31), () => 1e308, () => Math.floor(r() * 1000),
    () => '', () => 'F32', () => 'F64', () => 'I8', () => 'x'.repeat(Math.floor(r() * 300)), () => '\u0000\ud800',
    () => null, () => true, () => [], () => {}, () => [1, 2, 3], () => [[1]], () => [-1, 4], () => [0, 2 ** 60],
    () => new Array(40).fill(1), () => ({ dtype: 'F32' }), () => Array.from({ length: 3 }, () => Math.floor(r() * 100)),
  ])();
}

const manyEntriesText = new Map<number, string>();
/** A header of `n` empty tensors (built once per n: the 100,001-entry text is 6 MB). */
function manyEntries(n: number): string {
  let t = manyEntriesText.get(n);
  if (t === undefined) {
    const parts: string[] = [];
    for (let i = 0; i < n; i++) parts.push(`"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`);
    manyEntriesText.set(n, (t = `{${parts.join(',')}}`));
  }
  return t;
}

/** One mutated file from a seed file. */
function mutate(seed: Uint8Array, r: () => number): Uint8Array {
  const int = (n: number) => Math.floor(r() * n);
  const kind = int(12);
  const bytes = seed.slice();
  const { text, data } = split(seed);
  switch (kind) {
    case 0: { // bit flips anywhere
      for (let k = 1 + int(8); k > 0; k--) { const i = int(bytes.length); bytes[i]! ^= 1 << int(8); }
      return bytes;
    }
    case 1: { // bit flips inside the header text
      for (let k = 1 + int(4); k > 0; k--) { const i = 8 + int(Math.max(1, bytes.length - 8)); if (i < bytes.length) bytes[i]! ^= 1 << int(8); }
      return bytes;
    }
    case 2: { // header length rewritten
      const n = BigInt(text.length);
      const choices = [0n, 1n, n - 1n, n + 1n, n + BigInt(int(64)), n - BigInt(int(64)), BigInt(bytes.length), (1n << 64n) - 1n, 100_000_001n, BigInt(int(1 << 30))];
      const v = choices[int(choices.length)]!;
      new DataView(bytes.buffer).setBigUint64(0, v < 0n ? 0n : v, true);
      return bytes;
    }
    case 3: return bytes.subarray(0, int(bytes.length)); // truncation
    case 4: { // appended garbage
      const extra = Uint8Array.from({ length: 1 + int(64) }, () => int(256));
      const out = new Uint8Array(bytes.length + extra.length);
      out.set(bytes); out.set(extra, bytes.length);
      return out;
    }
    case 5: case 6: case 7: { // one field of one entry replaced
      const h = JSON.parse(text) as Record<string, Record<string, unknown>>;
      const keys = Object.keys(h);
      if (keys.length === 0) return join(`{"w": ${JSON.stringify(hostileValue(r))}}`, data);
      const k = keys[int(keys.length)]!;
      const field = ['dtype', 'shape', 'data_offsets', 'format', 'extra'][int(5)]!;
      const e = h[k];
      if (e && typeof e === 'object') {
        if (r() < 0.15) delete e[field];
        else e[field] = hostileValue(r);
      } else h[k] = hostileValue(r) as Record<string, unknown>;
      return join(JSON.stringify(h), data);
    }
    case 8: { // entries added (copies, overlapping), removed, renamed to hostile keys
      const h = JSON.parse(text) as Record<string, unknown>;
      const keys = Object.keys(h);
      const op = int(4);
      if (op === 0 && keys.length) h[`copy${int(10)}`] = h[keys[int(keys.length)]!];
      else if (op === 1 && keys.length) delete h[keys[int(keys.length)]!];
      else if (op === 2 && keys.length) {
        const k = keys[int(keys.length)]!;
        const name = ['', '__proto__', 'constructor', '\u0000', 'k'.repeat(5000), '../../etc/passwd', '\ud83d\ude00'][int(7)]!;
        h[name] = h[k];
        delete h[k];
      } else h.__metadata__ = [{ a: 1 }, 'x', null, { a: 'b', c: 3 }][int(4)];
      return join(JSON.stringify(h), data);
    }
    case 9: { // random JSON tokens spliced into the header text
      const tokens = ['{', '}', '[', ']', '"', ',', ':', '\\', '-', '1e999', 'null', '\u0000', '\ufffd'];
      let t = text;
      for (let k = 1 + int(4); k > 0; k--) { const i = int(t.length + 1); t = t.slice(0, i) + tokens[int(tokens.length)]! + t.slice(i); }
      return join(t, data);
    }
    case 10: { // deep nesting somewhere a value goes
      const d = [MAX_SAFETENSORS_HEADER_DEPTH - 2, MAX_SAFETENSORS_HEADER_DEPTH, MAX_SAFETENSORS_HEADER_DEPTH + 1, 1000, 100_000][int(5)]!;
      const deep = `${'['.repeat(d)}${']'.repeat(d)}`;
      return join([`{"w": ${deep}}`, deep, `{"__metadata__": {"k": ${deep}}}`, `{"w": {"dtype": "F32", "shape": ${deep}, "data_offsets": [0, 0]}}`][int(4)]!, data);
    }
    default: { // many entries, around the limit
      const n = [10, 1000, MAX_SAFETENSORS_HEADER_ENTRIES + 1][int(3)]!;
      return join(manyEntries(n), data);
    }
  }
}

type Outcome = 'rejected' | 'accepted';

/** Open and, when accepted, read everything; throws (a crash) when an invariant breaks. */
function trial(bytes: Uint8Array, name: string): Outcome {
  let f: SafetensorsFile;
  try {
    f = SafetensorsFile.fromBytes(bytes, name);
  } catch (e) {
    if (!(e instanceof Error) || e.constructor !== Error) throw new Error(`crash: ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    if (!e.message.startsWith(`${name}: `)) throw new Error(`crash: message does not name the file: ${e.message.slice(0, 200)}`);
    if (e.message.length > 1000) throw new Error(`crash: a ${e.message.length}-character message`);
    return 'rejected';
  }
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const ranges: [number, number][] = [];
  for (const k of f.keys()) {
    const info = f.info(k);
    if (info.begin < 8 + n || info.end > bytes.length || info.begin > info.end) throw new Error(`crash: '${k}' spans [${info.begin}, ${info.end}) outside the data section`);
    if (info.end > info.begin) ranges.push([info.begin, info.end]);
    const numel = info.shape.reduce((a, b) => a * b, 1);
    const { data } = f.readFloat32(k);
    if (data.length !== numel) throw new Error(`crash: '${k}' read ${data.length} elements for shape [${info.shape}]`);
    if (f.readRaw(k).bytes.length !== info.end - info.begin) throw new Error(`crash: '${k}' raw length`);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) if (ranges[i]![0] < ranges[i - 1]![1]) throw new Error('crash: accepted overlapping tensors');
  return 'accepted';
}

describe('safetensors reader fuzz', () => {
  it(`${CASES} seeded mutations: each a clean rejection or a fully readable file, none slow`, () => {
    const r = rng(SEED);
    const seeds = seedFiles();
    for (const s of seeds) expect(trial(s, 'seed.safetensors')).toBe('accepted');
    const counts = { rejected: 0, accepted: 0, crashes: 0 };
    const crashes: string[] = [];
    let slowest = 0;
    const t0 = performance.now();
    for (let c = 0; c < CASES; c++) {
      const file = mutate(seeds[Math.floor(r() * seeds.length)]!, r);
      const t = performance.now();
      try {
        counts[trial(file, `fuzz-${c}.safetensors`)]++;
      } catch (e) {
        counts.crashes++;
        if (crashes.length < 10) crashes.push(`case ${c}: ${(e as Error).message.slice(0, 300)}`);
      }
      slowest = Math.max(slowest, performance.now() - t);
    }
    const seconds = (performance.now() - t0) / 1000;
    console.log(`safetensors fuzz (seed ${SEED.toString(16)}): ${CASES} cases, ${counts.rejected} clean rejections, ` +
      `${counts.accepted} accepted and fully read, ${counts.crashes} crashes; ${seconds.toFixed(1)} s, slowest case ${slowest.toFixed(0)} ms`);
    expect(crashes).toEqual([]);
    expect(counts.rejected + counts.accepted).toBe(CASES);
    // Both outcomes occur: the mutations are neither all fatal nor all harmless.
    expect(counts.rejected).toBeGreaterThan(CASES / 2);
    expect(counts.accepted).toBeGreaterThan(50);
    expect(slowest).toBeLessThan(5_000);
  }, 60_000);
});
