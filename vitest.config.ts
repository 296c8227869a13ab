import { defineConfig } from 'vitest/config';

// Tests import the workspace packages' built output (npm test builds first). WebGPU adapters have
// crashed inside worker threads, so every test file runs in a forked process.
export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts', 'bench/test/**/*.test.ts'],
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 300_000,
    hookTimeout: 120_000,
    reporters: ['default'],
    // Names a test that blocks the event loop long enough to starve vitest's worker RPC (60 s).
    setupFiles: ['test/harness/event_loop_watch.ts'],
  },
});
