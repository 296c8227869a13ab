// The optim_adamw golden case (golden/optim_adamw) as data for optimizer tests: every variant's
// hyperparameters, parameter groups, initial parameters and per-step gradients, read from case.json and
// io.safetensors (nothing hard-coded), and a checker that compares a produced trajectory with the
// case's outputs step by step with the case's tolerances.
//
// Group layout (case.json notes): parameters 0 .. len(control_shapes)-1 form one group with lr *
// control_lr_mult; every later parameter is its own group with the base lr.

import { expectGoldenClose, type GoldenCaseData } from './golden_case_data.js';

export interface AdamwCaseVariant {
  name: string;
  /** clip_grad_norm_ max_norm, or null (no clipping). */
  clip: number | null;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  steps: number;
  groups: { lr: number; members: number[] }[];
  shapes: number[][];
  params: Float32Array[];
  /** grads[step][param] */
  grads: Float32Array[][];
}

/** What an implementation produced, indexed [step][param]. */
export interface AdamwTrajectory {
  totalNorm?: number[];
  clippedGrad?: Float32Array[][];
  param: Float32Array[][];
  expAvg: Float32Array[][];
  expAvgSq: Float32Array[][];
}

export function adamwCaseVariants(gc: GoldenCaseData): AdamwCaseVariant[] {
  const cfg = gc.json.config as { control_shapes: number[][]; to_out_shapes: number[][]; steps: number };
  const nControl = cfg.control_shapes.length;
  const shapes = [...cfg.control_shapes, ...cfg.to_out_shapes];
  return (gc.json.args.variants as {
    name: string; clip: number | null; lr: number; control_lr_mult: number; betas: [number, number]; eps: number; weight_decay: number;
  }[]).map((v) => {
    const params = shapes.map((_, j) => gc.get(`${v.name}.param.${j}`).data);
    const all = shapes.map((_, j) => gc.get(`${v.name}.grads.${j}`).data);
    const grads = Array.from({ length: cfg.steps }, (_, s) => all.map((g, j) => {
      const n = params[j]!.length;
      return g.slice(s * n, (s + 1) * n);
    }));
    const groups = [{ lr: v.lr * v.control_lr_mult, members: Array.from({ length: nControl }, (_, j) => j) }];
    for (let j = nControl; j < shapes.length; j++) groups.push({ lr: v.lr, members: [j] });
    return {
      name: v.name, clip: v.clip, betas: v.betas, eps: v.eps, weightDecay: v.weight_decay, steps: cfg.steps,
      groups, shapes, params, grads,
    };
  });
}

/** Compare a trajectory with the case's outputs (every step, every parameter). */
export function expectAdamwTrajectory(gc: GoldenCaseData, v: AdamwCaseVariant, t: AdamwTrajectory, label: string): void {
  const tol = gc.json.tolerance;
  const slice = (name: string, s: number, n: number) => gc.get(name).data.slice(s * n, (s + 1) * n);
  for (let s = 0; s < v.steps; s++) {
    if (v.clip !== null) {
      const name = `${v.name}.total_norm`;
      expectGoldenClose(`${label} ${name}[${s}]`, [t.totalNorm![s]!], slice(name, s, 1), tol[name]);
    }
    for (let j = 0; j < v.params.length; j++) {
      const n = v.params[j]!.length;
      const pairs: [string, Float32Array | undefined][] = [
        ['param_after', t.param[s]![j]], ['exp_avg', t.expAvg[s]![j]], ['exp_avg_sq', t.expAvgSq[s]![j]],
      ];
      if (v.clip !== null) pairs.push(['clipped_grad', t.clippedGrad![s]![j]]);
      for (const [what, got] of pairs) {
        const name = `${v.name}.${what}.${j}`;
        expectGoldenClose(`${label} ${name} step ${s}`, got!, slice(name, s, n), tol[name]);
      }
    }
  }
}
