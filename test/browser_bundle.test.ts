// The browser-safe core (architecture issue, item 6): each library package's browser entry (its package.json
// "exports", resolved with the conditions a browser bundler uses: "browser", "import", "default" — never
// "node") bundles with esbuild --platform=browser, with no externals and no stubs. A reachable Node
// builtin (node:fs, zlib, ...) fails the bundle; the test then reports the import chain from the entry
// to the file that imports it. The bundled code must not use Node's Buffer global either.
//
// Lazy lookups through process.getBuiltinModule (@cnx/tensor nodeFs) import nothing and are allowed:
// they are how a shared class offers a Node-only convenience (fromFolder) that fails with a clear
// message in a browser, where the bytes-based form (fromFiles) is the path.
// @cnx/golden and @cnx/bench are Node command-line tools and have no browser entry.

import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { build, type Metafile, type Plugin } from 'esbuild';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const PACKAGES = ['@cnx/tensor', '@cnx/kernels', '@cnx/unet', '@cnx/controlnext'] as const;
const NODE_BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

const options = (pkg: string) => ({
  stdin: { contents: `export * from '${pkg}';`, resolveDir: root, loader: 'js' as const, sourcefile: `<${pkg} browser entry>` },
  bundle: true, platform: 'browser' as const, format: 'esm' as const, write: false, logLevel: 'silent' as const, metafile: true,
});

/** Import chains entry -> ... -> importer for each Node builtin a diagnostic build (builtins external) reaches. */
async function nodeImportChains(pkg: string): Promise<string[]> {
  const hits: { importer: string; path: string }[] = [];
  const catchBuiltins: Plugin = {
    name: 'report-node-builtins',
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (!NODE_BUILTINS.has(args.path)) return undefined;
        hits.push({ importer: args.importer, path: args.path });
        return { path: args.path, external: true };
      });
    },
  };
  const r = await build({ ...options(pkg), plugins: [catchBuiltins] });
  const meta = r.metafile as Metafile;
  // Reverse BFS from each importer to the entry over the metafile's import graph.
  const parents = new Map<string, string>();
  const entry = Object.keys(meta.inputs).find((f) => f.startsWith('<'))!;
  const queue = [entry];
  const seen = new Set(queue);
  while (queue.length > 0) {
    const f = queue.shift()!;
    for (const imp of meta.inputs[f]?.imports ?? []) {
      if (imp.external || seen.has(imp.path)) continue;
      seen.add(imp.path);
      parents.set(imp.path, f);
      queue.push(imp.path);
    }
  }
  return hits.map(({ importer, path }) => {
    const rel = importer.startsWith(root) ? importer.slice(root.length + 1) : importer;
    const chain = [path, rel];
    for (let f = parents.get(rel); f; f = parents.get(f)) chain.push(f);
    return chain.join(' <- ');
  });
}

describe('browser bundles', () => {
  for (const pkg of PACKAGES) {
    it(`${pkg}: the browser entry bundles for the browser with no Node import reachable`, async () => {
      let text = '';
      try {
        const r = await build(options(pkg));
        text = r.outputFiles?.[0]?.text ?? '';
      } catch (e) {
        const errors = (e as { errors?: { text: string }[] }).errors?.map((x) => x.text) ?? [String(e)];
        const chains = await nodeImportChains(pkg).catch(() => []);
        expect.fail(`${pkg} does not bundle for the browser:\n  ${errors.slice(0, 10).join('\n  ')}\nNode imports reached:\n  ${chains.join('\n  ')}`);
      }
      expect(text.length).toBeGreaterThan(1000);
      // Node's Buffer global (Buffer.from / Buffer.alloc / new Buffer): absent in browsers.
      const buffer = [...text.matchAll(/\bBuffer\s*\.\s*(from|alloc|allocUnsafe|concat|isBuffer|byteLength)\b|\bnew Buffer\b/g)].map((m) => m[0]);
      expect(buffer, `${pkg}: Buffer used in the browser bundle`).toEqual([]);
    }, 120_000);
  }

  it('the diagnostic names the import chain (checked on a Node-only module)', async () => {
    // The controlnext Node entry reaches pngjs -> zlib: the report must say where from.
    const chains = await nodeImportChains(join(root, 'packages/controlnext/dist/node.js'));
    expect(chains.some((c) => /^(node:)?(zlib|fs|stream|util) <- .*<- packages\/controlnext\/dist\/node\.js/.test(c)), chains.join('\n')).toBe(true);
  }, 120_000);
});
