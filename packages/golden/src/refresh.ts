// Refreshing the repository's copy of the public golden cases (golden/ at the repository root) from a
// source tree (by default ../shared/golden beside the repository, where the reference generators write).
// The copy is what makes a clone self-sufficient: every test and `npm run golden` read golden/ unless
// CNX_GOLDEN_DIR points elsewhere. A refresh compares the two trees file by file (SHA-256 of the
// contents), reports each case as added, changed (with the files that differ) or removed, and makes the
// copy equal to the source: new and changed files copied, files and cases no longer in the source
// deleted. Top-level files (README.md) are compared and copied the same way.
//
// A "case" is a top-level folder; everything inside it (case.json, io.safetensors, model folders) is
// part of it. Symbolic links in the source are followed (the copy holds plain files).

import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';

export interface CaseChange {
  name: string;
  /** Files (relative to the case folder) that were added, changed or removed inside the case. */
  files: string[];
  bytes: number;
}

export interface TreeDiff {
  added: CaseChange[];
  changed: CaseChange[];
  removed: CaseChange[];
  unchanged: string[];
  /** Top-level files (README.md, ...) that differ or are new, and those to delete. */
  topFilesChanged: string[];
  topFilesRemoved: string[];
}

/** Every regular file under `dir` (following links), as paths relative to `dir` with '/' separators, sorted. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      const s = statSync(p);
      if (s.isDirectory()) walk(p);
      else if (s.isFile()) out.push(relative(dir, p).split(sep).join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

function hashFile(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function sameFile(a: string, b: string): boolean {
  return statSync(a).size === statSync(b).size && hashFile(a) === hashFile(b);
}

function entries(root: string): { cases: string[]; files: string[] } {
  if (!existsSync(root)) return { cases: [], files: [] };
  const cases: string[] = [];
  const files: string[] = [];
  for (const e of readdirSync(root).sort()) {
    const s = statSync(join(root, e));
    if (s.isDirectory()) cases.push(e);
    else if (s.isFile()) files.push(e);
  }
  return { cases, files };
}

const sizeOf = (dir: string, files: string[]) => files.reduce((n, f) => n + statSync(join(dir, f)).size, 0);

/** What a refresh of `dst` from `src` would do (nothing is written). */
export function diffTrees(src: string, dst: string): TreeDiff {
  if (!existsSync(src) || !statSync(src).isDirectory()) throw new Error(`golden source ${src} is not a folder`);
  const s = entries(src), d = entries(dst);
  const diff: TreeDiff = { added: [], changed: [], removed: [], unchanged: [], topFilesChanged: [], topFilesRemoved: [] };
  for (const name of s.cases) {
    const from = join(src, name), to = join(dst, name);
    const srcFiles = listFiles(from);
    if (!d.cases.includes(name)) {
      diff.added.push({ name, files: srcFiles, bytes: sizeOf(from, srcFiles) });
      continue;
    }
    const dstFiles = new Set(listFiles(to));
    const differ = srcFiles.filter((f) => !dstFiles.has(f) || !sameFile(join(from, f), join(to, f)));
    const gone = [...dstFiles].filter((f) => !srcFiles.includes(f));
    if (differ.length + gone.length === 0) diff.unchanged.push(name);
    else diff.changed.push({ name, files: [...differ, ...gone.map((f) => `${f} (removed)`)], bytes: sizeOf(from, differ) });
  }
  for (const name of d.cases) {
    if (!s.cases.includes(name)) {
      const files = listFiles(join(dst, name));
      diff.removed.push({ name, files, bytes: sizeOf(join(dst, name), files) });
    }
  }
  diff.topFilesChanged = s.files.filter((f) => !d.files.includes(f) || !sameFile(join(src, f), join(dst, f)));
  diff.topFilesRemoved = d.files.filter((f) => !s.files.includes(f));
  return diff;
}

function copyInto(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true });
  if (existsSync(to)) chmodSync(to, 0o644);
  copyFileSync(from, to);
  chmodSync(to, 0o644); // the source tree is read-only; the copy is a normal working-tree file
}

/** Make `dst` equal to `src` as `diff` (from diffTrees(src, dst)) describes. */
export function applyDiff(src: string, dst: string, diff: TreeDiff): void {
  mkdirSync(dst, { recursive: true });
  for (const c of diff.added) for (const f of c.files) copyInto(join(src, c.name, f), join(dst, c.name, f));
  for (const c of diff.changed) {
    for (const f of c.files) {
      const removed = f.endsWith(' (removed)');
      const rel = removed ? f.slice(0, -' (removed)'.length) : f;
      if (removed) rmSync(join(dst, c.name, rel), { force: true });
      else copyInto(join(src, c.name, rel), join(dst, c.name, rel));
    }
    removeEmptyFolders(join(dst, c.name));
  }
  for (const c of diff.removed) rmSync(join(dst, c.name), { recursive: true, force: true });
  for (const f of diff.topFilesChanged) copyInto(join(src, f), join(dst, f));
  for (const f of diff.topFilesRemoved) rmSync(join(dst, f), { force: true });
}

function removeEmptyFolders(dir: string): boolean {
  let empty = true;
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory() && removeEmptyFolders(p)) continue;
    empty = false;
  }
  if (empty) rmSync(dir, { recursive: true });
  return empty;
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;

/** The report lines of a diff: one per added / changed / removed case, then the totals. */
export function describeDiff(diff: TreeDiff): string[] {
  const lines: string[] = [];
  for (const c of diff.added) lines.push(`added    ${c.name} (${c.files.length} files, ${mib(c.bytes)})`);
  for (const c of diff.changed) lines.push(`changed  ${c.name}: ${c.files.join(', ')}`);
  for (const c of diff.removed) lines.push(`removed  ${c.name} (${c.files.length} files, ${mib(c.bytes)})`);
  for (const f of diff.topFilesChanged) lines.push(`updated  ${f}`);
  for (const f of diff.topFilesRemoved) lines.push(`deleted  ${f}`);
  lines.push(`${diff.added.length} added, ${diff.changed.length} changed, ${diff.removed.length} removed, ${diff.unchanged.length} unchanged`);
  return lines;
}

export function isEmptyDiff(diff: TreeDiff): boolean {
  return diff.added.length + diff.changed.length + diff.removed.length + diff.topFilesChanged.length + diff.topFilesRemoved.length === 0;
}
