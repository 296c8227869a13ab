// Where the tests find the public golden cases: the repository's copy, golden/ at the repository root
// (refreshed from the reference generators' tree by `npm run golden:refresh`), or the folder named by
// CNX_GOLDEN_DIR (a tree with more cases, or a newer one). Every test locates cases through this file,
// so a clone in any folder, with nothing beside it, finds them; no test names an absolute path.

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The repository root (this file is test/harness/golden_root.ts). */
export const REPO_ROOT = resolve(import.meta.dirname, '..', '..');

/** The golden tree the tests read: CNX_GOLDEN_DIR when set, else <repository>/golden. */
export const GOLDEN_ROOT = resolve(process.env.CNX_GOLDEN_DIR || join(REPO_ROOT, 'golden'));

/** The folder of one case (or a path inside it); throws naming the tree and the override when absent. */
export function goldenPath(...parts: string[]): string {
  const p = join(GOLDEN_ROOT, ...parts);
  if (!existsSync(p)) {
    throw new Error(`golden: ${p} not found (tree ${GOLDEN_ROOT}${process.env.CNX_GOLDEN_DIR ? ', from CNX_GOLDEN_DIR' : ''}; ` +
      '`npm run golden:refresh` updates the repository copy, CNX_GOLDEN_DIR points at another tree)');
  }
  return p;
}
