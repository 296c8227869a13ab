// optim_adamw: torch.optim.AdamW steps (torch 1.13) on given gradient sequences, with and without
// clip_grad_norm_, through @cnx/tensor's AdamW optimizer (fused groups: one in-place adamw_step per group).
//
// Everything comes from the case: args.variants (name, clip, lr, control_lr_mult, betas, eps,
// weight_decay), config.control_shapes / to_out_shapes / steps, and io tensors `<v>.param.<j>` (initial
// parameter j) and `<v>.grads.<j>` ([steps, ...shape]). Groups (case notes): parameters
// 0 .. len(control_shapes)-1 form one group with lr * control_lr_mult; every later parameter is its own
// group with the base lr. Per step: `.grad` = the step's gradient; clipGradNorm(clip) when clip is set
// (total_norm, clipped_grad); step(); zeroGrad({ setToNone: false }) as the case's call does.
// Produced per step (leading dim = step): `<v>.param_after.<j>`, `<v>.exp_avg.<j>`, `<v>.exp_avg_sq.<j>`,
// and with clipping `<v>.total_norm` and `<v>.clipped_grad.<j>`.
//
// Derived checks `<v>.update.<j>` [steps, ...shape]: the per-step UPDATE (param after step k minus param
// before it), ours against the reference's. Updates are ~lr (1e-5 .. 1e-2) while the parameters are
// checked with max_abs ~1e-5, so only the updates test the step itself. Tolerance: the case's
// `update_tolerance[<v>.update.<j>]` where it has one, else this error model, elementwise, for step k
// (count from 1) and the group's lr, betas:
//   |u_ours - u_ref| <= 4 ulp(max(|p_before|, |p_after|))            parameter roundings
//                     + 16 eps |u_ref|                                 the step term in f32
//                     + 2 (lr/bc1) k eps sqrt(bc2 / ((1-beta2) beta2^k))   cancellation in exp_avg
// Why: u = p_k - p_{k-1} is a difference of f32 parameters. Each implementation rounds p*(1 - lr*wd) and
// p - step (torch and WGSL: twice, <= 1 ulp; the float64 reference once, <= 1/2 ulp), and the error carried
// from p_{k-1} cancels in the difference except for a lr*wd fraction, so two implementations' updates
// differ by <= 2 ulp of the parameter plus their step terms' difference; the bound takes twice that. The
// step (lr/bc1) m / (sqrt(v)/sqrt(bc2) + eps) evaluated in f32 has relative error <= ~8 eps (about ten
// roundings; WGSL division and sqrt within 2.5 ulp), hence 16 eps |u|. exp_avg accumulates rounding of
// its terms, |dm| <= k eps max_t|g_t|, while the denominator is >= sqrt((1-beta2) beta2^k / bc2) max_t|g_t|
// (v_k holds every g_t^2 with weight >= (1-beta2) beta2^k), so a cancelling m moves the step by at most
// (lr/bc1) k eps sqrt(bc2 / ((1-beta2) beta2^k)); taken twice. eps = 2^-23 (f32 machine epsilon).
// rel_l2 tolerance: ||bound||_2 / ||u_ref||_2 (what the elementwise bound implies).

import { AdamW, type AdamWParamGroup, type NamedParameter, type Tensor } from '@cnx/tensor';
import type { DerivedCheck, Produced, Runner, ToleranceSpec } from '../golden_case.js';

interface Variant {
  name: string;
  clip: number | null;
  lr: number;
  control_lr_mult: number;
  betas: [number, number];
  eps: number;
  weight_decay: number;
}

const F32_EPS = 2 ** -23;

/** Spacing of f32 values at |x| (the subnormal spacing below the normal range). */
export function f32Ulp(x: number): number {
  const a = Math.abs(x);
  if (!(a >= 2 ** -126)) return 2 ** -149;
  return 2 ** (Math.floor(Math.log2(a)) - 23);
}

export const optimAdamwRunner: Runner = async (c, backend) => {
  const cfg = c.config as { control_shapes: number[][]; to_out_shapes: number[][]; steps: number };
  for (const key of ['control_shapes', 'to_out_shapes', 'steps'] as const) {
    if (cfg[key] === undefined) throw new Error(`${c.name}: config has no '${key}'`);
  }
  const shapes = [...cfg.control_shapes, ...cfg.to_out_shapes];
  const nControl = cfg.control_shapes.length;
  const steps = cfg.steps;
  const sizes = shapes.map((s) => s.reduce((a, b) => a * b, 1));
  const produced: Produced = new Map();
  const derived: DerivedCheck[] = [];
  const updateTol = (c.json as { update_tolerance?: Record<string, ToleranceSpec> }).update_tolerance ?? {};

  for (const v of c.args.variants as Variant[]) {
    // the parameters, held here as a model would hold them (place() re-homes them into the flat storages)
    const held = new Map<string, Tensor>();
    const named: NamedParameter[] = shapes.map((_, j) => {
      const name = `${v.name}.param.${j}`;
      const t = c.input(name, backend);
      held.set(name, t);
      return [name, t];
    });
    const groups: AdamWParamGroup[] = [
      { params: named.slice(0, nControl), lr: v.lr * v.control_lr_mult },
      ...named.slice(nControl).map((p) => ({ params: [p] })),
    ];
    const opt = new AdamW(groups, {
      lr: v.lr, betas: v.betas, eps: v.eps, weightDecay: v.weight_decay,
      place: (name, view, old) => { held.set(name, view); old.dispose(); },
    });
    const groupLr = shapes.map((_, j) => (j < nControl ? v.lr * v.control_lr_mult : v.lr));
    const grads = shapes.map((_, j) => c.expected(`${v.name}.grads.${j}`).data);
    const record = (what: string) => shapes.map((_, j) => new Float32Array(steps * sizes[j]!)).map((a) => ({ what, a }));
    const paramAfter = record('param_after'), expAvg = record('exp_avg'), expAvgSq = record('exp_avg_sq'), clipped = record('clipped_grad');
    const totalNorm = new Float32Array(steps);
    try {
      for (let s = 0; s < steps; s++) {
        named.forEach(([name], j) => {
          const p = held.get(name)!;
          p.grad?.dispose();
          p.grad = backend.fromRaw(grads[j]!.subarray(s * sizes[j]!, (s + 1) * sizes[j]!), shapes[j]!);
        });
        if (v.clip !== null) {
          const total = opt.clipGradNorm(v.clip);
          totalNorm[s] = (await total.data())[0]!;
          total.dispose();
          for (const [j, [name]] of named.entries()) clipped[j]!.a.set(await held.get(name)!.grad!.data(), s * sizes[j]!);
        }
        opt.step();
        for (const [j, [name]] of named.entries()) {
          paramAfter[j]!.a.set(await held.get(name)!.data(), s * sizes[j]!);
          const st = opt.state(name)!;
          expAvg[j]!.a.set(await st.expAvg.data(), s * sizes[j]!);
          expAvgSq[j]!.a.set(await st.expAvgSq.data(), s * sizes[j]!);
          st.expAvg.dispose();
          st.expAvgSq.dispose();
        }
        opt.zeroGrad({ setToNone: false });
      }
    } finally {
      opt.zeroGrad();
      opt.dispose();
      for (const t of held.values()) t.dispose();
    }
    for (const rec of [paramAfter, expAvg, expAvgSq, ...(v.clip !== null ? [clipped] : [])]) {
      rec.forEach(({ what, a }, j) => produced.set(`${v.name}.${what}.${j}`, a));
    }
    if (v.clip !== null) produced.set(`${v.name}.total_norm`, totalNorm);

    // derived: per-step updates against the reference's
    shapes.forEach((shape, j) => {
      const n = sizes[j]!;
      const refAfter = c.expected(`${v.name}.param_after.${j}`).data;
      const refInit = c.expected(`${v.name}.param.${j}`).data;
      const ours = paramAfter[j]!.a;
      const got = new Float32Array(steps * n), ref = new Float32Array(steps * n), atol = new Float32Array(steps * n);
      const [b1, b2] = v.betas;
      const lr = groupLr[j]!;
      for (let s = 0; s < steps; s++) {
        const k = s + 1, bc1 = 1 - b1 ** k, bc2 = 1 - b2 ** k;
        const cancel = 2 * (lr / bc1) * k * F32_EPS * Math.sqrt(bc2 / ((1 - b2) * b2 ** k));
        for (let i = 0; i < n; i++) {
          const o = s * n + i;
          const before = s === 0 ? refInit[i]! : refAfter[o - n]!;
          const oursBefore = s === 0 ? refInit[i]! : ours[o - n]!;
          // differences of nearby f32 values: exact in f32 (Sterbenz) unless a parameter crosses zero
          got[o] = ours[o]! - oursBefore;
          ref[o] = refAfter[o]! - before;
          atol[o] = 4 * f32Ulp(Math.max(Math.abs(before), Math.abs(refAfter[o]!))) + 16 * F32_EPS * Math.abs(ref[o]!) + cancel;
        }
      }
      const name = `${v.name}.update.${j}`;
      const caseTol = updateTol[name];
      let tol: ToleranceSpec;
      if (caseTol) tol = caseTol;
      else {
        let maxA = 0, num = 0, den = 0;
        for (let o = 0; o < atol.length; o++) { maxA = Math.max(maxA, atol[o]!); num += atol[o]! ** 2; den += ref[o]! ** 2; }
        tol = { max_abs: maxA, rel_l2: den > 0 ? Math.sqrt(num / den) : Infinity };
      }
      derived.push({ name, got, ref, shape: [steps, ...shape], tol, atol: caseTol ? undefined : atol });
    });
  }
  return { produced, derived };
};
