#!/usr/bin/env node
// npm run golden:refresh -- [SOURCE] [--check]
// Makes the repository's golden/ a copy of SOURCE (default: ../shared/golden beside the repository, where
// the reference generators write) and reports each case as added, changed or removed (src/refresh.ts).
// --check only reports, and exits 1 when the copy differs from the source. Usage errors exit 2.

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyDiff, describeDiff, diffTrees, isEmptyDiff } from './refresh.js';

/** The repository root (this file is packages/golden/dist/refresh_cli.js). */
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const USAGE = 'usage: npm run golden:refresh -- [SOURCE] [--check]    (SOURCE default: ../shared/golden beside the repository)';

function main(argv: string[]): number {
  let check = false;
  const positional: string[] = [];
  for (const a of argv) {
    if (a === '--check') check = true;
    else if (a === '--help' || a === '-h') { console.log(USAGE); return 0; }
    else if (a.startsWith('-')) { console.error(`golden:refresh: error: unknown option ${a}\n${USAGE}`); return 2; }
    else positional.push(a);
  }
  if (positional.length > 1) { console.error(`golden:refresh: error: one SOURCE folder expected, found ${positional.length}\n${USAGE}`); return 2; }
  const src = resolve(positional[0] ?? join(REPO, '..', 'shared', 'golden'));
  const dst = join(REPO, 'golden');
  if (!existsSync(src)) { console.error(`golden:refresh: error: source ${src} does not exist\n${USAGE}`); return 2; }
  const diff = diffTrees(src, dst);
  console.log(`golden:refresh: ${check ? 'comparing' : 'refreshing'} ${dst} ${check ? 'with' : 'from'} ${src}`);
  for (const l of describeDiff(diff)) console.log(`  ${l}`);
  if (check) return isEmptyDiff(diff) ? 0 : 1;
  applyDiff(src, dst, diff);
  if (!isEmptyDiff(diff)) console.log('golden:refresh: done; commit golden/ (and drop any case from test/golden/golden.test.ts PENDING once its runner lands)');
  return 0;
}

process.exitCode = main(process.argv.slice(2));
