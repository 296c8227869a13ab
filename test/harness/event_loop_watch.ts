// A vitest setup file: warns when a test file blocks its worker's event loop for long. Vitest's worker
// talks to the main process over an RPC with a fixed 60 s timeout ("Timeout calling onTaskUpdate"); a
// test that runs synchronously for about that long (a big CPU-reference forward, a synchronous shader
// compile) fails the whole run with an unhandled error that names no test. This names it: a 1 s timer
// measures how late it fires, and a lateness over BLOCK_WARN_MS is printed with the running test.

import { afterAll, expect } from 'vitest';

const TICK_MS = 1000;
const BLOCK_WARN_MS = 20_000;

let last = performance.now();
let worst = { ms: 0, test: '' };
const timer = setInterval(() => {
  const now = performance.now();
  const late = now - last - TICK_MS;
  last = now;
  if (late > worst.ms) worst = { ms: late, test: expect.getState().currentTestName ?? '(between tests)' };
  if (late > BLOCK_WARN_MS) {
    console.warn(`[event loop] blocked for ${(late / 1000).toFixed(1)} s in "${expect.getState().currentTestName ?? '(between tests)'}" ` +
      '(vitest\'s worker RPC times out at 60 s: split the work or move it to a child process)');
  }
}, TICK_MS);
timer.unref();

afterAll(() => {
  clearInterval(timer);
  if (process.env.CNX_EVENT_LOOP_REPORT === '1' && worst.ms > 0) {
    console.log(`[event loop] longest block ${(worst.ms / 1000).toFixed(1)} s in "${worst.test}"`);
  }
});
