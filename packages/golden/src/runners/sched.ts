// Runner kind 'scheduler' (cases sched_ddim, sched_euler, sched_euler_ancestral, sched_dpmpp_2m,
// sched_pndm, sched_unipc): the full sampling loop of case.json `call` with a synthetic model
//   sched = <class>.from_config(scheduler_config.json); sched.set_timesteps(N); x = x_T * init_noise_sigma
//   for i, t: xin = scale_model_input(x, t); mo = model_output_gain * xin + c[i]; x = step(mo, t, x)
// plus add_noise on a freshly set schedule. The class comes from case.json `models.scheduler.class`;
// noise drawn inside steps (Euler ancestral, DDIM eta > 0) is replayed from the case's `noise` tensor
// ([steps, ...sample]: torch's generator is not reproduced). That tensor is an input here, so it is
// not compared with itself: the runner checks that the scheduler drew it exactly as the reference did
// (one draw of one sample's worth per step, every value used) and reports it as replayed; what the
// noise did to the samples is checked through `latents` and `pred_original_samples`.

import { join } from 'node:path';
import { numel, ops, scope, type Backend, type Tensor } from '@cnx/tensor';
import { createScheduler, readSchedulerConfigFile, RecordedNoise, type NoiseSource, type Scheduler } from '@cnx/unet';
import type { GoldenCase, Produced, Runner } from '../golden_case.js';

function schedulerClass(c: GoldenCase): string {
  const cls = c.json.models?.['scheduler']?.class;
  if (typeof cls !== 'string') throw new Error(`${c.name}: case.json models.scheduler.class is missing`);
  return cls.replace(/^diffusers\./, '');
}

/** Row i of a stacked [K, ...shape] io tensor, as a contiguous [...shape] tensor. */
function row(all: Tensor, i: number): Tensor {
  const r = all.slice(0, i, i + 1);
  const out = r.reshape(all.shape.slice(1));
  r.dispose();
  return out;
}

function concatRows(rows: Float32Array[]): Float32Array {
  const out = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  let o = 0;
  for (const r of rows) { out.set(r, o); o += r.length; }
  return out;
}

export const schedulerRunner: Runner = async (c, backend: Backend) => {
  const cls = schedulerClass(c);
  const config = readSchedulerConfigFile(join(c.modelDir('scheduler'), 'scheduler_config.json'));
  const n = Number(c.args['num_inference_steps'] ?? c.config['num_inference_steps']);
  const gain = Number(c.args['model_output_gain'] ?? c.config['model_output_gain']);
  const eta = Number(c.args['eta'] ?? 0);
  const wanted = new Set(c.checkedNames());
  // Replay the case's per-step noise, and count what the scheduler draws (checked after the loop).
  const replay = c.io.has('noise') ? new RecordedNoise(c.expected('noise').data, `${c.name} noise`) : undefined;
  const draws: number[] = [];
  const recorded: NoiseSource | undefined = replay && {
    normal: (count: number) => { draws.push(count); return replay.normal(count); },
  };

  const sched: Scheduler = createScheduler(cls, config);
  sched.setTimesteps(n);
  const out: Produced = new Map();
  out.set('timesteps', Float32Array.from(sched.timesteps));
  out.set('init_noise_sigma', Float32Array.of(sched.initNoiseSigma));
  out.set('alphas_cumprod', Float32Array.from(sched.alphasCumprod));
  if (wanted.has('sigmas')) {
    if (!sched.sigmas) throw new Error(`${c.name}: ${cls} has no sigma table but the case checks 'sigmas'`);
    out.set('sigmas', Float32Array.from(sched.sigmas));
  }

  const cs = c.input('c', backend);
  const ones = backend.fromRaw(new Float32Array([1]), [1]);
  const latents: Float32Array[] = [], scaled: Float32Array[] = [], outputs: Float32Array[] = [], x0s: Float32Array[] = [];
  const scaleFactors: number[] = [];
  const xT = c.input('x_T', backend);
  let x = ops.affine(xT, sched.initNoiseSigma);
  xT.dispose();
  latents.push(await x.data());
  for (const [i, t] of sched.timesteps.entries()) {
    // Each step in its own memory scope, as the pipeline runs it; only the new sample survives.
    const step = scope(() => {
      const sf = sched.scaleModelInput(ones, t);
      const xin = sched.scaleModelInput(x, t);
      const ci = row(cs, i);
      const mo = ops.linearCombination([[xin, gain], [ci, 1]]);
      const r = sched.step(mo, t, x, { eta, generator: recorded });
      return { sf, xin, mo, prev: r.prevSample, x0: r.predOriginalSample };
    });
    scaleFactors.push((await step.sf.data())[0]!);
    scaled.push(await step.xin.data());
    outputs.push(await step.mo.data());
    if (step.x0) x0s.push(await step.x0.data());
    x.dispose();
    x = step.prev;
    latents.push(await x.data());
    [step.sf, step.xin, step.mo, step.x0].forEach((v) => v?.dispose());
  }
  x.dispose();
  cs.dispose();
  ones.dispose();
  sched.dispose();
  out.set('scale_factors', Float32Array.from(scaleFactors));
  out.set('latents', concatRows(latents));
  out.set('scaled_inputs', concatRows(scaled));
  out.set('model_outputs', concatRows(outputs));
  if (wanted.has('pred_original_samples')) out.set('pred_original_samples', concatRows(x0s));
  if (replay) {
    const shape = c.io.info('noise').shape;
    const steps = shape[0] ?? 0, per = numel(shape.slice(1));
    if (draws.length !== steps || draws.some((d) => d !== per) || replay.remaining !== 0) {
      throw new Error(`${c.name}: the reference drew noise ${steps} times, ${per} values each (noise ${JSON.stringify(shape)}); ` +
        `${cls} drew ${draws.length} times (${[...new Set(draws)].join(', ') || 'no'} values), leaving ${replay.remaining} unused`);
    }
    if (wanted.has('noise')) c.replayed.set('noise', `${steps} draws of ${per} values, drawn step by step as the reference did and all used`);
  }

  // add_noise on a freshly set schedule (image-to-image use: no step taken yet).
  const fresh = createScheduler(cls, config);
  fresh.setTimesteps(n);
  const idx = (c.args['add_noise_indices'] ?? c.config['add_noise_indices']) as number[];
  const orig = c.input('add_noise.original', backend), noise = c.input('add_noise.noise', backend);
  const noised: Float32Array[] = [];
  for (const k of idx) {
    const t = fresh.timesteps[k];
    if (t === undefined) throw new Error(`${c.name}: add_noise index ${k} outside the ${fresh.timesteps.length} timesteps`);
    const y = fresh.addNoise(orig, noise, t);
    noised.push(await y.data());
    y.dispose();
  }
  orig.dispose();
  noise.dispose();
  fresh.dispose();
  out.set('add_noise.timesteps', Float32Array.from(idx.map((k) => fresh.timesteps[k]!)));
  out.set('add_noise.out', concatRows(noised));
  return out;
};
