// Node's fs and path, looked up when a file is actually touched rather than imported at module load,
// so that @cnx/tensor (SafetensorsFile.fromBytes, encodeSafetensors, RandomWeights, ...) also loads in
// browsers, where only in-memory bytes exist (DESIGN.md: Node and browsers through WebGPU).
// process.getBuiltinModule exists from Node 20.16 / 22.3.

import type * as Fs from 'node:fs';
import type * as Path from 'node:path';

// The parts of node:fs and node:path the packages use, declared here rather than as `typeof import('node:fs')`
// so that the published declarations (dist/node_fs.d.ts, reachable from the browser-safe main entry) name
// no Node module: a browser project type-checks them without @types/node. The check below
// verifies at compile time that the real modules fit. A package that needs more of node:fs adds it here.

/** The result of statSync / fstatSync, as far as the packages read it. */
export interface NodeStatsLike {
  size: number;
  isFile(): boolean;
  isDirectory(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
}

/** The part of node:fs the packages use. */
export interface NodeFsApi {
  constants: { O_RDONLY: number; O_NONBLOCK?: number };
  existsSync(path: string): boolean;
  statSync(path: string): NodeStatsLike;
  fstatSync(fd: number): NodeStatsLike;
  readdirSync(path: string): string[];
  readFileSync(path: string, encoding: 'utf8'): string;
  openSync(path: string, flags: string | number, mode?: number): number;
  readSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number | null): number;
  writeSync(fd: number, buffer: Uint8Array, offset?: number, length?: number, position?: number | null): number;
  closeSync(fd: number): void;
  fsyncSync(fd: number): void;
  renameSync(from: string, to: string): void;
  unlinkSync(path: string): void;
}

/** The part of node:path the packages use. */
export interface NodePathApi {
  sep: string;
  join(...parts: string[]): string;
  resolve(...parts: string[]): string;
  relative(from: string, to: string): string;
  dirname(path: string): string;
  basename(path: string, suffix?: string): string;
  isAbsolute(path: string): boolean;
  win32: { isAbsolute(path: string): boolean };
}

// Compile-time check (not exported, so not in the declarations): a type error here means node:fs or
// node:path no longer provides what the interfaces above declare.
const nodeTypesFit: [typeof Fs extends NodeFsApi ? true : false, typeof Path extends NodePathApi ? true : false] = [true, true];
void nodeTypesFit;

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
export function nodeFs(what: string, hint = DEFAULT_HINT): NodeFsApi {
  return builtin<NodeFsApi>('node:fs', what, hint);
}

/** node:path, or an error naming the operation `what` that needed it. */
export function nodePath(what: string, hint = DEFAULT_HINT): NodePathApi {
  return builtin<NodePathApi>('node:path', what, hint);
}
