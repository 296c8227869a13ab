// The pipeline on the tiny random model: memory stays flat over a 50-step loop (liveBytes after every
// step) and dispose() frees everything the pipeline allocated, the same seed gives the same image and another seed another, image-to-image runs the last
// floor(steps * strength) steps from the encoded image, guidance <= 1 runs without the unconditional
// half, and wrong inputs fail naming what was expected.

import { expect } from 'vitest';
import { ops, type Backend, type Tensor } from '@cnx/tensor';
import { tinyPipeline } from '@cnx/controlnext';
import { SCHEDULER_NAMES } from '@cnx/unet';
import { describeEachBackend } from '../../../test/harness/backends.js';

function controlImage(b: Backend, size: number, batch = 1): Tensor {
  const d = new Float32Array(batch * 3 * size * size);
  for (let i = 0; i < d.length; i++) d[i] = ((i * 37) % 11) / 10;
  return b.fromRaw(d, [batch, 3, size, size]);
}

describeEachBackend('pipeline', (test, name) => {
  // 50 steps on the CPU; fewer on WebGPU, where a software adapter takes seconds per step.
  const steps = name === 'cpu' ? 50 : 6;
  test(`memory does not grow over a ${steps}-step loop (liveBytes after each step); dispose() frees all of it`, async (b) => {
    const empty = b.memory().liveBytes;
    const pipe = tinyPipeline(b, { seed: 1 });
    const built = b.memory().liveBytes;
    expect(built).toBeGreaterThan(empty);
    const ctrl = controlImage(b, 16);
    const live: number[] = [];
    const r = await pipe.generate({
      prompt: 'x', height: 16, width: 16, numInferenceSteps: steps, seed: 3, controlImage: ctrl,
      observer: { onStep: () => { live.push(b.memory().liveBytes); } },
    });
    expect(live).toHaveLength(steps);
    // The multistep history fills during the first two steps; from then on every step ends at the same level.
    expect(new Set(live.slice(2)).size, `liveBytes per step: ${live.join(', ')}`).toBe(1);
    [r.images, r.latents, ctrl].forEach((t) => t.dispose());
    // Generating leaves nothing behind, and dispose() returns to the level before the pipeline was
    // built: every weight, cached embedding and scheduler table is released (not just 'something').
    expect(b.memory().liveBytes).toBe(built);
    pipe.dispose();
    expect(b.memory().liveBytes).toBe(empty);
  }, 600_000);

  test('same seed, same image; another seed, another image', async (b) => {
    const pipe = tinyPipeline(b, { seed: 2 });
    const ctrl = controlImage(b, 16);
    const gen = async (seed: number) => {
      const r = await pipe.generate({ prompt: 'a cube', negativePrompt: 'blur', height: 16, width: 16, numInferenceSteps: 2, seed, controlImage: ctrl });
      const d = await r.images.data();
      r.images.dispose(); r.latents.dispose();
      return d;
    };
    const a = await gen(11), a2 = await gen(11), c = await gen(12);
    expect(a2).toEqual(a);
    expect(c).not.toEqual(a);
    expect(a.every((v) => v >= 0 && v <= 1)).toBe(true);
    ctrl.dispose();
    pipe.dispose();
  }, 600_000);

  test('image-to-image runs floor(steps * strength) steps; no guidance runs batch B', async (b) => {
    const pipe = tinyPipeline(b, { seed: 3, control: false });
    const init = controlImage(b, 16);
    const seen: number[] = [];
    const r = await pipe.generate({
      prompt: 'x', initImage: init, strength: 0.5, numInferenceSteps: 4, seed: 1, guidanceScale: 1,
      observer: { onStep: (s) => { seen.push(s.modelInput.shape[0]!); } },
    });
    expect(r.timesteps).toEqual([500, 250]); // UniPC linspace for 4 steps: 999, 749, 500, 250
    expect(seen).toEqual([1, 1]);
    expect(r.images.shape).toEqual([1, 3, 16, 16]);
    [r.images, r.latents, init].forEach((t) => t.dispose());
    pipe.dispose();
  }, 600_000);

  test('wrong inputs are errors naming what was expected', async (b) => {
    const pipe = tinyPipeline(b, { seed: 4 });
    const ctrl = controlImage(b, 16, 3);
    await expect(pipe.generate({ prompt: 'x', controlImage: ctrl, numImagesPerPrompt: 2, numInferenceSteps: 1 }))
      .rejects.toThrow(/expected a control image \[1 or 2, 3, H, W\].*found Tensor\(\[3, 3, 16, 16\]/);
    await expect(pipe.generate({ prompt: 'x', numInferenceSteps: 1 })).rejects.toThrow(/holds a controlnext; pass controlImage/);
    const one = controlImage(b, 16);
    await expect(pipe.generate({ prompt: 'x', controlImage: one, height: 24, width: 16, numInferenceSteps: 1 }))
      .rejects.toThrow(/control image .* must be 24x16/);
    const lat = ops.affine(controlImage(b, 2), 1);
    await expect(pipe.generate({ prompt: 'x', controlImage: one, latents: lat, numInferenceSteps: 1 }))
      .rejects.toThrow(/latents must be \[1, 4, 2, 2\], found Tensor\(\[1, 3, 2, 2\]/);
    await expect(pipe.generate({ prompt: 'x', controlImage: one, numInferenceSteps: 0 })).rejects.toThrow(/numInferenceSteps must be an integer in \[1, 1000\], found 0/);
    [ctrl, one, lat].forEach((t) => t.dispose());
    pipe.dispose();
  });
});

describeEachBackend('pipeline with every scheduler', (test) => {
  test('each CLI scheduler name runs 3 guided steps to a finite image, reproducibly', async (b) => {
    for (const scheduler of Object.keys(SCHEDULER_NAMES)) {
      const pipe = tinyPipeline(b, { seed: 5, control: false, scheduler });
      const gen = async () => {
        const r = await pipe.generate({ prompt: 'x', height: 16, width: 16, numInferenceSteps: 3, seed: 8 });
        const d = await r.images.data();
        r.images.dispose(); r.latents.dispose();
        return d;
      };
      const a = await gen();
      expect(a.every((v) => Number.isFinite(v) && v >= 0 && v <= 1), scheduler).toBe(true);
      expect(await gen(), scheduler).toEqual(a);
      pipe.dispose();
    }
  }, 600_000);
}, ['cpu']);
