// generate()'s output size is capped (MAX_OUTPUT_SIDE) however it is decided (issue 17 item 1: a size
// taken from a 16384x16384 control image was not capped, and the process grew to 14.9 GB): given, taken
// from the control image or from the UNet's sample_size, a side over the cap is refused before the
// latents or any activation are allocated.

import { describe, expect, it } from 'vitest';
import { CpuBackend } from '@cnx/tensor';
import { MAX_OUTPUT_SIDE, tinyPipeline } from '@cnx/controlnext';

describe('generate() output size cap', () => {
  const backend = new CpuBackend();
  it('refuses a side over the cap from options or from the control image, naming where it came from', async () => {
    const plain = tinyPipeline(backend, { control: false });
    await expect(plain.generate({ prompt: 'x', height: MAX_OUTPUT_SIDE + 8, width: 16 }))
      .rejects.toThrow(`generate: height must be at most ${MAX_OUTPUT_SIDE}, found ${MAX_OUTPUT_SIDE + 8}`);
    plain.dispose();
    const pipe = tinyPipeline(backend, { control: true });
    // A wide, one-pixel-high control image: small in memory, over the cap in width.
    const wide = backend.fromRaw(new Float32Array(3 * 8 * 4104), [1, 3, 8, 4104]);
    const live = backend.memory().liveBytes;
    const t0 = performance.now();
    await expect(pipe.generate({ prompt: 'x', controlImage: wide, numInferenceSteps: 1 }))
      .rejects.toThrow(/generate: width must be at most 4096, found 4104 \(taken from the control \/ init image or the UNet's sample_size: give it explicitly\)/);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(backend.memory().liveBytes).toBe(live);
    wide.dispose();
    pipe.dispose();
  });
});
