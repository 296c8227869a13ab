#!/usr/bin/env node
// `prepack` of every published package (npm pack / npm publish run it in the package's folder): build the
// package and the packages it references (tsc -b: incremental, so a built tree costs a second), refuse
// stale output (a dist/*.js whose src/*.ts is gone would ship code that no longer exists in the source),
// and put the repository's LICENSE beside the package.json so the tarball carries it.

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';

const pkgDir = process.cwd();
const repo = join(import.meta.dirname, '..');
const name = JSON.parse(await import('node:fs').then((fs) => fs.readFileSync(join(pkgDir, 'package.json'), 'utf8'))).name;

const tsc = createRequire(join(repo, 'package.json')).resolve('typescript/bin/tsc');
process.stderr.write(`prepack ${name}: building (tsc -b)\n`);
const r = spawnSync(process.execPath, [tsc, '-b', pkgDir], { stdio: 'inherit' });
if (r.status !== 0) {
  process.stderr.write(`prepack ${name}: the build failed (exit ${r.status})\n`);
  process.exit(1);
}

const stale = [];
const walk = (d) => {
  for (const e of readdirSync(d)) {
    const p = join(d, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (e.endsWith('.js')) {
      const src = join(pkgDir, 'src', relative(join(pkgDir, 'dist'), p)).replace(/\.js$/, '');
      if (!existsSync(`${src}.ts`) && !existsSync(`${src}.js`)) stale.push(relative(pkgDir, p));
    }
  }
};
walk(join(pkgDir, 'dist'));
if (stale.length > 0) {
  process.stderr.write(`prepack ${name}: dist/ holds output of deleted sources: ${stale.join(', ')}\n` +
    '  run `npm run clean && npm run build` at the repository root, then pack again\n');
  process.exit(1);
}
copyFileSync(join(repo, 'LICENSE'), join(pkgDir, 'LICENSE'));
