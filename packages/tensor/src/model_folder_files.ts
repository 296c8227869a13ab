// Files that a model folder refers to, opened defensively (issue 17: hostile model folders).
//  - Regular files only: a FIFO named like a weights file blocked open() forever, a directory failed
//    later with EISDIR. Files are opened with O_NONBLOCK (which opening a FIFO honours and reading a
//    regular file ignores), then fstat'ed on the open descriptor, so there is no check-then-open race.
//  - Inside the folder: a name read from a file (a shard index's weight_map) must be relative and
//    must not leave the folder (`..`, absolute paths, NUL bytes are refused). The check is lexical, on
//    the name: symbolic links inside the folder are followed, because the Hugging Face hub cache lays
//    out every model folder as links into a shared blob store (snapshots/<rev>/unet/*.safetensors ->
//    ../../../blobs/<sha256>); a link is placed by whoever controls the folder, a weight_map entry by
//    whoever wrote the JSON.
//  - Small side files (JSON indexes, config.json) are size-capped before they are read.
// Node-only, reached lazily through node_fs.ts (the package's main entry stays browser-safe).

import { nodeFs, nodePath } from './node_fs.js';

/** Largest JSON side file (shard index, config.json) read; real ones are well under 1 MB. */
export const MAX_MODEL_JSON_BYTES = 100_000_000;

function kindOf(st: { isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): string {
  return st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket'
    : st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device' : 'not a regular file';
}

/**
 * Open `path` for reading if it is a regular file (following symbolic links); returns the descriptor
 * and size. Never blocks on a FIFO. `what` names the operation in errors.
 */
export function openRegularFile(path: string, what: string): { fd: number; size: number } {
  const fs = nodeFs(what);
  const { O_RDONLY, O_NONBLOCK } = fs.constants;
  // Windows has no O_NONBLOCK (and no FIFOs in the file system): plain read-only there.
  const fd = fs.openSync(path, O_NONBLOCK !== undefined ? O_RDONLY | O_NONBLOCK : 'r');
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new Error(`${path}: expected a regular file, found ${kindOf(st)}`);
    return { fd, size: st.size };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/** The UTF-8 text of a regular file of at most `maxBytes` bytes (checked before reading). */
export function readRegularTextFile(path: string, what: string, maxBytes = MAX_MODEL_JSON_BYTES): string {
  const fs = nodeFs(what);
  const { fd, size } = openRegularFile(path, what);
  try {
    if (size > maxBytes) throw new Error(`${path}: ${size} bytes, over the ${maxBytes}-byte limit for this file`);
    const buf = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      const n = fs.readSync(fd, buf, done, size - done, done);
      if (n === 0) break; // shrank while reading: decode what is there (JSON.parse will complain)
      done += n;
    }
    return new TextDecoder().decode(buf.subarray(0, done));
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * `name` (read from a file in `folder`) resolved inside `folder`; throws, naming `what` (e.g.
 * "index.json: weight_map['k']"), when it is not a relative path that stays inside.
 */
export function resolveInsideFolder(folder: string, name: string, what: string): string {
  const path = nodePath(what);
  const bad = (why: string): never => {
    throw new Error(`${what} names ${JSON.stringify(name.length > 200 ? `${name.slice(0, 197)}...` : name)}, ${why}; ` +
      `files a model folder refers to must lie inside it (${folder})`);
  };
  if (name.length === 0) bad('an empty path');
  if (name.includes('\0')) bad('a path with a NUL byte');
  if (path.isAbsolute(name) || path.win32.isAbsolute(name)) bad('an absolute path');
  const base = path.resolve(folder);
  const full = path.resolve(base, name);
  const rel = path.relative(base, full);
  if (rel === '' || rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) bad('a path outside the folder');
  return full;
}
