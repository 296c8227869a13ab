// generate() called concurrently (issue 17 item 2): two calls at once on one pipeline corrupted each
// other (CPU: 'tensor used after dispose()' and a wrong image; WebGPU: 'writable usage and another usage
// in the same synchronization scope' / 'Invalid CommandBuffer'). Now calls on one pipeline run one at a
// time in call order (CallQueue), and memory scopes belong to their asynchronous context (scopeAsync),
// so concurrent calls on one pipeline, or on two pipelines sharing a backend, each return exactly what
// they return alone, on every backend, and free everything they allocated.

import { expect } from 'vitest';
import { type Backend, type Tensor } from '@cnx/tensor';
import { tinyPipeline, tinySvdPipeline, type GenerateOptions } from '@cnx/controlnext';
import { describeEachBackend } from '../../../test/harness/backends.js';

const SIZE = 16;

function control(backend: Backend): Tensor {
  return backend.fromRaw(Float32Array.from({ length: 3 * SIZE * SIZE }, (_, i) => ((i * 7) % 13) / 12), [1, 3, SIZE, SIZE]);
}

const call = (seed: number, extra: GenerateOptions = {}): GenerateOptions =>
  ({ prompt: `p${seed}`, height: SIZE, width: SIZE, numInferenceSteps: 2, guidanceScale: 3, seed, ...extra });

async function imagesOf(r: { images: Tensor; latents: Tensor }): Promise<Float32Array> {
  const d = await r.images.data();
  r.images.dispose();
  r.latents.dispose();
  return d;
}

describeEachBackend('concurrent generate()', (test, name) => {
  test('Promise.all of several calls on one pipeline == each call alone (same bits), nothing leaks', async (backend) => {
    const pipe = tinyPipeline(backend, { control: true, scheduler: 'unipc' });
    const ctrl = control(backend);
    // Two calls on WebGPU: its shaders compile for minutes on a software adapter.
    const opts = [call(1, { controlImage: ctrl }), call(2, { controlImage: ctrl, controlScale: 0.5 }), call(3, { controlImage: ctrl, numInferenceSteps: 3 })]
      .slice(0, name === 'webgpu' ? 2 : 3);
    const alone: Float32Array[] = [];
    for (const o of opts) alone.push(await imagesOf(await pipe.generate(o)));
    const live = backend.memory().liveBytes;
    const together = await Promise.all(opts.map((o) => pipe.generate(o).then(imagesOf)));
    together.forEach((img, i) => expect(img, `call ${i}`).toEqual(alone[i]));
    expect(alone[0]).not.toEqual(alone[1]);
    expect(backend.memory().liveBytes).toBe(live);
    ctrl.dispose();
    pipe.dispose();
  }, 600_000);

  test('two pipelines on one backend, called at once, each give their own result', async (backend) => {
    const a = tinyPipeline(backend, { control: false, seed: 1, scheduler: 'euler_a' });
    const b = tinyPipeline(backend, { control: false, seed: 2, scheduler: 'dpmpp_2m' });
    const soloA = await imagesOf(await a.generate(call(5)));
    const soloB = await imagesOf(await b.generate(call(6)));
    const [ra, rb] = await Promise.all([a.generate(call(5)).then(imagesOf), b.generate(call(6)).then(imagesOf)]);
    expect(ra).toEqual(soloA);
    expect(rb).toEqual(soloB);
    a.dispose();
    b.dispose();
  }, 600_000);

  test('a failing call does not disturb the calls queued around it; dispose lets earlier calls finish, then frees the models and refuses later calls', async (backend) => {
    const pipe = tinyPipeline(backend, { control: false });
    const solo = await imagesOf(await pipe.generate(call(7)));
    const results = await Promise.allSettled([
      pipe.generate(call(7)).then(imagesOf),
      pipe.generate(call(8, { numInferenceSteps: 0 })),
      pipe.generate(call(7)).then(imagesOf),
    ]);
    expect(results[0]).toEqual({ status: 'fulfilled', value: solo });
    expect(results[1].status === 'rejected' && (results[1].reason as Error).message).toMatch(/numInferenceSteps must be an integer in \[1, 1000\], found 0/);
    expect(results[2]).toEqual({ status: 'fulfilled', value: solo });
    // Dispose while one call runs and one waits: both complete, then the models are freed; later calls are refused.
    const live = backend.memory().liveBytes;
    const running = pipe.generate(call(7)).then(imagesOf);
    const waiting = pipe.generate(call(7)).then(imagesOf);
    pipe.dispose();
    await expect(pipe.generate(call(1))).rejects.toThrow('generate: the pipeline was disposed');
    expect(await running).toEqual(solo);
    expect(await waiting).toEqual(solo);
    await new Promise((r) => setTimeout(r, 0));
    expect(backend.memory().liveBytes).toBeLessThan(live);
  }, 600_000);

  test('generate() from inside a step callback of the same pipeline is refused instead of waiting for itself', async (backend) => {
    const pipe = tinyPipeline(backend, { control: false });
    let nested: Promise<string> | undefined;
    const r = await pipe.generate(call(1, { onStepEnd: () => { nested ??= pipe.generate(call(2)).then(() => 'resolved', (e: Error) => e.message); } }));
    await imagesOf(r);
    expect(await nested).toMatch(/^generate: called from inside a callback of a running call on the same pipeline, which would wait for itself/);
    pipe.dispose();
  }, 600_000);
});

describeEachBackend('concurrent SVD generate()', (test) => {
  test('two video generations at once on one SVD pipeline == each alone', async (b) => {
    const pipe = tinySvdPipeline(b, { seed: 1 });
    const H = 32, W = 32, F = 3;
    const image = b.fromRaw(Float32Array.from({ length: 3 * H * W }, (_, i) => 0.5 + 0.4 * Math.sin(i * 0.05)), [1, 3, H, W]);
    const control = b.fromRaw(Float32Array.from({ length: F * 3 * H * W }, (_, i) => ((i * 7919) % 13 === 0 ? 1 : 0)), [F, 3, H, W]);
    const run = async (seed: number) => {
      const r = await pipe.generate({ image, controlFrames: control, numInferenceSteps: 2, framesPerBatch: 3, overlap: 1, decodeChunkSize: 2, seed });
      const d = await r.frames!.data();
      [r.frames, r.decoded, r.latents].forEach((t) => t?.dispose());
      return d;
    };
    const alone = [await run(1), await run(2)];
    expect(await Promise.all([run(1), run(2)])).toEqual(alone);
    [image, control].forEach((t) => t.dispose());
    pipe.dispose();
  }, 600_000);
}, ['cpu']);
