// AdamW and clip_grad_norm_ exactly as PyTorch 1.13 orders them (torch/optim/adamw.py
// `_single_tensor_adamw`, no amsgrad, not maximising; torch/nn/utils/clip_grad.py `clip_grad_norm_`
// with norm_type 2), as pure float64 functions: every element is updated in float64 from the f32
// inputs and the new param, exp_avg and exp_avg_sq are rounded once to f32 (torch does the same
// arithmetic in f32; the optim_adamw golden case gives the float32-vs-float64 distance).
//
// One step with step count k (1 for the first step), per element:
//   p   <- p * (1 - lr * weight_decay)          decoupled weight decay FIRST, on the pre-update value
//   m   <- beta1 * m + (1 - beta1) * g
//   v   <- beta2 * v + (1 - beta2) * g * g
//   bc1 = 1 - beta1^k, bc2 = 1 - beta2^k        (python floats, i.e. float64, in torch)
//   denom = sqrt(v) / sqrt(bc2) + eps            eps AFTER the bias-corrected sqrt
//   p   <- p - (lr / bc1) * m / denom
// clip_grad_norm_(grads, max_norm): total = sqrt(sum_i ||g_i||^2) over every gradient of every group;
// coef = max_norm / (total + 1e-6); every g_i is multiplied by min(coef, 1) (by 1 when not clipping);
// returns total (before clipping).
// Parameter groups (own lr, same betas/eps/decay or their own) are separate calls with their own
// hyperparameters; the step count is per parameter in torch, equal for all of them in a plain loop.

export interface AdamWHyperparameters {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** The per-step scalars of AdamW in float64 (the WGSL kernel receives them as f32 uniforms). */
export interface AdamWScalars {
  /** 1 - lr * weight_decay */
  decay: number;
  /** lr / (1 - beta1^k) */
  stepSize: number;
  /** sqrt(1 - beta2^k) */
  bc2Sqrt: number;
}

export function adamwScalars(step: number, h: AdamWHyperparameters): AdamWScalars {
  if (!Number.isInteger(step) || step < 1) throw new Error(`adamw: expected a step count >= 1 (1 on the first step), found ${step}`);
  if (!(h.beta1 >= 0 && h.beta1 < 1 && h.beta2 >= 0 && h.beta2 < 1)) {
    throw new Error(`adamw: expected betas in [0, 1), found (${h.beta1}, ${h.beta2})`);
  }
  return {
    decay: 1 - h.lr * h.weightDecay,
    stepSize: h.lr / (1 - h.beta1 ** step),
    bc2Sqrt: Math.sqrt(1 - h.beta2 ** step),
  };
}

export interface AdamWState {
  param: Float32Array;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}

/**
 * One AdamW step on one tensor (or a parameter group's flat buffers): returns the new param, exp_avg
 * and exp_avg_sq (the inputs are not modified). `step` is the step count after incrementing (1 first).
 */
export function adamwStep(state: AdamWState, grad: Float32Array, step: number, h: AdamWHyperparameters): AdamWState {
  const n = state.param.length;
  if (grad.length !== n || state.expAvg.length !== n || state.expAvgSq.length !== n) {
    throw new Error(`adamw: expected param, grad, exp_avg and exp_avg_sq of equal length, found ${n}, ${grad.length}, ` +
      `${state.expAvg.length}, ${state.expAvgSq.length}`);
  }
  const { decay, stepSize, bc2Sqrt } = adamwScalars(step, h);
  const param = new Float32Array(n), expAvg = new Float32Array(n), expAvgSq = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const g = grad[i]!;
    const m = h.beta1 * state.expAvg[i]! + (1 - h.beta1) * g;
    const v = h.beta2 * state.expAvgSq[i]! + (1 - h.beta2) * g * g;
    const denom = Math.sqrt(v) / bc2Sqrt + h.eps;
    param[i] = state.param[i]! * decay - (stepSize * m) / denom;
    expAvg[i] = m;
    expAvgSq[i] = v;
  }
  return { param, expAvg, expAvgSq };
}

/** Global L2 norm of every gradient together, float64. */
export function gradNorm(grads: readonly Float32Array[]): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  return Math.sqrt(s);
}

/** min(max_norm / (total + 1e-6), 1): the factor clip_grad_norm_ multiplies every gradient by. */
export function clipCoefficient(totalNorm: number, maxNorm: number): number {
  return Math.min(maxNorm / (totalNorm + 1e-6), 1);
}

/** clip_grad_norm_: the total norm (before clipping) and the scaled gradients (new arrays). */
export function clipGradNorm(grads: readonly Float32Array[], maxNorm: number): { totalNorm: number; grads: Float32Array[] } {
  if (!(maxNorm > 0)) throw new Error(`clipGradNorm: expected max_norm > 0, found ${maxNorm}`);
  const totalNorm = gradNorm(grads);
  const coef = clipCoefficient(totalNorm, maxNorm);
  return { totalNorm, grads: grads.map((g) => g.map((v) => v * coef)) };
}
