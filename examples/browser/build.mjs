#!/usr/bin/env node
// Build (and optionally serve) the browser demo: bundles demo.ts with esbuild for the browser (the packages'
// browser entries; no Node module reachable) into OUT/demo.js beside a copy of index.html.
//   npm run demo                                   build into examples/browser/dist/ and serve it on http://127.0.0.1:8080/
//   node examples/browser/build.mjs [--out DIR] [--serve [PORT]]
// WebGPU needs a secure context: localhost / 127.0.0.1 is one; another host needs https.

import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { build } from 'esbuild';

const here = import.meta.dirname;
const args = process.argv.slice(2);
const flag = (name) => args.indexOf(name);
const out = resolve(flag('--out') >= 0 ? args[flag('--out') + 1] : join(here, 'dist'));

mkdirSync(out, { recursive: true });
const t0 = performance.now();
await build({
  entryPoints: [join(here, 'demo.ts')], bundle: true, platform: 'browser', format: 'esm', target: 'es2022',
  outfile: join(out, 'demo.js'), sourcemap: true, logLevel: 'warning',
});
copyFileSync(join(here, 'index.html'), join(out, 'index.html'));
const kib = (statSync(join(out, 'demo.js')).size / 1024).toFixed(0);
console.log(`demo: built ${join(out, 'demo.js')} (${kib} KiB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

if (flag('--serve') >= 0) {
  const port = Number(args[flag('--serve') + 1]) || 8080;
  const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.map': 'application/json', '.json': 'application/json' };
  createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '') || 'index.html';
    const file = normalize(join(out, rel));
    if (!file.startsWith(out + sep) || !existsSync(file) || !statSync(file).isFile()) return void res.writeHead(404).end('not found');
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  }).listen(port, '127.0.0.1', () => console.log(`demo: open http://127.0.0.1:${port}/ (Chromium: WebGPU on by default; Linux may need --enable-unsafe-webgpu)`));
}
