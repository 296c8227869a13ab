// The four research tasks of the architecture issue, each one file in examples/ that imports only the
// public API, run here on the tiny random models (small sizes, CPU; the new fused op also on WebGPU):
//  1. a new control type 'scribble': registered from code, and as a plug-in folder of `cnx`;
//  2. the light module injected after down_blocks.1 with per-channel statistics;
//  3. per-step mean/std of the feature at the injection site and of the control, to CSV;
//  4. a cross-norm variant with a clamp as a new fused op (CPU reference + WGSL).

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend, ops, runOp1, type Backend, type Tensor } from '@cnx/tensor';
import {
  ControllableDiffusionPipeline, ControlNeXt, ControlNeXtControl, ControlTypeRegistry, crossNorm as cnxCrossNorm, injectControl, main,
  tinyPipeline, type ControlNeXtSD15Module,
} from '@cnx/controlnext';
import { controlType as scribble, scribbleMask } from '../examples/dist/control_types/scribble.js';
import { lightDownBlock1Variant, perChannelCrossNorm, tinyLightPipeline } from '../examples/dist/light_down_block1_per_channel.js';
import { CSV_HEADER, featureStats, meanStd, tinyFeatureStatsCsv, toCsv } from '../examples/dist/feature_stats_csv.js';
import { clampedCrossNorm, clampedCrossNormOp, sd15ClampedVariant } from '../examples/dist/clamped_cross_norm.js';
import { describeEachBackend } from './harness/backends.js';
import { expectAllClose, randomArray, tolFor } from './harness/allclose.js';

const dir = mkdtempSync(join(tmpdir(), 'cnx-examples-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const examplesDist = join(import.meta.dirname, '..', 'examples', 'dist');

function controlImage(b: Backend, size: number): Tensor {
  return b.fromRaw(Float32Array.from({ length: 3 * size * size }, (_, i) => ((i * 37) % 11) / 10), [1, 3, size, size]);
}

describe('example 1: the scribble control type', () => {
  it('registers from code and gives white strokes on black', async () => {
    const backend = new CpuBackend();
    const types = new ControlTypeRegistry().register(scribble);
    // A bright square on a dark background: strokes along its border only.
    const H = 12, W = 10;
    const data = new Float32Array(H * W * 3).fill(0.1);
    for (let y = 3; y < 8; y++) for (let x = 2; x < 7; x++) data.fill(0.9, (y * W + x) * 3, (y * W + x) * 3 + 3);
    const t = await types.get('scribble').prepare({ data, height: H, width: W }, backend, { thickness: 1 });
    expect(t.shape).toEqual([1, 3, H, W]);
    const d = await t.data();
    const mask = scribbleMask({ data, height: H, width: W });
    expectAllClose(d.subarray(0, H * W), mask, { atol: 0, rtol: 0 }, 'channel 0');
    expect(d[0]).toBe(0); // far from the square
    expect(mask[5 * W + 4]).toBe(0); // the square's inside
    expect(mask[3 * W + 4]).toBe(1); // its top edge
    t.dispose();
    backend.destroy();
  });

  it('as a plug-in folder of cnx: listed by control-types and used by generate', async () => {
    const out: string[] = [];
    const io = { stdout: { write: (s: string) => { out.push(s); return true; } }, stderr: { write: () => true } };
    const pluginDir = join(examplesDist, 'control_types');
    expect(await main(['control-types', '--control-type-dir', pluginDir], io)).toBe(0);
    expect(out.join('')).toMatch(/^scribble\s+white strokes/m);
    const png = join(dir, 'scribble.png');
    const { writePng } = await import('@cnx/controlnext');
    const ndarray = (await import('ndarray')).default;
    writePng(join(dir, 'in.png'), ndarray(Float32Array.from({ length: 16 * 16 * 3 }, (_, i) => (i % 5) / 4), [16, 16, 3]));
    out.length = 0;
    const code = await main(['generate', '--prompt', 'x', '--steps', '1', '--width', '16', '--height', '16', '--control-image', join(dir, 'in.png'), '--control-type-dir', pluginDir,
      '--control-type', 'scribble', '--control-option', 'threshold=0.2', '--output', png], io);
    expect(code).toBe(0);
    expect(out.join('')).toMatch(/^wrote .*scribble\.png 16x16/m);
    expect(readFileSync(png).subarray(1, 4).toString()).toBe('PNG');
    // Without the folder the type is unknown, and the message lists the known ones.
    const err: string[] = [];
    const code2 = await main(['generate', '--prompt', 'x', '--control-image', join(dir, 'in.png'), '--control-type', 'scribble'],
      { stdout: io.stdout, stderr: { write: (s: string) => { err.push(s); return true; } } });
    expect(code2).toBe(2);
    expect(err.join('')).toMatch(/--control-type: unknown control type 'scribble' \(known: canny, depth, mask, passthrough, pose\)/);
  }, 300_000);
});

/** Float64 per-channel cross normalisation (the example's formula), for the check. */
function perChannelRef(x: Float32Array, xs: number[], pooled: Float32Array, scale: number, eps: number): Float32Array {
  const [N, C, h, w] = xs as [number, number, number, number];
  const hw = h * w, out = new Float32Array(x.length);
  const ms = (a: Float32Array, o: number) => { let m = 0; for (let i = 0; i < hw; i++) m += a[o + i]!; m /= hw; let s = 0; for (let i = 0; i < hw; i++) s += (a[o + i]! - m) ** 2; return [m, Math.sqrt(s / (hw - 1))] as const; };
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) {
    const o = (n * C + c) * hw, oc = ((pooled.length === x.length ? n : 0) * C + c) * hw;
    const [mx, sx] = ms(x, o), [mc, sc] = ms(pooled, oc);
    for (let i = 0; i < hw; i++) out[o + i] = x[o + i]! + scale * ((pooled[oc + i]! - mc) * sx / (sc + eps) + mx);
  }
  return out;
}

describe('example 2: the light module after down_blocks.1 with per-channel statistics', () => {
  it('the method matches a float64 loop; in the pipeline it fires at down_blocks.1 and changes the image', async () => {
    const backend = new CpuBackend();
    const x = backend.fromRaw(randomArray(2 * 6 * 3 * 5, 1, 2, 0.5), [2, 6, 3, 5]);
    const c = backend.fromRaw(randomArray(6 * 3 * 5, 2, 1.5), [1, 6, 3, 5]); // already at the feature size: pooling is the identity
    const y = injectControl(lightDownBlock1Variant, x, c, 0.7);
    expectAllClose(await y.data(), perChannelRef(await x.data(), [2, 6, 3, 5], await c.data(), 0.7, lightDownBlock1Variant.eps), tolFor('f32', 15, 4), 'per-channel');
    expect(() => injectControl(lightDownBlock1Variant, x, backend.zeros([1, 5, 3, 5]), 1)).toThrow(/per-channel statistics pair channel i.*expected 6 control channels, found 5/);
    [x, c, y].forEach((t) => t.dispose());

    const pipe = tinyLightPipeline(backend);
    const img = controlImage(backend, 32);
    const seen: number[][] = [];
    const r = await pipe.generate({
      prompt: 'x', controlImage: img, numInferenceSteps: 2, seed: 1, stepTensors: ['inject.sample_before', 'inject.sample_after', 'control'],
      hooks: { 'down_blocks.1': (f) => { seen.push([...f.shape]); return f; } },
      async onStepEnd(_s, t) {
        const before = t['inject.sample_before']!, ctrl = t['control']!;
        expect(before.shape).toEqual([2, 32, 2, 2]); // CFG batch, tiny UNet width 32 at latent/2
        const pooled = await ops.adaptiveAvgPool2d(ctrl, [2, 2]).data();
        expectAllClose(await t['inject.sample_after']!.data(), perChannelRef(await before.data(), [2, 32, 2, 2], pooled, 1, lightDownBlock1Variant.eps), tolFor('f32', 4, 4), 'in the pipeline');
      },
    });
    expect(seen).toEqual([[2, 32, 2, 2], [2, 32, 2, 2]]);
    const controlled = await r.images.data();
    [r.images, r.latents].forEach((t) => t.dispose());
    const plain = tinyPipeline(backend, { seed: 0, control: false });
    const r0 = await plain.generate({ prompt: 'x', height: 32, width: 32, numInferenceSteps: 2, seed: 1 });
    expect((await r0.images.data()).some((v, i) => Math.abs(v - controlled[i]!) > 1e-4)).toBe(true);
    [r0.images, r0.latents, img].forEach((t) => t.dispose());
    plain.dispose();
    pipe.dispose();
    backend.destroy();
  }, 300_000);
});

describe('example 3: per-step feature and control statistics to CSV', () => {
  it('one row per step, equal to the statistics of the captured tensors', async () => {
    const backend = new CpuBackend();
    const csv = await tinyFeatureStatsCsv(backend, 3);
    const lines = csv.trim().split('\n');
    expect(lines[0]).toBe(CSV_HEADER);
    expect(lines).toHaveLength(4);
    const rows = lines.slice(1).map((l) => l.split(',').map(Number));
    expect(rows.map((r) => r[0])).toEqual([0, 1, 2]);
    for (const r of rows) expect(r.every((v) => Number.isFinite(v))).toBe(true);
    expect(rows[0]![2]).not.toBe(rows[2]![2]); // the feature changes over the steps
    // The same pipeline call, checked against a trace of the same tensors.
    const pipe = tinyPipeline(backend, { seed: 1 });
    const img = controlImage(backend, 32);
    const traced: Float32Array[] = [];
    const got = await featureStats(pipe, {
      prompt: 'a house', controlImage: img, numInferenceSteps: 2, seed: 0,
      observer: { onStep: async (s) => { traced.push(await s.tensors['inject.sample_before']!.data()); } },
    });
    expect(got.rows).toHaveLength(2);
    got.rows.forEach((row, i) => {
      const [m, sd] = meanStd(traced[i]!);
      expect(row.featureMean).toBe(m);
      expect(row.featureStd).toBe(sd);
    });
    expect(toCsv(got.rows).split('\n')[0]).toBe(CSV_HEADER);
    [got.images, got.latents, img].forEach((t) => t.dispose());
    pipe.dispose();
    backend.destroy();
  }, 300_000);
});

describeEachBackend('example 4: cross-norm with a clamp as a new fused op', (test, name) => {
  test('WGSL / CPU agree with the float64 reference on awkward shapes; m = Infinity is the library crossNorm', async (backend) => {
    const cpu = new CpuBackend();
    const cases: [number[], number[], boolean][] = [[[2, 5, 3, 7], [1, 5, 9, 13], false], [[3, 4, 6, 6], [3, 4, 6, 6], true], [[1, 3, 1, 2], [1, 3, 5, 5], false]];
    for (const [xs, cs, scaleTensor] of cases) {
      const xa = randomArray(xs.reduce((a, b) => a * b), 3, 2, 0.5), ca = randomArray(cs.reduce((a, b) => a * b), 4, 3, -1);
      const sa = Float32Array.from({ length: xs[0]! }, (_, i) => 0.5 + i);
      const run = (b: Backend, clamp: number) => clampedCrossNorm(b.fromRaw(xa, xs), b.fromRaw(ca, cs), {
        eps: 1e-5, clamp, scale: scaleTensor ? b.fromRaw(sa, [xs[0]!]) : 0.8,
      });
      const what = `x [${xs.join(', ')}] control [${cs.join(', ')}]`;
      const ref = await run(cpu, 1.2).data();
      const got = await run(backend, 1.2).data();
      expectAllClose(got, ref, tolFor('f32', cs.reduce((a, b) => a * b), 8), `${name}: ${what}`);
      // No clamp: the library's fused cross normalisation (pool then normalise).
      const lib = await cnxCrossNorm(backend.fromRaw(xa, xs), backend.fromRaw(ca, cs), {
        eps: 1e-5, order: 'pool_then_norm', scale: scaleTensor ? backend.fromRaw(sa, [xs[0]!]) : 0.8,
      }).data();
      expectAllClose(await run(backend, Infinity).data(), lib, tolFor('f32', cs.reduce((a, b) => a * b), 8), `${name}: ${what}, no clamp`);
      // The clamp binds somewhere (these controls have outliers beyond 1.2 sigma).
      expect(ref.some((v, i) => Math.abs(v - lib[i]!) > 1e-3)).toBe(true);
    }
    expect(() => runOp1(clampedCrossNormOp, [backend.zeros([1, 2, 2, 2]), backend.zeros([1, 3, 2, 2])], { eps: 1e-5, clamp: 1, scale: 1 }))
      .toThrow(/clampedCrossNorm: control \[1, 3, 2, 2\] does not match feature \[1, 2, 2, 2\]/);
    cpu.destroy();
  });

  if (name === 'cpu') {
    test('the clamped variant runs in the tiny pipeline (release module, after the mid block)', async (backend) => {
      const base = tinyPipeline(backend, { seed: 2 });
      const module = (base.components.control as ControlNeXtControl).controlnext.module as ControlNeXtSD15Module;
      const clamped = new ControllableDiffusionPipeline({ ...base.components, control: new ControlNeXtControl(new ControlNeXt(sd15ClampedVariant, module, backend)) });
      const img = controlImage(backend, 16);
      const gen = async (p: ControllableDiffusionPipeline) => {
        const r = await p.generate({ prompt: 'x', controlImage: img, numInferenceSteps: 2, seed: 3 });
        const d = await r.images.data();
        [r.images, r.latents].forEach((t) => t.dispose());
        return d;
      };
      const a = await gen(base), b = await gen(clamped);
      expect(b.every((v) => Number.isFinite(v))).toBe(true);
      expect(b.some((v, i) => Math.abs(v - a[i]!) > 1e-6)).toBe(true);
      img.dispose();
      base.dispose(); // the clamped pipeline shares its modules
    }, 300_000);
  }
});
