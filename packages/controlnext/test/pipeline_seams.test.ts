// The per-call seams of generate() on the tiny random model: the default output size comes from the
// UNet's sample_size; control scales are per call (consecutive calls on one pipeline == each on a fresh
// one); onStepEnd gets the requested named tensors (the feature at the injection site, the control map,
// traced UNet values) and can replace the latents; per-call hooks run after the injection at the same
// site; the trace sees every named intermediate; memory stays flat with all of it switched on.

import { expect } from 'vitest';
import { ops, type Backend, type Tensor } from '@cnx/tensor';
import { tinyPipeline, TINY_UNET_CONFIG, type ControlNeXtControl } from '@cnx/controlnext';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { expectAllClose } from '../../../test/harness/allclose.js';

function controlImage(b: Backend, size: number): Tensor {
  const d = new Float32Array(3 * size * size);
  for (let i = 0; i < d.length; i++) d[i] = ((i * 37) % 11) / 10;
  return b.fromRaw(d, [1, 3, size, size]);
}

async function images(b: Backend, scale: number, fresh: boolean, shared?: ReturnType<typeof tinyPipeline>): Promise<Float32Array> {
  const pipe = fresh ? tinyPipeline(b, { seed: 6 }) : shared!;
  const ctrl = controlImage(b, 16);
  const r = await pipe.generate({ prompt: 'x', numInferenceSteps: 2, seed: 4, controlImage: ctrl, controlScale: scale });
  const d = await r.images.data();
  [r.images, r.latents, ctrl].forEach((t) => t.dispose());
  if (fresh) pipe.dispose();
  return d;
}

describeEachBackend('pipeline seams', (test) => {
  test('no width/height and no image: sample_size * vae_scale_factor', async (b) => {
    const pipe = tinyPipeline(b, { seed: 1, control: false });
    const r = await pipe.generate({ prompt: 'x', numInferenceSteps: 1, seed: 2, guidanceScale: 1 });
    expect(r.images.shape).toEqual([1, 3, TINY_UNET_CONFIG.sample_size * 8, TINY_UNET_CONFIG.sample_size * 8]);
    [r.images, r.latents].forEach((t) => t.dispose());
    pipe.dispose();
  }, 600_000);

  test('control scales are per call: consecutive calls on one pipeline == each on a fresh pipeline', async (b) => {
    const shared = tinyPipeline(b, { seed: 6 });
    const seq = [await images(b, 0.3, false, shared), await images(b, 1.7, false, shared), await images(b, 0.3, false, shared)];
    const fresh = [await images(b, 0.3, true), await images(b, 1.7, true)];
    expectAllClose(seq[0]!, fresh[0]!, { atol: 0, rtol: 0 }, 'scale 0.3');
    expectAllClose(seq[1]!, fresh[1]!, { atol: 0, rtol: 0 }, 'scale 1.7');
    expectAllClose(seq[2]!, fresh[0]!, { atol: 0, rtol: 0 }, 'scale 0.3 again');
    expect(seq[1]).not.toEqual(seq[0]);
    expect((shared.components.control as ControlNeXtControl).controlnext.strength).toBe(1);
    shared.dispose();
  }, 600_000);

  test('onStepEnd: named tensors (feature at the site, control, traced values), hooks after the injection, trace, latents replacement', async (b) => {
    const pipe = tinyPipeline(b, { seed: 7 });
    const ctrl = controlImage(b, 32);
    const traced = new Set<string>();
    const live: number[] = [];
    const stats: string[] = [];
    let afterHook: Tensor | undefined;
    const r = await pipe.generate({
      prompt: 'x', numInferenceSteps: 3, seed: 5, controlImage: ctrl,
      stepTensors: ['inject.sample_before', 'inject.sample_after', 'control', 'latents', 'unet.mid_block'],
      // Sees the injected feature: the release variant injects at 'mid_block'.
      // (A view made inside the step lives until the step's scope ends, after onStepEnd.)
      hooks: { mid_block: (x) => { afterHook = x.contiguous(); return x; } },
      trace: (name) => { traced.add(name.split('.')[0]!); },
      async onStepEnd(state, t) {
        expect(Object.keys(t).sort()).toEqual(['control', 'inject.sample_after', 'inject.sample_before', 'latents', 'unet.mid_block']);
        expect(t['inject.sample_before']!.shape).toEqual([2, 32, 2, 2]);
        expect(t['control']!.shape.slice(0, 2)).toEqual([1, 32]);
        expect(t.latents).toBe(state.latents);
        const before = await t['inject.sample_before']!.data(), after = await t['inject.sample_after']!.data();
        // unet.mid_block is the mid block's own output (traced inside it), i.e. the feature before injection.
        expectAllClose(await t['unet.mid_block']!.data(), before, { atol: 0, rtol: 0 }, 'unet.mid_block == inject.sample_before');
        expectAllClose(await afterHook!.data(), after, { atol: 0, rtol: 0 }, 'the per-call hook sees the injected feature');
        expect(after.some((v, i) => Math.abs(v - before[i]!) > 1e-4)).toBe(true);
        stats.push(`${state.index}`);
        live.push(b.memory().liveBytes);
        // Replace the latents of the last step: the returned tensor becomes the result.
        if (state.index === state.total - 1) return { latents: ops.scale(state.latents, 0) };
      },
    });
    expect(stats).toEqual(['0', '1', '2']);
    expect([...traced].sort()).toEqual(['controlnext', 'inject', 'unet']);
    expect((await r.latents.data()).every((v) => v === 0)).toBe(true);
    expect(live[2]).toBe(live[1]);
    [r.images, r.latents].forEach((t) => t.dispose());
    await expect(pipe.generate({ prompt: 'x', controlImage: ctrl, numInferenceSteps: 1, stepTensors: ['feature'] }))
      .rejects.toThrow(/unknown step tensor 'feature' \(known: latents, noise_pred, noise_cfg, unet_output, model_input, control, or a traced name unet\.\*/);
    await expect(pipe.generate({ prompt: 'x', controlImage: ctrl, numInferenceSteps: 1, stepTensors: ['unet.no_such_module'], onStepEnd: () => {} }))
      .rejects.toThrow(/step 0 produced no 'unet.no_such_module'/);
    ctrl.dispose();
    pipe.dispose();
  }, 600_000);
}, ['cpu']);
