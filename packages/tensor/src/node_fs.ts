// Node's fs and path, looked up when a file is actually touched rather than imported at module load,
// so that @cnx/tensor (SafetensorsFile.fromBytes, encodeSafetensors, RandomWeights, ...) also loads in
// browsers, where only in-memory bytes exist (DESIGN.md: Node and browsers through WebGPU).
// process.getBuiltinModule exists from Node 20.16 / 22.3.

import type * as Fs from 'node:fs';
import type * as Path from 'node:path';

interface NodeProcessLike {
  getBuiltinModule?: (id: string) => unknown;
}

const DEFAULT_HINT = 'read the bytes yourself and use SafetensorsFile.fromBytes';

function builtin<T>(id: string, what: string, hint: string): T {
  const proc = (globalThis as { process?: NodeProcessLike }).process;
  const mod = proc?.getBuiltinModule?.(id);
  if (!mod) {
    throw new Error(`${what} needs Node's '${id}' (Node >= 20.16); in a browser, ${hint}`);
  }
  return mod as T;
}

/**
 * node:fs, or an error naming the operation `what` that needed it and, for browsers, the in-memory
 * alternative (`hint`). Nothing is imported: a browser bundle of the caller stays free of Node modules.
 */
export function nodeFs(what: string, hint = DEFAULT_HINT): typeof Fs {
  return builtin<typeof Fs>('node:fs', what, hint);
}

/** node:path, or an error naming the operation `what` that needed it. */
export function nodePath(what: string, hint = DEFAULT_HINT): typeof Path {
  return builtin<typeof Path>('node:path', what, hint);
}
