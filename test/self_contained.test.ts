// A clone is self-sufficient: no source, test, script or document of the repository names an absolute
// path on a development machine, or reaches outside the repository for test data (golden cases are read
// through test/harness/golden_root.ts: the repository's golden/ or CNX_GOLDEN_DIR). The one place that
// names ../shared/golden is the refresh command's default source (and the documents describing it).

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './harness/golden_root.js';

const SKIP_DIRS = new Set(['node_modules', 'dist', '.git', 'golden', 'runs', '.device', '.gl', '.whl', '.venv', 'tmp']);
const TEXT = /\.(ts|mts|js|mjs|cjs|json|md|sh|html|css|yml|yaml)$|^run$/;
/** Files allowed to name ../shared/golden: the refresh command's default source and documents about it. */
const MAY_NAME_SHARED = new Set(['packages/golden/src/refresh_cli.ts', 'README.md', 'packages/golden/README.md', 'test/self_contained.test.ts']);

function textFiles(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    const s = statSync(p);
    if (s.isDirectory()) { if (!SKIP_DIRS.has(e)) textFiles(p, out); }
    else if (TEXT.test(e) && e !== 'package-lock.json' && s.size < 2_000_000) out.push(p);
  }
  return out;
}

describe('a self-sufficient clone', () => {
  const files = textFiles(REPO_ROOT).map((p) => relative(REPO_ROOT, p));

  it('no file names an absolute path of a development machine', () => {
    const bad: string[] = [];
    const pattern = /['"`(\s]\/(work|home|root|Users|mnt)\/[A-Za-z0-9_.-]+/;
    for (const f of files) {
      readFileSync(join(REPO_ROOT, f), 'utf8').split('\n').forEach((line, i) => {
        if (pattern.test(line) && !line.includes('self_contained: allowed')) bad.push(`${f}:${i + 1}: ${line.trim().slice(0, 120)}`);
      });
    }
    expect(bad, `absolute paths:\n${bad.join('\n')}`).toEqual([]);
  });

  it('test data is read from inside the repository (no ../shared/golden outside the refresh command)', () => {
    const bad: string[] = [];
    for (const f of files) {
      if (MAY_NAME_SHARED.has(f)) continue;
      readFileSync(join(REPO_ROOT, f), 'utf8').split('\n').forEach((line, i) => {
        if (/shared\/golden|shared', 'golden/.test(line)) bad.push(`${f}:${i + 1}: ${line.trim().slice(0, 120)}`);
      });
    }
    expect(bad, `files reaching outside the repository for golden cases (use test/harness/golden_root.ts):\n${bad.join('\n')}`).toEqual([]);
  });
});
