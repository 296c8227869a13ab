#!/usr/bin/env node
// `npm run build` with progress, for the commands that build before they run (npm run bench,
// bench:kernels, demo): a build from a fresh clone takes ~45 s on 2 cores, and a silent pause that long
// reads as a hang. Runs `tsc -b --verbose` and prints, on stderr, one line per project it builds
// ("[build] 3/8 packages/unet (12 s)"), a line every 10 s while one compiles, and the total; on an
// up-to-date tree one line. Compiler errors are printed as tsc prints them, and the exit status is tsc's.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';

const repo = join(import.meta.dirname, '..');
const tsc = createRequire(join(repo, 'package.json')).resolve('typescript/bin/tsc');
const t0 = performance.now();
const secs = () => `${((performance.now() - t0) / 1000).toFixed(0)} s`;
const say = (msg) => process.stderr.write(`[build] ${msg}\n`);

const child = spawn(process.execPath, [tsc, '-b', '--verbose'], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
let projects = 0, building = 0, current = '', built = 0;
const diagnostics = [];
let pending = '';
const heartbeat = setInterval(() => { if (current) say(`still compiling ${current} (${secs()})`); }, 10_000);

function onLine(line) {
  const text = line.replace(/^\S+ \S+ - /, ''); // drop the "4:57:58 AM - " timestamp
  if (/^\s+\* /.test(line)) { projects++; return; }
  const m = /^Building project '(.+)'\.\.\.$/.exec(text);
  if (m) {
    building++;
    current = relative(repo, m[1]).replace(/\/?tsconfig\.json$/, '') || '.';
    say(`${building}/${Math.max(projects - 1, building)} building ${current} (${secs()})`);
    built++;
    return;
  }
  if (/^(Projects in this build|Project '|Updating (unchanged )?output timestamps|$)/.test(text)) return;
  diagnostics.push(line); // compiler errors and anything else tsc says
}

const feed = (chunk) => {
  pending += chunk;
  const lines = pending.split('\n');
  pending = lines.pop() ?? '';
  lines.forEach(onLine);
};
child.stdout.setEncoding('utf8').on('data', feed);
child.stderr.setEncoding('utf8').on('data', feed);
child.on('close', (code) => {
  clearInterval(heartbeat);
  if (pending) onLine(pending);
  if (diagnostics.length) process.stderr.write(`${diagnostics.join('\n')}\n`);
  if (code !== 0) {
    say(`failed after ${secs()} (tsc exit ${code})`);
    process.exit(code ?? 1);
  }
  say(built === 0 ? `up to date (${secs()})` : `done: ${built} project(s) built in ${secs()}`);
});
