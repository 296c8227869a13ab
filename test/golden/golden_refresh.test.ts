// The golden tree lives in the repository (golden/) and `npm run golden:refresh` keeps it equal to the
// reference generators' tree: the diff names added, changed (with the files) and removed cases, applying
// it makes the trees equal, and the CLI's --check says whether they differ. Also: the repository copy is
// what the tests read unless CNX_GOLDEN_DIR says otherwise.

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyDiff, describeDiff, diffTrees, isEmptyDiff } from '@cnx/golden';
import { GOLDEN_ROOT, REPO_ROOT } from '../harness/golden_root.js';

const tmp = mkdtempSync(join(tmpdir(), 'cnx-golden-refresh-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function write(root: string, files: Record<string, string>): void {
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(join(root, p, '..'), { recursive: true });
    writeFileSync(join(root, p), text);
  }
}

describe('golden refresh', () => {
  it('reports added, changed and removed cases, and applying the diff makes the trees equal', () => {
    const src = join(tmp, 'src'), dst = join(tmp, 'dst');
    write(dst, {
      'README.md': 'old', 'kept/case.json': '{}', 'edited/case.json': '{"a":1}', 'edited/unet/config.json': 'x',
      'edited/stale.txt': 'gone soon', 'dropped/case.json': '{}',
    });
    write(src, {
      'README.md': 'new', 'kept/case.json': '{}', 'edited/case.json': '{"a":2}', 'edited/unet/config.json': 'x',
      'fresh/case.json': '{}', 'fresh/io.safetensors': 'bytes',
    });
    const diff = diffTrees(src, dst);
    expect(diff.added.map((c) => c.name)).toEqual(['fresh']);
    expect(diff.added[0]!.files).toEqual(['case.json', 'io.safetensors']);
    expect(diff.changed.map((c) => [c.name, c.files])).toEqual([['edited', ['case.json', 'stale.txt (removed)']]]);
    expect(diff.removed.map((c) => c.name)).toEqual(['dropped']);
    expect(diff.unchanged).toEqual(['kept']);
    expect(diff.topFilesChanged).toEqual(['README.md']);
    expect(describeDiff(diff).at(-1)).toBe('1 added, 1 changed, 1 removed, 1 unchanged');
    applyDiff(src, dst, diff);
    expect(isEmptyDiff(diffTrees(src, dst))).toBe(true);
    expect(existsSync(join(dst, 'dropped'))).toBe(false);
    expect(existsSync(join(dst, 'edited', 'stale.txt'))).toBe(false);
    expect(readFileSync(join(dst, 'edited', 'case.json'), 'utf8')).toBe('{"a":2}');
  });

  it('the CLI: --check exits 1 on a difference and 0 on none; a bad option exits 2', () => {
    const cli = join(REPO_ROOT, 'packages', 'golden', 'dist', 'refresh_cli.js');
    const src = join(tmp, 'cli-src');
    write(src, { 'a/case.json': '{}' });
    const differs = spawnSync(process.execPath, [cli, src, '--check'], { encoding: 'utf8' });
    expect(differs.status).toBe(1);
    expect(differs.stdout).toMatch(/added {4}a \(1 files/);
    expect(differs.stdout).toMatch(/removed +sd15_unet/); // the repository copy has cases the toy tree lacks
    const bad = spawnSync(process.execPath, [cli, '--frobnicate'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown option --frobnicate/);
    // Comparing the repository copy with itself: nothing to do.
    expect(execFileSync(process.execPath, [cli, join(REPO_ROOT, 'golden'), '--check'], { encoding: 'utf8' })).toMatch(/0 added, 0 changed, 0 removed/);
  });

  it('the tests read the repository copy unless CNX_GOLDEN_DIR is set', () => {
    if (process.env.CNX_GOLDEN_DIR) expect(GOLDEN_ROOT).not.toBe(join(REPO_ROOT, 'golden'));
    else expect(GOLDEN_ROOT).toBe(join(REPO_ROOT, 'golden'));
    expect(existsSync(join(REPO_ROOT, 'golden', 'README.md'))).toBe(true);
  });
});
