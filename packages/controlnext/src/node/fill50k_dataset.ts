// Training datasets in the fill50k layout (issue 12), Node only: the layout of ControlNet's tutorial
// dataset fill50k, which ControlNeXt's SD1.5 training README trains on:
//
//   DIR/prompt.json   JSON lines, one object per sample: {"source": "source/0.png", "target": "target/0.png", "prompt": "..."}
//   DIR/source/...    the control (conditioning) images
//   DIR/target/...    the images to learn
//
// Reading streams prompt.json (fixed-size chunks, each line capped at maxLineBytes), so a huge or hostile
// file cannot exhaust memory; only the index (paths and prompts) is kept, images are decoded on demand.
// Every problem is reported with the file and the 1-based line: bad UTF-8 or JSON, a line that is not an
// object, a missing or non-string key, a path that leaves the dataset folder, a missing, unreadable or
// corrupt image, source and target of different sizes. Blank lines are skipped; unknown keys are ignored.
//
// writeShapesDataset writes the synthetic shapes dataset (training/shapes.ts) in this layout, atomically:
// everything goes to a temporary folder beside DIR, which is renamed to DIR at the end, so an interrupted
// run never leaves a half-written dataset. Beside the layout it writes shapes_dataset.json (the generator
// options, so the same set, or a held-out continuation of it, can be regenerated).

import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readSync, readdirSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep, win32 } from 'node:path';
import { openRegularFile } from '@cnx/tensor';
import { checkImageSize, readImageHeader, type ImageArray } from '../images.js';
import { rgbBytesToImage, shapeSample, type ShapeDatasetOptions } from '../training/shapes.js';
import { decodeImage, encodePng, readImageBytes } from './image_files.js';
import { writeFolderAtomic } from './atomic_folder.js';

/** The longest prompt.json line accepted by default (fill50k's are under 200 bytes). */
export const MAX_FILL50K_LINE_BYTES = 64 * 1024;
/** The most samples read by default. */
export const MAX_FILL50K_ENTRIES = 10_000_000;

/** One line of prompt.json: paths as written (relative to the dataset folder) and resolved. */
export interface Fill50kEntry {
  /** 1-based line number in prompt.json. */
  line: number;
  prompt: string;
  source: string;
  target: string;
  sourcePath: string;
  targetPath: string;
}

export interface Fill50kReadOptions {
  /** Longest line accepted, in bytes (default MAX_FILL50K_LINE_BYTES). */
  maxLineBytes?: number;
  /** Most samples accepted (default MAX_FILL50K_ENTRIES). */
  maxEntries?: number;
}

/** The path of DIR/prompt.json, with a clear error when DIR or the file is not there. */
function promptJsonPath(dir: string): string {
  if (!existsSync(dir)) throw new Error(`dataset folder ${dir}: no such folder`);
  if (!statSync(dir).isDirectory()) throw new Error(`dataset folder ${dir}: not a folder (expected the fill50k layout: prompt.json, source/, target/)`);
  const p = join(dir, 'prompt.json');
  if (!existsSync(p)) throw new Error(`dataset folder ${dir}: no prompt.json (expected the fill50k layout: prompt.json with one {"source", "target", "prompt"} object per line, source/ and target/ image folders)`);
  return p;
}

/** Yields prompt.json's lines (without the line end) with their 1-based numbers; each capped at maxLineBytes. */
async function* readLines(path: string, maxLineBytes: number): AsyncGenerator<{ line: number; text: string }> {
  let fd: number;
  try {
    ({ fd } = openRegularFile(path, 'read dataset'));
  } catch (e) {
    throw new Error(`cannot read ${path}: ${(e as Error).message}`);
  }
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const chunk = new Uint8Array(64 * 1024);
  let pending: Uint8Array[] = [], pendingBytes = 0, line = 1;
  const take = (bytes: Uint8Array): string => {
    let b = bytes;
    if (b.length && b[b.length - 1] === 0x0d) b = b.subarray(0, b.length - 1); // CRLF
    if (line === 1 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) b = b.subarray(3); // BOM
    try {
      return decoder.decode(b);
    } catch {
      throw new Error(`${path} line ${line}: not valid UTF-8`);
    }
  };
  const tooLong = () => new Error(`${path} line ${line}: longer than ${maxLineBytes} bytes (the limit for one line; a prompt.json line holds one short JSON object)`);
  try {
    let pos = 0;
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, pos);
      if (n === 0) break;
      pos += n;
      let start = 0;
      for (let i = 0; i < n; i++) {
        if (chunk[i] !== 0x0a) continue;
        const part = chunk.subarray(start, i);
        if (pendingBytes + part.length > maxLineBytes + 1) throw tooLong();
        let bytes: Uint8Array;
        if (pending.length) {
          bytes = new Uint8Array(pendingBytes + part.length);
          let o = 0;
          for (const p of pending) { bytes.set(p, o); o += p.length; }
          bytes.set(part, o);
          pending = []; pendingBytes = 0;
        } else bytes = part;
        const text = take(bytes);
        yield { line, text };
        line++;
        start = i + 1;
      }
      if (start < n) {
        pending.push(chunk.slice(start, n));
        pendingBytes += n - start;
        if (pendingBytes > maxLineBytes + 1) throw tooLong();
      }
      // Let the event loop breathe between chunks (a 50k-line file is ~100 chunks).
      await new Promise<void>((r) => setImmediate(r));
    }
    if (pendingBytes > 0) {
      const bytes = new Uint8Array(pendingBytes);
      let o = 0;
      for (const p of pending) { bytes.set(p, o); o += p.length; }
      yield { line, text: take(bytes) };
    }
  } finally {
    closeSync(fd);
  }
}

/** `name` resolved inside `dir`; an error naming the line when it is empty, absolute or leaves the folder. */
function insideDataset(dir: string, name: string, where: string): string {
  const bad = (why: string): never => {
    throw new Error(`${where} is ${JSON.stringify(name.length > 200 ? `${name.slice(0, 197)}...` : name)}, ${why}; image paths must be relative to the dataset folder (${dir}) and stay inside it`);
  };
  if (name.length === 0) bad('an empty path');
  if (name.includes('\0')) bad('a path with a NUL byte');
  if (isAbsolute(name) || win32.isAbsolute(name)) bad('an absolute path');
  const base = resolve(dir), full = resolve(base, name), rel = relative(base, full);
  if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) bad('a path outside the folder');
  return full;
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/**
 * Stream the samples of DIR/prompt.json, checking each line's JSON, keys and paths (not the images: see
 * validateFill50kDataset). Errors name prompt.json and the line.
 */
export async function* readFill50kIndex(dir: string, opts: Fill50kReadOptions = {}): AsyncGenerator<Fill50kEntry> {
  const path = promptJsonPath(dir);
  const maxLineBytes = opts.maxLineBytes ?? MAX_FILL50K_LINE_BYTES;
  const maxEntries = opts.maxEntries ?? MAX_FILL50K_ENTRIES;
  let count = 0;
  for await (const { line, text } of readLines(path, maxLineBytes)) {
    if (text.trim() === '') continue;
    const at = `${path} line ${line}`;
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new Error(`${at}: invalid JSON (${(e as Error).message}); expected one object per line like {"source": "source/0.png", "target": "target/0.png", "prompt": "..."}`);
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new Error(`${at}: expected a JSON object with keys source, target, prompt, found ${typeName(obj)}`);
    const rec = obj as Record<string, unknown>;
    for (const key of ['source', 'target', 'prompt']) {
      if (!(key in rec)) throw new Error(`${at}: missing key "${key}" (expected keys source, target, prompt; found ${Object.keys(rec).map((k) => JSON.stringify(k)).join(', ') || 'none'})`);
      if (typeof rec[key] !== 'string') throw new Error(`${at}: key "${key}" must be a string, found ${typeName(rec[key])}`);
    }
    if (++count > maxEntries) throw new Error(`${at}: more than ${maxEntries} samples (the limit, option maxEntries)`);
    const source = rec.source as string, target = rec.target as string;
    yield {
      line, prompt: rec.prompt as string, source, target,
      sourcePath: insideDataset(dir, source, `${at}: "source"`),
      targetPath: insideDataset(dir, target, `${at}: "target"`),
    };
  }
}

/** Read an image for an entry; errors name prompt.json's line, the key and the file. */
function entryImageBytes(dir: string, e: Fill50kEntry, key: 'source' | 'target'): Uint8Array {
  const path = key === 'source' ? e.sourcePath : e.targetPath;
  try {
    return readImageBytes(path);
  } catch (err) {
    throw new Error(`${join(dir, 'prompt.json')} line ${e.line}: "${key}" image ${path}: ${(err as Error).message.replace(/^cannot read image [^:]*: /, '')}`);
  }
}

function entryImageHeader(dir: string, e: Fill50kEntry, key: 'source' | 'target'): { width: number; height: number } {
  const path = key === 'source' ? e.sourcePath : e.targetPath;
  const bytes = entryImageBytes(dir, e, key);
  try {
    const h = readImageHeader(bytes);
    checkImageSize(h.width, h.height);
    return h;
  } catch (err) {
    throw new Error(`${join(dir, 'prompt.json')} line ${e.line}: "${key}" image ${path}: ${(err as Error).message}`);
  }
}

/** Decode an entry's image; errors name the line, the key and the file. */
function entryImage(dir: string, e: Fill50kEntry, key: 'source' | 'target'): ImageArray {
  const path = key === 'source' ? e.sourcePath : e.targetPath;
  const bytes = entryImageBytes(dir, e, key);
  try {
    return decodeImage(bytes, path);
  } catch (err) {
    throw new Error(`${join(dir, 'prompt.json')} line ${e.line}: "${key}" image ${(err as Error).message}`);
  }
}

function checkSameSize(dir: string, e: Fill50kEntry, s: { width: number; height: number }, t: { width: number; height: number }): void {
  if (s.width !== t.width || s.height !== t.height) {
    throw new Error(`${join(dir, 'prompt.json')} line ${e.line}: source ${e.sourcePath} is ${s.width}x${s.height} but target ${e.targetPath} is ${t.width}x${t.height} ` +
      '(a control image must have its target\'s size, or the two would be cropped differently)');
  }
}

export interface Fill50kValidateOptions extends Fill50kReadOptions {
  /** Decode every image fully (finds corrupt image data, slower); default: read each image's header only. */
  decode?: boolean;
  /** Called every `progressEvery` samples (default 1000) and at the end with the count so far. */
  onProgress?: (checked: number) => void;
  progressEvery?: number;
}

export interface Fill50kSummary {
  dir: string;
  count: number;
  /** Image sizes ("WxH") with their sample counts. */
  sizes: Record<string, number>;
  /** The index, in file order. */
  entries: Fill50kEntry[];
}

/**
 * Check a whole dataset: every line of prompt.json and every image it names (exists, a regular file,
 * a readable PNG/JPEG header within the size limits, or a full decode with opts.decode), source and target
 * of one size. Throws at the first problem, naming file and line; returns the index and a summary.
 */
export async function validateFill50kDataset(dir: string, opts: Fill50kValidateOptions = {}): Promise<Fill50kSummary> {
  const entries: Fill50kEntry[] = [];
  const sizes: Record<string, number> = {};
  const every = opts.progressEvery ?? 1000;
  for await (const e of readFill50kIndex(dir, opts)) {
    let s: { width: number; height: number }, t: { width: number; height: number };
    if (opts.decode) {
      const si = entryImage(dir, e, 'source'), ti = entryImage(dir, e, 'target');
      s = { height: si.shape[0]!, width: si.shape[1]! };
      t = { height: ti.shape[0]!, width: ti.shape[1]! };
    } else {
      s = entryImageHeader(dir, e, 'source');
      t = entryImageHeader(dir, e, 'target');
    }
    checkSameSize(dir, e, s, t);
    const k = `${s.width}x${s.height}`;
    sizes[k] = (sizes[k] ?? 0) + 1;
    entries.push(e);
    if (entries.length % every === 0) {
      opts.onProgress?.(entries.length);
      await new Promise<void>((r) => setImmediate(r));
    }
  }
  if (entries.length === 0) throw new Error(`${join(dir, 'prompt.json')}: no samples (expected one {"source", "target", "prompt"} object per line)`);
  opts.onProgress?.(entries.length);
  return { dir, count: entries.length, sizes, entries };
}

/** A training example as the batching code takes it (training/training_batches.ts): images [H, W, 3] in [0, 1]. */
export interface Fill50kExample {
  prompt: string;
  /** The source (conditioning) image. */
  control: ImageArray;
  target: ImageArray;
  /** Where it came from (prompt.json line). */
  line: number;
}

/** A fill50k dataset opened for training: the index in memory, images decoded on demand. */
export class Fill50kDataset {
  private constructor(readonly dir: string, readonly entries: readonly Fill50kEntry[], readonly sizes: Readonly<Record<string, number>>) {}

  /**
   * Open DIR: read and check the index and every image header (validateFill50kDataset; pass decode: true
   * to decode every image up front as well). Errors name the file and line.
   */
  static async open(dir: string, opts: Fill50kValidateOptions = {}): Promise<Fill50kDataset> {
    const s = await validateFill50kDataset(dir, opts);
    return new Fill50kDataset(dir, s.entries, s.sizes);
  }

  get length(): number {
    return this.entries.length;
  }

  /** Sample `index` (0-based, file order), decoded; errors name the line and file. */
  get(index: number): Fill50kExample {
    const e = this.entries[index];
    if (!e) throw new Error(`Fill50kDataset ${this.dir}: sample ${index} out of range [0, ${this.entries.length})`);
    const control = entryImage(this.dir, e, 'source'), target = entryImage(this.dir, e, 'target');
    checkSameSize(this.dir, e, { height: control.shape[0]!, width: control.shape[1]! }, { height: target.shape[0]!, width: target.shape[1]! });
    return { prompt: e.prompt, control, target, line: e.line };
  }
}

/** Open a fill50k-layout dataset (Fill50kDataset.open). */
export function openFill50kDataset(dir: string, opts: Fill50kValidateOptions = {}): Promise<Fill50kDataset> {
  return Fill50kDataset.open(dir, opts);
}

export interface WriteShapesDatasetOptions extends ShapeDatasetOptions {
  /** Number of samples (indices start .. start + count - 1 of the generator). */
  count: number;
  /** First generator index (default 0): e.g. a held-out set from the same seed starts after the training set. */
  start?: number;
  /** Replace DIR when it exists and is not empty (default: refuse). */
  overwrite?: boolean;
  /** Called every 100 samples and at the end. */
  onProgress?: (written: number, count: number) => void;
}

/** The generator options written to DIR/shapes_dataset.json. */
export const SHAPES_DATASET_INFO_FILE = 'shapes_dataset.json';

/**
 * Write `count` samples of the synthetic shapes dataset to DIR in the fill50k layout (source/<i>.png =
 * control, target/<i>.png, prompt.json), atomically (a temporary folder renamed to DIR). Refuses a
 * non-empty DIR unless overwrite is set. Returns the folder and the number of samples.
 */
export async function writeShapesDataset(dir: string, opts: WriteShapesDatasetOptions): Promise<{ dir: string; count: number }> {
  const { count, start = 0, overwrite = false, onProgress, ...shapeOpts } = opts;
  if (!Number.isInteger(count) || count < 1 || count > 10_000_000) throw new Error(`writeShapesDataset: count must be an integer in [1, 10000000], found ${count}`);
  if (!Number.isInteger(start) || start < 0 || start + count > 0xffffffff) throw new Error(`writeShapesDataset: start must be an integer >= 0 with start + count < 2^32, found ${start}`);
  shapeSample(start, shapeOpts); // checks the generator options before anything is written
  await writeFolderAtomic(dir, async (tmp) => {
    mkdirSync(join(tmp, 'source'), { recursive: true });
    mkdirSync(join(tmp, 'target'), { recursive: true });
    const index = openSync(join(tmp, 'prompt.json'), 'w');
    try {
      for (let k = 0; k < count; k++) {
        const i = start + k;
        const s = shapeSample(i, shapeOpts);
        writeFileSync(join(tmp, 'source', `${i}.png`), encodePng(rgbBytesToImage(s.control, s.size, s.size)));
        writeFileSync(join(tmp, 'target', `${i}.png`), encodePng(rgbBytesToImage(s.target, s.size, s.size)));
        writeSync(index, JSON.stringify({ source: `source/${i}.png`, target: `target/${i}.png`, prompt: s.prompt }) + '\n');
        if ((k + 1) % 100 === 0) {
          onProgress?.(k + 1, count);
          await new Promise<void>((r) => setImmediate(r));
        }
      }
    } finally {
      closeSync(index);
    }
    const { size, seed, control = 'outline', shapes, colours, background, radiusRange, outlineWidth } = shapeOpts;
    const info = { generator: 'cnx shapes (packages/controlnext/src/training/shapes.ts)', start, count, size, seed, control, shapes, colours, background, radiusRange, outlineWidth };
    writeFileSync(join(tmp, SHAPES_DATASET_INFO_FILE), JSON.stringify(info, null, 2) + '\n');
  }, { overwrite, who: 'writeShapesDataset' });
  onProgress?.(count, count);
  return { dir, count };
}

/** Read DIR/shapes_dataset.json when present (a dataset written by writeShapesDataset), else undefined. */
export function readShapesDatasetInfo(dir: string): (ShapeDatasetOptions & { start: number; count: number }) | undefined {
  const p = join(dir, SHAPES_DATASET_INFO_FILE);
  if (!existsSync(p)) return undefined;
  const { fd, size } = openRegularFile(p, 'read dataset');
  try {
    if (size > 1 << 20) throw new Error(`${p}: ${size} bytes, over the 1 MiB limit for this file`);
    const buf = new Uint8Array(size);
    readSync(fd, buf, 0, size, 0);
    try {
      return JSON.parse(new TextDecoder().decode(buf)) as ShapeDatasetOptions & { start: number; count: number };
    } catch (e) {
      throw new Error(`${p}: invalid JSON (${(e as Error).message})`);
    }
  } finally {
    closeSync(fd);
  }
}
