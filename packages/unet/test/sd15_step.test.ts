// The real SD1.5 UNet configuration with random weights runs one denoising step at 64x64 pixels
// (an 8x8 latent) on the CPU backend: every layer of the 859,520,964-parameter network executes.
// The work runs in a child process (fixtures/sd15_step_child.mjs): see there why.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

describe('SD1.5 UNet, random weights, CPU', () => {
  it('runs one step at 64x64 pixels', async () => {
    const child = join(import.meta.dirname, 'fixtures', 'sd15_step_child.mjs');
    const { stdout } = await promisify(execFile)(process.execPath, [child], { maxBuffer: 1 << 24 });
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as {
      parameters: number; outShape: number[]; shapes: Record<string, number[]>; finite: boolean; rms: number;
      buildSeconds: number; stepSeconds: number; liveBytesAfter: number;
    };
    expect(r.parameters).toBe(859_520_964);
    expect(r.outShape).toEqual([1, 4, 8, 8]);
    // The skip/upsample bookkeeping at the real depth: 12 skips, 8x8 -> 1x1 at the bottom, back to 8x8.
    expect(r.shapes['down_blocks.2.1.2']).toEqual([1, 1280, 1, 1]);
    expect(r.shapes['mid_block']).toEqual([1, 1280, 1, 1]);
    expect(r.shapes['up_blocks.0']).toEqual([1, 1280, 2, 2]);
    expect(r.shapes['up_blocks.3']).toEqual([1, 320, 8, 8]);
    expect(r.finite).toBe(true);
    expect(r.rms).toBeGreaterThan(1e-3); // a live signal went through every block
    expect(r.liveBytesAfter).toBe(0); // every intermediate and parameter was freed
    console.log(`SD1.5 UNet (CPU): build ${r.buildSeconds.toFixed(1)} s, one step at 8x8 latent ${r.stepSeconds.toFixed(1)} s, output rms ${r.rms.toFixed(3)}`);
  }, 600_000);
});
