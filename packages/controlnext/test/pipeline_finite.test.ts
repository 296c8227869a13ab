// The sampling loop's finite check (issue 17 item 4: one NaN in the latents or a weight, or norm_eps "x",
// gave an all-black PNG and exit code 0). NaN or infinities in the starting latents, in the latents after
// any step, or in the decoded image stop generate() with an error naming where they appeared; with
// checkFinite: false the loop runs to the end as before. On every backend (WGSL's NaN handling is
// implementation-defined, so WebGPU is checked for real, not assumed).

import { expect } from 'vitest';
import { ops, type Tensor } from '@cnx/tensor';
import { NonFiniteError, tinyPipeline, type GenerateOptions } from '@cnx/controlnext';
import { describeEachBackend } from '../../../test/harness/backends.js';

const base: GenerateOptions = { prompt: 'x', height: 16, width: 16, numInferenceSteps: 3, guidanceScale: 2, seed: 4 };

/** A UNet hook that turns the mid-block output into NaN on the `at`-th UNet call (1-based), else leaves it. */
function nanAt(at: number): GenerateOptions['hooks'] {
  let calls = 0;
  return { mid_block: (x: Tensor) => (++calls === at ? ops.affine(x, Number.NaN) : x) };
}

describeEachBackend('finite check of the sampling loop', (test) => {
  test('a NaN appearing at step 2 stops the loop naming step 2; the pipeline stays usable', async (backend) => {
    const pipe = tinyPipeline(backend, { control: false });
    const live = backend.memory().liveBytes;
    let err: unknown;
    try { await pipe.generate({ ...base, hooks: nanAt(2) }); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(NonFiniteError);
    expect((err as Error).message).toMatch(/^the latents after step 2 of 3 \(timestep \d+\) holds NaN or infinite values, so the image would come out black or as noise \(generate option checkFinite: false turns this check off\)$/);
    expect(backend.memory().liveBytes).toBe(live); // nothing of the failed call is left
    const ok = await pipe.generate(base);
    expect([...await ok.images.data()].every(Number.isFinite)).toBe(true);
    ok.images.dispose();
    ok.latents.dispose();
    pipe.dispose();
  }, 600_000);

  test('NaN in the given latents is named as the starting latents; checkFinite: false runs to the end', async (backend) => {
    const pipe = tinyPipeline(backend, { control: false });
    const data = new Float32Array(4 * 2 * 2).fill(0.5);
    data[5] = Number.POSITIVE_INFINITY;
    const latents = backend.fromRaw(data, [1, 4, 2, 2]);
    await expect(pipe.generate({ ...base, latents })).rejects.toThrow(/^the starting latents \(the latents given\) holds NaN or infinite values/);
    const r = await pipe.generate({ ...base, hooks: nanAt(1), checkFinite: false });
    expect(r.timesteps.length).toBe(3);
    expect([...await r.latents.data()].some(Number.isNaN)).toBe(true);
    [r.images, r.latents, latents].forEach((t) => t.dispose());
    pipe.dispose();
  }, 600_000);

  test('an overflowing VAE decoder is named (finite latents, infinite image)', async (backend) => {
    const pipe = tinyPipeline(backend, { control: false });
    const w = pipe.vae.getParameter('decoder.conv_out.weight');
    pipe.vae.setParameter('decoder.conv_out.weight', backend.fromRaw(new Float32Array(w.size).fill(3e38), w.shape));
    await expect(pipe.generate(base)).rejects.toThrow(/^the decoded image \(the VAE output of finite latents\) holds NaN or infinite values/);
    pipe.dispose();
  }, 600_000);
});
