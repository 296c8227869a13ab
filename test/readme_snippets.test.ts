// The README's snippets cannot rot: this test runs them, in document order, in a fresh folder.
//  - every ```ts block runs as written (transpiled by esbuild, run by Node as an ES module that imports
//    the workspace packages); a block that is not runnable fails here;
//  - every `npx cnx ...` command of a ```sh block runs (as `cnx` from node_modules/.bin) when the files
//    it names exist in that folder (those the README's own commands made: `cnx tiny-model tiny-sd15`);
//    commands that need a real model folder are listed as not run, never counted as passed, and at
//    least the first-run commands must have run.
// Exit status 0 is required of each; the files the snippets say they write must be there.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { transform } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './harness/golden_root.js';

export interface Snippet { lang: string; code: string; line: number }

/** Fenced code blocks of a markdown text, with their language and first line number. */
export function fencedBlocks(markdown: string): Snippet[] {
  const out: Snippet[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^```(\w*)\s*$/.exec(lines[i]!);
    if (!m || m[1] === '') continue;
    const start = i + 1;
    let j = start;
    while (j < lines.length && !/^```\s*$/.test(lines[j]!)) j++;
    out.push({ lang: m[1]!, code: lines.slice(start, j).join('\n'), line: start + 1 });
    i = j;
  }
  return out;
}

/** The `npx cnx ...` commands of a shell block (continuation lines joined, trailing comments removed). */
export function cnxCommands(sh: string): string[] {
  const joined = sh.replace(/\\\n\s*/g, ' ');
  return joined.split('\n').map((l) => l.replace(/\s+#.*$/, '').trim()).filter((l) => l.startsWith('npx cnx '));
}

const PATH_FLAGS = new Set(['--model', '--controlnext', '--controlnext-unet', '--controlnet', '--control-image', '--init-image', '--lora', '--control-type-dir']);

/** Paths a cnx command reads (flag values naming files), from a simple shell-word split. */
export function pathsRead(cmd: string): string[] {
  const words = [...cmd.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
  const paths: string[] = [];
  for (let i = 0; i < words.length - 1; i++) if (PATH_FLAGS.has(words[i]!)) paths.push(words[i + 1]!.replace(/:[0-9.]+$/, ''));
  return paths;
}

const work = mkdtempSync(join(tmpdir(), 'cnx-readme-'));
symlinkSync(join(REPO_ROOT, 'node_modules'), join(work, 'node_modules'), 'dir');
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The environment of a snippet: the workspace's bins first; npm's own variables dropped. */
function env(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('npm_')) e[k] = v;
  e.PATH = [join(REPO_ROOT, 'node_modules', '.bin'), process.env.PATH ?? ''].join(delimiter);
  return e;
}

describe('README.md snippets', () => {
  const blocks = fencedBlocks(readFileSync(join(REPO_ROOT, 'README.md'), 'utf8'));
  const ran: string[] = [];
  const notRun: string[] = [];

  it('parses: the library snippets and the first-run command are there', () => {
    expect(blocks.filter((b) => b.lang === 'ts').length).toBeGreaterThanOrEqual(2);
    expect(blocks.some((b) => b.lang === 'sh' && b.code.includes('npx cnx tiny-model tiny-sd15'))).toBe(true);
  });

  // One test per block, in order: later blocks use what earlier ones wrote (the tiny model folder).
  for (const [k, b] of blocks.entries()) {
    if (b.lang === 'ts') {
      it(`README.md:${b.line}: the TypeScript snippet runs`, async () => {
        const { code } = await transform(b.code, { loader: 'ts', format: 'esm', target: 'node20' });
        const file = join(work, `snippet-${k}.mjs`);
        writeFileSync(file, code);
        const r = spawnSync(process.execPath, [file], { cwd: work, env: env(), encoding: 'utf8', timeout: 240_000 });
        expect(r.status, `README.md:${b.line} exited ${r.status ?? r.signal}\n${r.stdout}\n${r.stderr}`).toBe(0);
        ran.push(`README.md:${b.line} (ts)`);
        for (const m of b.code.matchAll(/writePng\('([^']+)'/g)) expect(existsSync(join(work, m[1]!)), `${m[1]} written`).toBe(true);
      }, 300_000);
    } else if (b.lang === 'sh') {
      for (const cmd of cnxCommands(b.code)) {
        it(`README.md:${b.line}: ${cmd.slice(0, 70)}`, () => {
          const missing = pathsRead(cmd).filter((p) => !existsSync(join(work, p)));
          if (missing.length > 0) {
            notRun.push(`${cmd.slice(0, 80)} (needs ${missing.join(', ')})`);
            return;
          }
          const r = spawnSync('bash', ['-c', cmd.replace(/^npx cnx /, 'cnx ')], { cwd: work, env: env(), encoding: 'utf8', timeout: 240_000 });
          expect(r.status, `${cmd}\nexited ${r.status ?? r.signal}\n${r.stdout}\n${r.stderr}`).toBe(0);
          ran.push(cmd);
          for (const m of cmd.matchAll(/--output (\S+)/g)) expect(existsSync(join(work, m[1]!)), `${m[1]} written`).toBe(true);
        }, 300_000);
      }
    }
  }

  it('ran the first-run commands and every TypeScript snippet; lists what needs a real model', () => {
    console.log(`[readme] ran ${ran.length}: ${ran.join(' | ')}`);
    if (notRun.length) console.log(`[readme] NOT RUN (need a real model folder; not counted as passed): ${notRun.join(' | ')}`);
    expect(ran.some((c) => c.startsWith('npx cnx tiny-model'))).toBe(true);
    expect(ran.filter((c) => c.endsWith('(ts)')).length).toBe(blocks.filter((b) => b.lang === 'ts').length);
    expect(existsSync(join(work, 'tiny-sd15', 'model_index.json'))).toBe(true);
  });
});
