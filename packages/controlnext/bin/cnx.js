#!/usr/bin/env node
// The `cnx` command (package.json "bin"). A committed, executable launcher for the compiled CLI, so the
// bin works after `npm ci && npm run build` (tsc does not set the executable bit on dist/cli/main.js).
// It loads the package's Node entry (dist/node.js), where the CLI lives.
//
// Process-level concerns live here, not in main(): a reader that closes the pipe early
// (`cnx schedulers | head -1`) ends the process quietly instead of an unhandled EPIPE error, and
// running before a build says what to do instead of printing a module-resolution stack.

import { existsSync } from 'node:fs';

for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => {
    if (e && e.code === 'EPIPE') process.exit(process.exitCode ?? 0); // the reader is gone: nothing left to say
    throw e;
  });
}

const entry = new URL('../dist/node.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('cnx: error: the package is not built yet (no packages/controlnext/dist/node.js): run `npm run build` in the repository root first\n');
  process.exit(1);
}

let main;
try {
  ({ main } = await import(entry.href));
} catch (e) {
  // A partial build (another package's dist/ missing) fails here with a module-resolution error.
  const code = e && e.code;
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'ERR_PACKAGE_PATH_NOT_EXPORTED') throw e;
  process.stderr.write(`cnx: error: the build is incomplete (${e.message.split('\n')[0]}): run \`npm run build\` in the repository root\n`);
  process.exit(1);
}
main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e) => {
  process.stderr.write(`cnx: error: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
