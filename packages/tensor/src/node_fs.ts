// Node's fs and path, looked up when a file is actually touched rather than imported at module load,
// so that @cnx/tensor (SafetensorsFile.fromBytes, encodeSafetensors, RandomWeights, ...) also loads in
// browsers, where only in-memory bytes exist (DESIGN.md: Node and browsers through WebGPU).
// process.getBuiltinModule exists from Node 20.16 / 22.3.

import type * as Fs from 'node:fs';
import type * as Path from 'node:path';

interface NodeProcessLike {
  getBuiltinModule?: (id: string) => unknown;
}

function builtin<T>(id: string, what: string): T {
  const proc = (globalThis as { process?: NodeProcessLike }).process;
  const mod = proc?.getBuiltinModule?.(id);
  if (!mod) {
    throw new Error(`${what} needs Node's '${id}' (Node >= 20.16); in a browser, read the bytes yourself and use SafetensorsFile.fromBytes`);
  }
  return mod as T;
}

/** node:fs, or an error naming the operation `what` that needed it. */
export function nodeFs(what: string): typeof Fs {
  return builtin<typeof Fs>('node:fs', what);
}

/** node:path, or an error naming the operation `what` that needed it. */
export function nodePath(what: string): typeof Path {
  return builtin<typeof Path>('node:path', what);
}
