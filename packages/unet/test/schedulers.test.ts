// Schedulers beyond what the golden sampling loops cover: timestep spacings and offsets, config reading
// (from_config semantics, Python's -Infinity, errors naming the key), v-prediction and x0 consistency
// with an exact model, stochastic steps with injected / seeded noise, PNDM's PRK warm-up, Karras sigmas,
// and a 50-step multistep loop whose memory stays flat.

import { expect, it, describe } from 'vitest';
import { CpuBackend, ops, scope, type Backend, type Tensor } from '@cnx/tensor';
import {
  createScheduler, parsePythonJson, RandomGenerator, RecordedNoise, SCHEDULER_NAMES, type Scheduler, type SchedulerClassName,
} from '@cnx/unet';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { expectAllClose } from '../../../test/harness/allclose.js';

const SD15 = {
  beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000,
  steps_offset: 1, set_alpha_to_one: false, skip_prk_steps: true, clip_sample: false,
};
const CLASSES: SchedulerClassName[] = [
  'DDIMScheduler', 'EulerDiscreteScheduler', 'EulerAncestralDiscreteScheduler', 'DPMSolverMultistepScheduler',
  'PNDMScheduler', 'UniPCMultistepScheduler',
];

describe('timestep spacing', () => {
  it('DDIM leading: multiples of T // n plus steps_offset, descending', () => {
    const s = createScheduler('DDIMScheduler', { ...SD15, timestep_spacing: 'leading' });
    s.setTimesteps(20);
    expect(s.timesteps).toEqual(Array.from({ length: 20 }, (_, i) => 951 - 50 * i));
  });
  it('DDIM trailing: round(T - k T/n) - 1, ending at T/n - 1', () => {
    const s = createScheduler('DDIMScheduler', { ...SD15, timestep_spacing: 'trailing' });
    s.setTimesteps(3);
    expect(s.timesteps).toEqual([999, 666, 332]); // np.round(arange(1000, 0, -333.33)) - 1 = [999, 666, 332]
  });
  it('DDIM linspace rounds half to even like np.round', () => {
    const s = createScheduler('DDIMScheduler', { ...SD15, timestep_spacing: 'linspace' });
    s.setTimesteps(21); // linspace(0, 999, 21) = 49.95 k: 499.5 -> 500 (even), 149.85 -> 150
    expect(s.timesteps[10]).toBe(500);
    expect(s.timesteps.at(-1)).toBe(0);
    expect(s.timesteps[0]).toBe(999);
  });
  it('Euler linspace keeps fractional float32 timesteps', () => {
    const s = createScheduler('EulerDiscreteScheduler', SD15);
    s.setTimesteps(4);
    expect(s.timesteps).toEqual([999, 666, 333, 0]);
    s.setTimesteps(3);
    expect(s.timesteps).toEqual([999, 499.5, 0]);
    expect(s.sigmas).toHaveLength(4);
    expect(s.sigmas!.at(-1)).toBe(0);
  });
  it('DPM / UniPC linspace: n + 1 points with the last dropped', () => {
    for (const cls of ['DPMSolverMultistepScheduler', 'UniPCMultistepScheduler'] as const) {
      const s = createScheduler(cls, SD15);
      s.setTimesteps(4);
      expect(s.timesteps).toEqual([999, 749, 500, 250]);
    }
  });
  it('PNDM (PLMS) repeats its first timestep; PRK adds the Runge-Kutta warm-up', () => {
    const plms = createScheduler('PNDMScheduler', SD15);
    plms.setTimesteps(5);
    expect(plms.timesteps).toEqual([801, 601, 601, 401, 201, 1]);
    const prk = createScheduler('PNDMScheduler', { ...SD15, skip_prk_steps: false });
    prk.setTimesteps(10);
    expect(prk.timesteps.length).toBe(12 + 7);
  });
  it('rejects a step count outside [1, num_train_timesteps], naming it', () => {
    for (const cls of CLASSES) {
      const s = createScheduler(cls, SD15);
      expect(() => s.setTimesteps(0)).toThrow(/num_inference_steps must be an integer in \[1, 1000\].*found 0/);
      expect(() => s.setTimesteps(1001)).toThrow(/found 1001/);
    }
  });
});

describe('config', () => {
  it('ignores keys of other classes and honours the known ones', () => {
    const s = createScheduler('UniPCMultistepScheduler', { ...SD15, _class_name: 'PNDMScheduler', solver_type: 'midpoint', timestep_spacing: 'trailing' });
    s.setTimesteps(2);
    expect(s.timesteps).toEqual([999, 499]);
  });
  it('errors name the class, the key, what is allowed and what was found', () => {
    expect(() => createScheduler('DDIMScheduler', { beta_schedule: 'cosine' })).toThrow(/DDIMScheduler config: "beta_schedule" must be one of "linear", "scaled_linear", "squaredcos_cap_v2".*found "cosine"/);
    expect(() => createScheduler('DPMSolverMultistepScheduler', { solver_order: 5 })).toThrow(/"solver_order" must be an integer >= 1 and <= 3, found 5/);
    expect(() => createScheduler('DDIMScheduler', { thresholding: true })).toThrow(/"thresholding" = true is not supported/);
    expect(() => createScheduler('nope')).toThrow(/unknown scheduler 'nope' \(known: unipc/);
  });
  it("reads Python's non-finite JSON tokens outside strings only", () => {
    const v = parsePythonJson('{"a": -Infinity, "b": "NaN -Infinity", "c": [Infinity, NaN]}', 'x.json') as Record<string, unknown>;
    expect(v['a']).toBe(-Infinity);
    expect(v['b']).toBe('NaN -Infinity');
    expect((v['c'] as number[])[0]).toBe(Infinity);
    expect(Number.isNaN((v['c'] as number[])[1])).toBe(true);
    expect(() => parsePythonJson('{"a": }', 'bad.json')).toThrow(/bad.json: not valid JSON/);
  });
  it('short names set their keys: dpmpp_2m_karras uses Karras sigmas', () => {
    expect(Object.keys(SCHEDULER_NAMES)).toContain('dpmpp_2m_karras');
    const k = createScheduler('dpmpp_2m_karras', SD15);
    k.setTimesteps(10);
    const sig = k.sigmas!;
    expect(sig[0]).toBeCloseTo(14.6146, 3); // sigma_max of SD1.5
    for (let i = 1; i < 10; i++) expect(sig[i]!).toBeLessThan(sig[i - 1]!);
    // Karras spacing puts more steps at low noise than the linear-in-t default.
    const plain = createScheduler('dpmpp_2m', SD15);
    plain.setTimesteps(10);
    expect(k.timesteps[5]!).toBeLessThan(plain.timesteps[5]!);
    k.timesteps.forEach((t) => expect(Number.isInteger(t)).toBe(true));
  });
});

/** x_t of a known x0 and noise, and the exact model output for each prediction type. */
function exactCase(b: Backend, alphaBar: number) {
  const x0 = b.fromRaw(Float32Array.from({ length: 32 }, (_, i) => Math.sin(i) * 0.8), [1, 2, 4, 4]);
  const eps = b.fromRaw(Float32Array.from({ length: 32 }, (_, i) => Math.cos(3 * i)), [1, 2, 4, 4]);
  const a = Math.sqrt(alphaBar), s = Math.sqrt(1 - alphaBar);
  return {
    x0, eps,
    xt: ops.linearCombination([[x0, a], [eps, s]]),
    v: ops.linearCombination([[eps, a], [x0, -s]]),
  };
}

describe('prediction types with an exact model', () => {
  const b = new CpuBackend();
  for (const prediction of ['epsilon', 'v_prediction', 'sample'] as const) {
    it(`DDIM ${prediction}: pred_original_sample is x0`, async () => {
      const s = createScheduler('DDIMScheduler', { ...SD15, prediction_type: prediction });
      s.setTimesteps(10);
      const t = s.timesteps[3]!;
      const c = exactCase(b, s.alphasCumprod[t]!);
      const out = prediction === 'epsilon' ? c.eps : prediction === 'v_prediction' ? c.v : c.x0;
      const r = s.step(out, t, c.xt);
      expectAllClose(await r.predOriginalSample!.data(), await c.x0.data(), { atol: 2e-5, rtol: 1e-5 });
    });
  }
  it('Euler v_prediction: pred_original_sample is x0 (k-diffusion scaling of the sample)', async () => {
    const s = createScheduler('EulerDiscreteScheduler', { ...SD15, prediction_type: 'v_prediction' });
    s.setTimesteps(10);
    const i = 4, t = s.timesteps[i]!, sigma = s.sigmas![i]!;
    const alphaBar = 1 / (sigma * sigma + 1);
    const c = exactCase(b, alphaBar);
    // Euler's sample lives at scale 1/sqrt(alphabar): x = x_t * sqrt(sigma^2 + 1).
    const x = ops.affine(c.xt, Math.sqrt(sigma * sigma + 1));
    s.scaleModelInput(x, t);
    const r = s.step(c.v, t, x);
    expectAllClose(await r.predOriginalSample!.data(), await c.x0.data(), { atol: 2e-5, rtol: 1e-5 });
  });
  it('DPM-Solver++ and UniPC reach x0 exactly in one step to sigma 0 when the model is exact', async () => {
    for (const cls of ['DPMSolverMultistepScheduler', 'UniPCMultistepScheduler'] as const) {
      const s = createScheduler(cls, SD15);
      s.setTimesteps(1);
      const sigma = s.sigmas![0]!;
      const c = exactCase(b, 1 / (sigma * sigma + 1));
      const r = s.step(c.eps, s.timesteps[0]!, c.xt);
      expectAllClose(await r.prevSample.data(), await c.x0.data(), { atol: 1e-4, rtol: 1e-5 });
      s.dispose();
    }
  });
});

describe('stochastic steps', () => {
  const b = new CpuBackend();
  const x = () => b.fromRaw(Float32Array.from({ length: 16 }, (_, i) => i / 8 - 1), [1, 1, 4, 4]);
  async function sample(s: Scheduler, noise: () => RandomGenerator | RecordedNoise, eta?: number): Promise<Float32Array> {
    s.setTimesteps(5);
    let lat = ops.affine(x(), s.initNoiseSigma);
    const g = noise();
    for (const t of s.timesteps) {
      const mo = ops.affine(s.scaleModelInput(lat, t), 0.1);
      lat = s.step(mo, t, lat, { generator: g, eta }).prevSample;
    }
    return lat.data();
  }
  it('Euler ancestral: same seed, same result; another seed, another; no generator is an error', async () => {
    const s = createScheduler('euler_a', SD15);
    const a = await sample(s, () => new RandomGenerator(3));
    const a2 = await sample(s, () => new RandomGenerator(3));
    const c = await sample(s, () => new RandomGenerator(4));
    expect(a2).toEqual(a);
    expect(c).not.toEqual(a);
    s.setTimesteps(5);
    expect(() => s.step(x(), s.timesteps[0]!, x())).toThrow(/draws noise; pass step\(\.\.\., \{ generator \}\)/);
  });
  it('DDIM eta > 0 draws one noise tensor per step from the injected source', async () => {
    const s = createScheduler('ddim', SD15);
    const rec = new RecordedNoise(new Float32Array(16 * 5).fill(0.5));
    await sample(s, () => rec, 1);
    expect(rec.remaining).toBe(0);
    const det = await sample(s, () => new RandomGenerator(1), 0);
    const det2 = await sample(s, () => new RandomGenerator(2), 0);
    expect(det2).toEqual(det); // eta 0 ignores the generator
  });
  // Fixed reference values: what makes a seed reproduce the same image across versions. Produced by an
  // independent Python transcription of the algorithm documented in random_generator.ts (splitmix32
  // seeding, xoshiro128** from prng.di.unimi.it/xoshiro128starstar.c, u = (x >>> 8) / 2^24 + 2^-25,
  // Box-Muller with both outputs, cos first, stored as float32). Any change to the stream fails here.
  // Exact equality: V8's Math.log/cos/sin are its own fdlibm port, the same on every platform.
  it('RandomGenerator: fixed reference values of the documented algorithm (seeds 0, 42, 2^32-1)', () => {
    const reference: Record<number, { u32: number[]; normal: number[] }> = {
      0: {
        u32: [3809008728, 1133695204, 53579671, 2891528803, 139681546, 2203266335],
        normal: [-0.04292568191885948, 0.48816728591918945, -1.373457670211792, -2.6232943534851074, -2.6088578701019287, -0.2133713811635971, -1.8600354194641113],
      },
      42: {
        u32: [2837322924, 544945897, 479756282, 3500138142, 339756180, 113173290],
        normal: [0.6362303495407104, 0.6514421701431274, 0.8308018445968628, -1.9218769073486328, 2.2217392921447754, 0.3712368905544281, -0.16296495497226715],
      },
      4294967295: {
        u32: [835879718, 1921286648, 2356205009, 1885780724, 980451116, 1053911718],
        normal: [-1.711105465888977, 0.5878323912620544, -1.0164705514907837, 0.4093543291091919, 0.04985601827502251, 1.718105673789978, -0.49840137362480164],
      },
    };
    for (const [seed, ref] of Object.entries(reference)) {
      const g = new RandomGenerator(Number(seed));
      expect(ref.u32.map(() => g.nextUint32()), `seed ${seed} bits`).toEqual(ref.u32);
      expect(Array.from(new RandomGenerator(Number(seed)).normal(7)), `seed ${seed} normals`).toEqual(ref.normal);
    }
    // The second Box-Muller output carries over between calls: 3 + 4 draws = 7 draws.
    const split = new RandomGenerator(42);
    expect([...split.normal(3), ...split.normal(4)]).toEqual(reference[42]!.normal);
  });

  it('RandomGenerator: documented determinism and N(0, 1) moments', () => {
    const g = new RandomGenerator(123), h = new RandomGenerator(123);
    expect(g.normal(7)).toEqual(h.normal(7));
    const z = new RandomGenerator(9).normal(200_000);
    let m = 0, v = 0;
    for (const x of z) m += x;
    m /= z.length;
    for (const x of z) v += (x - m) ** 2;
    v /= z.length;
    expect(Math.abs(m)).toBeLessThan(0.01);
    expect(Math.abs(v - 1)).toBeLessThan(0.02);
    expect(() => new RandomGenerator(-1)).toThrow(/seed must be an integer in \[0, 4294967295\], found -1/);
  });
});

describe('every multistep variant lands on x0 with an exact model', () => {
  // For data that is one point x0, the probability-flow ODE from x_T = alpha_T x0 + sigma_T e keeps
  // x_t = alpha_t x0 + sigma_t e, and the exact noise prediction is e at every step: each consistent
  // ODE solver, whatever its order and form, must end at x0 when its last sigma is 0 (or at
  // alpha x0 + sigma e at sigma_min). (The SDE variants do not follow this path even with zero noise.)
  const b = new CpuBackend();
  const variants: [string, Record<string, unknown>][] = [];
  for (const order of [1, 2, 3]) {
    for (const algorithm of ['dpmsolver++', 'dpmsolver']) {
      for (const solver of ['midpoint', 'heun']) {
        variants.push(['DPMSolverMultistepScheduler', { solver_order: order, algorithm_type: algorithm, solver_type: solver,
          final_sigmas_type: algorithm === 'dpmsolver' ? 'sigma_min' : 'zero' }]);
      }
    }
    for (const solver of ['bh1', 'bh2']) {
      // The noise-prediction form cannot step to sigma 0 (0 * expm1(inf)): it ends at sigma_min.
      for (const predictX0 of [true, false]) {
        variants.push(['UniPCMultistepScheduler', { solver_order: order, solver_type: solver, predict_x0: predictX0, final_sigmas_type: predictX0 ? 'zero' : 'sigma_min' }]);
      }
    }
  }
  variants.push(['DPMSolverMultistepScheduler', { use_karras_sigmas: true }], ['DPMSolverMultistepScheduler', { use_lu_lambdas: true }],
    ['UniPCMultistepScheduler', { use_karras_sigmas: true }], ['UniPCMultistepScheduler', { timestep_spacing: 'trailing' }]);
  for (const [cls, extra] of variants) {
    it(`${cls} ${JSON.stringify(extra)}`, async () => {
      const s = createScheduler(cls, { ...SD15, ...extra });
      s.setTimesteps(8);
      const x0 = b.fromRaw(Float32Array.from({ length: 16 }, (_, i) => Math.sin(i)), [1, 1, 4, 4]);
      const e = b.fromRaw(Float32Array.from({ length: 16 }, (_, i) => Math.cos(2 * i)), [1, 1, 4, 4]);
      const vp = (sigma: number) => ({ a: 1 / Math.sqrt(sigma * sigma + 1), s: sigma / Math.sqrt(sigma * sigma + 1) });
      const start = vp(s.sigmas![0]!);
      let x = ops.linearCombination([[x0, start.a], [e, start.s]]);
      for (const t of s.timesteps) x = s.step(e, t, x).prevSample;
      const end = vp(s.sigmas!.at(-1)!);
      const want = ops.linearCombination([[x0, end.a], [e, end.s]]);
      expectAllClose(await x.data(), await want.data(), { atol: 1e-4, rtol: 1e-4 });
      s.dispose();
    });
  }
});

describe('convergence order on Gaussian data (analytic probability-flow ODE)', () => {
  // For x0 ~ N(mu, s^2) the exact denoiser is linear and the ODE solution is the quantile map
  // x_sigma = alpha mu + sqrt(alpha^2 s^2 + sigma_t^2) w. With Karras sigmas ending at sigma_min (even
  // log-SNR steps, no jump to sigma 0) the end-point error must shrink with the solver order and with the
  // step count at the order's rate: a wrong higher-order coefficient shows up here.
  const b = new CpuBackend();
  const mu = 0.3, sd = 0.5;
  const w = Float64Array.from({ length: 64 }, (_, i) => Math.sin(i * 1.3) * 1.5);
  const vp = (sigma: number) => ({ a: 1 / Math.sqrt(sigma * sigma + 1), s: sigma / Math.sqrt(sigma * sigma + 1) });
  async function endError(cls: SchedulerClassName, extra: Record<string, unknown>, n: number): Promise<number> {
    const s = createScheduler(cls, { ...SD15, use_karras_sigmas: true, final_sigmas_type: 'sigma_min', lower_order_final: false, ...extra });
    s.setTimesteps(n);
    const q = (sigma: number) => { const { a, s: st } = vp(sigma); return Float64Array.from(w, (v) => a * mu + Math.sqrt(a * a * sd * sd + st * st) * v); };
    let x = b.fromRaw(Float32Array.from(q(s.sigmas![0]!)), [1, 1, 8, 8]);
    for (const [i, t] of s.timesteps.entries()) {
      const { a, s: st } = vp(s.sigmas![i]!);
      const k = a * sd * sd / (a * a * sd * sd + st * st);
      const xd = await x.data();
      const eps = b.fromRaw(xd.map((v) => (v - a * (mu + k * (v - a * mu))) / st), x.shape);
      x = s.step(eps, t, x).prevSample;
    }
    const want = q(s.sigmas!.at(-1)!);
    const got = await x.data();
    s.dispose();
    return Math.max(...Array.from(got, (v, i) => Math.abs(v - want[i]!)));
  }
  const cases: [string, SchedulerClassName, Record<string, unknown>, number[]][] = [
    ['DPM-Solver++', 'DPMSolverMultistepScheduler', { algorithm_type: 'dpmsolver++' }, [1, 2, 3]],
    ['DPM-Solver', 'DPMSolverMultistepScheduler', { algorithm_type: 'dpmsolver' }, [1, 2, 3]],
    ['UniPC bh2', 'UniPCMultistepScheduler', { solver_type: 'bh2' }, [1, 2]],
  ];
  for (const [label, cls, extra, orders] of cases) {
    it(`${label}: higher order, smaller error; doubling the steps divides it at least by ~2^order`, async () => {
      const e10: number[] = [], e20: number[] = [];
      for (const order of orders) {
        e10.push(await endError(cls, { ...extra, solver_order: order }, 10));
        e20.push(await endError(cls, { ...extra, solver_order: order }, 20));
      }
      // Each order at least halves the error of the one below (measured: 4x to 25x).
      for (let k = 1; k < orders.length; k++) expect(e20[k]!, `order ${orders[k]} vs ${orders[k - 1]} at 20 steps: ${e20.join(', ')}`).toBeLessThan(e20[k - 1]! / 2);
      // First order: ~2x per doubling (UniPC's corrector adds one order); higher orders: clearly faster.
      expect(e10[0]! / e20[0]!).toBeGreaterThan(1.6);
      for (let k = 1; k < orders.length; k++) expect(e10[k]! / e20[k]!, `order ${orders[k]}: ${e10[k]} -> ${e20[k]}`).toBeGreaterThan(3);
    });
  }
});

describe('PNDM with PRK warm-up', () => {
  it('runs the whole schedule and denoises an exact model to x0', async () => {
    const b = new CpuBackend();
    const s = createScheduler('PNDMScheduler', { ...SD15, skip_prk_steps: false });
    s.setTimesteps(10);
    // Model: eps(x_t) for x0 = 0 is x_t / sqrt(1 - abar_t); the sampler must shrink x toward 0.
    let lat = b.fromRaw(Float32Array.from({ length: 16 }, (_, i) => Math.sin(i)), [1, 1, 4, 4]);
    for (const t of s.timesteps) {
      const eps = ops.affine(lat, 1 / Math.sqrt(1 - s.alphasCumprod[t]!));
      lat = s.step(eps, t, lat).prevSample;
    }
    const d = await lat.data();
    expect(d.every((v) => Number.isFinite(v))).toBe(true);
    expect(Math.max(...d.map(Math.abs))).toBeLessThan(0.05);
  });
});

describeEachBackend('multistep memory', (test) => {
  test('a 50-step UniPC loop in per-step scopes does not grow', async (b) => {
    const s = createScheduler('unipc', SD15);
    s.setTimesteps(50);
    let lat: Tensor = b.fromRaw(Float32Array.from({ length: 64 }, (_, i) => Math.cos(i)), [1, 4, 4, 4]);
    const live: number[] = [];
    for (const t of s.timesteps) {
      const next = scope(() => {
        const mo = ops.affine(s.scaleModelInput(lat, t), 0.1);
        return s.step(mo, t, lat).prevSample;
      });
      lat.dispose();
      lat = next;
      live.push(b.memory().liveBytes);
    }
    expect(live[49]).toBe(live[3]);
    s.dispose();
    lat.dispose();
  });
});
