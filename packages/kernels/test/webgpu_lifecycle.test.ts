// WebGPU backend lifecycle: creating and destroying backends must not grow memory (issue 17, defect 6:
// 20 create/destroy cycles took the RSS from 182 to 909 MB, because Dawn's Node binding keeps a device
// with an uncaptured-error handler alive, and the handler kept the destroyed backend, its pipelines and
// SwiftShader's compiled code reachable). Measured in a child process run with --expose-gc (RSS after a
// full collection; adapters are not created inside vitest's workers). Where no adapter exists the test
// skips loudly, and fails under CNX_REQUIRE_WEBGPU=1.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const CYCLES = 20;
/**
 * Bound on the RSS growth from the end of the first cycle (Dawn, the Vulkan driver and V8's code are
 * loaded by then) to the median of the last five. Measured on SwiftShader (2-core dev box): 40-60 MB
 * with the fix (allocator and GC noise; single samples reach +100 MB), 520 MB without it.
 */
const MAX_GROWTH_MIB = 150;

it(`${CYCLES} WebGPU backend create/destroy cycles keep RSS bounded and free every backend`, async (ctx) => {
  const script = fileURLToPath(new URL('./fixtures/create_destroy_cycles.mjs', import.meta.url));
  // Asynchronous: a blocking child would starve vitest's worker RPC.
  const { stdout: out } = await promisify(execFile)(process.execPath, ['--expose-gc', script, String(CYCLES)], {
    encoding: 'utf8', timeout: 240_000, maxBuffer: 1 << 24,
  });
  const result = JSON.parse(out.trim().split('\n').pop()!) as { rss?: number[]; alive?: number; description?: string; unavailable?: string };
  if (result.unavailable !== undefined) {
    if (process.env.CNX_REQUIRE_WEBGPU === '1') throw new Error(`WebGPU is required (CNX_REQUIRE_WEBGPU=1) but unavailable: ${result.unavailable}`);
    console.warn(`\n*** SKIPPING the WebGPU create/destroy test: ${result.unavailable} ***\n`);
    ctx.skip();
    return;
  }
  const rss = result.rss!;
  const tail = rss.slice(-5).sort((a, b) => a - b)[2]!;
  console.log(`[webgpu] ${result.description}\nRSS MiB per cycle: ${rss.map((r) => r.toFixed(0)).join(' ')}; ` +
    `growth after cycle 1: ${(tail - rss[1]!).toFixed(0)} MiB; backends reachable after GC: ${result.alive}`);
  expect(rss).toHaveLength(CYCLES + 1);
  // The cause, checked directly: destroyed backends are garbage (the last may still be referenced by a
  // settling promise of Dawn's), and the symptom: memory stops growing.
  expect(result.alive).toBeLessThanOrEqual(1);
  expect(tail - rss[1]!).toBeLessThan(MAX_GROWTH_MIB);
}, 300_000);
