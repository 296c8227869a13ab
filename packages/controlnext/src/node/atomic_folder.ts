// A folder written all at once: filled under a temporary name beside it, then renamed into place, so a
// reader (or a killed process) only ever sees the old folder or the complete new one. Used for datasets
// (fill50k_dataset.ts) and training checkpoints (training_checkpoint_files.ts).

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

export interface AtomicFolderOptions {
  /** Replace a non-empty folder (default false: refused, naming it). */
  overwrite?: boolean;
  /** Who is writing, for messages ('writeShapesDataset'). */
  who: string;
}

/**
 * Write DIR by `fill(tmp)` into a temporary sibling folder, then rename it to DIR (replacing an existing
 * one when `overwrite`). On any error the temporary folder is removed and DIR is left as it was.
 */
export async function writeFolderAtomic(dir: string, fill: (tmp: string) => void | Promise<void>, opts: AtomicFolderOptions): Promise<void> {
  const target = resolve(dir);
  let replaceExisting = false;
  if (existsSync(target)) {
    if (!statSync(target).isDirectory()) throw new Error(`${opts.who}: ${dir} exists and is not a folder`);
    if (readdirSync(target).length > 0) {
      if (!opts.overwrite) throw new Error(`${opts.who}: ${dir} exists and is not empty; choose a new folder (or overwrite)`);
      replaceExisting = true;
    }
  }
  mkdirSync(dirname(target), { recursive: true });
  const tmp = join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    mkdirSync(tmp);
    await fill(tmp);
    if (replaceExisting) {
      const old = `${tmp}.old`;
      renameSync(target, old);
      renameSync(tmp, target);
      rmSync(old, { recursive: true, force: true });
    } else {
      if (existsSync(target)) rmdirSync(target); // empty: checked above
      renameSync(tmp, target);
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`${opts.who}: cannot write ${dir}: ${(e as Error).message}`);
  }
}
