#!/usr/bin/env node
// The `cnx` command (package.json "bin"). A committed, executable launcher for the compiled CLI, so the
// bin works after `npm ci && npm run build` (tsc does not set the executable bit on dist/cli/main.js).
// It loads the package's Node entry (dist/node.js), where the CLI lives.
import { main } from '../dist/node.js';

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e) => {
  process.stderr.write(`cnx: error: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
