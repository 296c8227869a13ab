// The published packages work outside this repository: every library package is packed (npm pack, which
// runs its prepack build), the tarballs are installed into a fresh project in a temporary folder (no
// workspace, no hoisting from here), and there
//  - each package.json has what a registry package needs (not private, version, licence, description,
//    repository with its folder, files, exports with types, internal dependencies pinned to the
//    workspace versions) and each tarball holds its built entries, declarations, worker files, the bin;
//  - every bare import in the shipped JavaScript is a declared dependency or peer dependency;
//  - a Node consumer (consumer/consumer_node.ts) and a browser consumer (consumer/consumer_browser.ts:
//    bundler resolution, "browser" condition, DOM types, no @types/node) type-check with skipLibCheck: false;
//  - the Node consumer runs a tiny generation through the public API and gives the same image as the
//    same file run against the workspace; without the optional 'webgpu' peer, WebGPU fails saying so;
//  - the installed `cnx` bin writes the tiny model and generates from it.
// The npm cache that `npm ci` filled serves the third-party packages (--prefer-offline).

import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { transform } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../harness/golden_root.js';

const PACKAGES = ['tensor', 'kernels', 'unet', 'controlnext'] as const;
const CONSUMER_SRC = join(import.meta.dirname, 'consumer');
const tsc = createRequire(join(REPO_ROOT, 'package.json')).resolve('typescript/bin/tsc');
const NODE_BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

const tmp = mkdtempSync(join(tmpdir(), 'cnx-pack-'));
const packs = join(tmp, 'packs');
const project = join(tmp, 'consumer');
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The environment of child npm / node processes: npm's variables from `npm test` dropped (they would configure the child npm). */
function env(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('npm_')) e[k] = v;
  return e;
}

function run(cmd: string, args: string[], cwd: string, timeout = 240_000): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env: env(), encoding: 'utf8', timeout });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited ${r.status ?? r.signal}\n${r.stdout}\n${r.stderr}`);
  return r;
}

const workspaceJson = (p: string) => JSON.parse(readFileSync(join(REPO_ROOT, 'packages', p, 'package.json'), 'utf8')) as Record<string, any>;
const installedDir = (p: string) => join(project, 'node_modules', '@cnx', p);
const timings: string[] = [];
const timed = <T>(what: string, f: () => T): T => {
  const t0 = performance.now();
  try { return f(); } finally { timings.push(`${what} ${((performance.now() - t0) / 1000).toFixed(1)} s`); }
};

beforeAll(() => {
  mkdirSync(packs);
  mkdirSync(project);
  const tarballs = timed('pack', () => PACKAGES.map((p) => {
    const out = run('npm', ['pack', '--json', '--pack-destination', packs], join(REPO_ROOT, 'packages', p)).stdout;
    const info = JSON.parse(out.slice(out.indexOf('['))) as { filename: string }[];
    return join(packs, info[0]!.filename);
  }));
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'cnx-consumer', private: true, type: 'module' }, null, 2));
  const typesNode = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> }).devDependencies['@types/node'];
  timed('install', () => run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', ...tarballs, `@types/node@${typesNode}`], project));
  for (const f of readdirSync(CONSUMER_SRC)) copyFileSync(join(CONSUMER_SRC, f), join(project, f));
}, 600_000);

afterAll(() => console.log(`[pack_install] ${timings.join(', ')}`));

describe('packed packages installed into a fresh project', () => {
  it('package.json: publishable metadata, internal dependencies pinned to the workspace versions', () => {
    const urls = new Set<string>();
    for (const p of PACKAGES) {
      const pj = JSON.parse(readFileSync(join(installedDir(p), 'package.json'), 'utf8')) as Record<string, any>;
      const where = `@cnx/${p}`;
      expect(pj.private, where).not.toBe(true);
      expect(pj.version, where).toMatch(/^\d+\.\d+\.\d+/);
      expect(pj.license, where).toBe('Apache-2.0');
      expect(String(pj.description).length, where).toBeGreaterThan(30);
      expect(pj.repository?.directory, where).toBe(`packages/${p}`);
      urls.add(pj.repository?.url);
      expect(pj.engines?.node, where).toBe('>=20.16');
      expect(pj.exports?.['.'], where).toBeDefined();
      for (const [dep, range] of Object.entries(pj.dependencies ?? {})) {
        if (dep.startsWith('@cnx/')) expect(range, `${where} -> ${dep}`).toBe(workspaceJson(dep.slice(5)).version);
      }
    }
    expect(urls.size).toBe(1);
    for (const p of ['kernels', 'controlnext']) {
      const pj = workspaceJson(p);
      expect(Object.keys(pj.exports['.']), p).toEqual(['node', 'browser', 'default']);
      expect(pj.peerDependenciesMeta?.webgpu?.optional, p).toBe(true);
    }
  });

  it('each tarball holds its built entries, declarations, worker files, licence and readme; no build info', () => {
    const need: Record<string, string[]> = {
      tensor: ['dist/index.js', 'dist/index.d.ts', 'dist/cpu/gemm_worker.js'],
      kernels: ['dist/index.js', 'dist/index.d.ts', 'dist/node.js', 'dist/node.d.ts', 'dist/wasm/pool_worker.js'],
      unet: ['dist/index.js', 'dist/index.d.ts'],
      controlnext: ['dist/index.js', 'dist/index.d.ts', 'dist/node.js', 'dist/node.d.ts', 'bin/cnx.js'],
    };
    for (const p of PACKAGES) {
      for (const f of [...need[p]!, 'LICENSE', 'README.md', 'package.json']) expect(existsSync(join(installedDir(p), f)), `@cnx/${p}: ${f}`).toBe(true);
      expect(existsSync(join(installedDir(p), 'dist', '.tsbuildinfo')), `@cnx/${p}: .tsbuildinfo shipped`).toBe(false);
      expect(existsSync(join(installedDir(p), 'test')), `@cnx/${p}: tests shipped`).toBe(false);
    }
  });

  it('every bare import in the shipped JavaScript is a declared dependency or peer dependency', () => {
    const undeclared: string[] = [];
    for (const p of PACKAGES) {
      const pj = JSON.parse(readFileSync(join(installedDir(p), 'package.json'), 'utf8')) as Record<string, any>;
      const declared = new Set([...Object.keys(pj.dependencies ?? {}), ...Object.keys(pj.peerDependencies ?? {})]);
      const walk = (d: string): string[] => readdirSync(d).flatMap((e) => {
        const f = join(d, e);
        return statSync(f).isDirectory() ? walk(f) : f.endsWith('.js') ? [f] : [];
      });
      for (const file of [...walk(join(installedDir(p), 'dist')), ...(p === 'controlnext' ? [join(installedDir(p), 'bin', 'cnx.js')] : [])]) {
        const text = readFileSync(file, 'utf8');
        // import ... from 'x' (also across lines), export ... from 'x', import 'x', import('x')
        for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
          const spec = m[1] ?? m[2] ?? m[3]!;
          if (spec.startsWith('.') || NODE_BUILTINS.has(spec)) continue;
          const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
          if (!declared.has(name)) undeclared.push(`@cnx/${p} ${relative(installedDir(p), file)} imports '${spec}'`);
        }
      }
    }
    expect(undeclared, undeclared.join('\n')).toEqual([]);
  });

  it('a Node consumer and a browser consumer type-check against the installed declarations (skipLibCheck: false)', () => {
    for (const cfg of ['tsconfig.node.json', 'tsconfig.browser.json']) {
      const r = spawnSync(process.execPath, [tsc, '-p', cfg], { cwd: project, env: env(), encoding: 'utf8', timeout: 240_000 });
      expect(r.status, `tsc -p ${cfg}:\n${r.stdout}${r.stderr}`).toBe(0);
    }
  }, 300_000);

  it('the Node consumer generates through the public API, as the same file does against the workspace', async () => {
    const { code } = await transform(readFileSync(join(CONSUMER_SRC, 'consumer_node.ts'), 'utf8'), { loader: 'ts', format: 'esm', target: 'node20' });
    writeFileSync(join(project, 'consumer_node.mjs'), code);
    const installed = JSON.parse(timed('consumer run', () => run(process.execPath, ['consumer_node.mjs', 'tiny'], project)).stdout.trim().split('\n').pop()!);
    expect(installed.shape).toEqual([1, 3, 128, 128]);
    expect(existsSync(join(project, 'tiny-out.png'))).toBe(true);
    expect(installed.added).toEqual([4, 6]);
    expect(installed.params).toBeGreaterThan(100_000);
    expect(installed.backends).toEqual(expect.arrayContaining(['cpu', 'wasm', 'webgpu']));
    expect(installed.webgpu).toMatch(/needs Dawn from the npm package 'webgpu' \(an optional peer dependency of @cnx\/kernels\): `npm install webgpu`/);
    // The same program against the workspace build: the same image.
    const ws = join(tmp, 'workspace-run');
    mkdirSync(ws);
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(ws, 'node_modules'), 'dir');
    writeFileSync(join(ws, 'consumer_node.mjs'), code);
    const workspace = JSON.parse(run(process.execPath, ['consumer_node.mjs', 'tiny'], ws).stdout.trim().split('\n').pop()!);
    expect([installed.sum, installed.sumSq]).toEqual([workspace.sum, workspace.sumSq]);
  }, 300_000);

  it('the installed cnx bin: tiny-model, then generate from that folder', () => {
    const cnx = join(project, 'node_modules', '.bin', 'cnx');
    expect(run(cnx, ['tiny-model', 'bin-model'], project).stdout).toMatch(/^wrote bin-model: 16 files/);
    const r = timed('cnx generate', () => run(cnx, ['generate', '--model', 'bin-model', '--controlnext', 'bin-model/controlnext/controlnet.safetensors',
      '--control-image', 'bin-model/controlnext/example_condition.png', '--prompt', 'a test', '--steps', '2', '--width', '64', '--height', '64',
      '--seed', '1', '--backend', 'wasm', '--output', 'bin.png'], project));
    expect(r.stdout).toMatch(/^wrote bin\.png 64x64 seed=1 steps=2 scheduler=unipc/);
    expect(existsSync(join(project, 'bin.png'))).toBe(true);
    expect(execFileSync(cnx, ['--help'], { cwd: project, env: env(), encoding: 'utf8' })).toMatch(/tiny-model/);
  }, 300_000);
});
