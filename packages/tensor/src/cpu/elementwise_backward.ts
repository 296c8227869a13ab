// Backward of the elementwise activations, softmax, and the mean-squared-error loss, float64 math,
// results rounded once to f32.
//
//  - unaryBackward(op, x, dy): dx = dy * f'(x) for every UnaryOp and epilogue Activation of backend.ts
//    (f as CpuBackend's applyUnary). Derivatives as torch's autograd formulas
//    (tools/autograd/derivatives.yaml): abs -> sgn(x) (0 at 0), relu -> 1 where x > 0 else 0
//    (threshold_backward), gelu (exact) -> Phi(x) + x phi(x), gelu_tanh -> torch's tanh-approximation
//    derivative, silu -> s (1 + x (1 - s)), quick_gelu (x sigmoid(1.702 x)) -> s + 1.702 x s (1 - s).
//  - softmaxBackward(y, dy, D): softmax over the last dim D, from its output y:
//    dx = y * (dy - sum_j dy_j y_j) per row (torch's _softmax_backward_data).
//  - mseLoss(pred, target): mean((pred - target)^2) -> one value; mseLossBackward(pred, target, gy):
//    dpred = gy * 2 (pred - target) / numel, dtarget = -dpred (F.mse_loss(reduction='mean')).

import type { Activation, UnaryOp } from '../backend.js';
import { erf } from './erf.js';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** f'(x) of a unary op or activation, in float64. */
export function unaryDerivative(op: UnaryOp | Activation, x: number): number {
  switch (op) {
    case 'none': return 1;
    case 'neg': return -1;
    case 'abs': return x > 0 ? 1 : x < 0 ? -1 : x === 0 ? 0 : NaN;
    case 'exp': return Math.exp(x);
    case 'log': return 1 / x;
    case 'sqrt': return 0.5 / Math.sqrt(x);
    case 'rsqrt': return -0.5 / (x * Math.sqrt(x));
    case 'recip': return -1 / (x * x);
    case 'square': return 2 * x;
    case 'sin': return Math.cos(x);
    case 'cos': return -Math.sin(x);
    case 'tanh': { const t = Math.tanh(x); return 1 - t * t; }
    case 'sigmoid': { const s = sigmoid(x); return s * (1 - s); }
    case 'relu': return x > 0 ? 1 : 0;
    case 'silu': { const s = sigmoid(x); return s * (1 + x * (1 - s)); }
    case 'gelu': return 0.5 * (1 + erf(x / Math.SQRT2)) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x);
    case 'gelu_tanh': {
      const inner = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
      const t = Math.tanh(inner);
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x);
    }
    case 'quick_gelu': { const s = sigmoid(1.702 * x); return s + 1.702 * x * s * (1 - s); }
  }
}

/** dx = dy * f'(x), elementwise; x and dy have the same length. */
export function unaryBackward(op: UnaryOp | Activation, x: Float32Array, dy: Float32Array): Float32Array {
  if (x.length !== dy.length) throw new Error(`unaryBackward ${op}: x has ${x.length} elements, dy ${dy.length}; expected equal`);
  const dx = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) dx[i] = dy[i]! * unaryDerivative(op, x[i]!);
  return dx;
}

/** Softmax over the last dim of size D: dx = y * (dy - rowsum(dy * y)). y, dy: [..., D] flat. */
export function softmaxBackward(y: Float32Array, dy: Float32Array, D: number): Float32Array {
  if (y.length !== dy.length || !(D > 0) || y.length % D !== 0) {
    throw new Error(`softmaxBackward: expected y and dy of equal length, a multiple of D=${D}; found ${y.length} and ${dy.length}`);
  }
  const dx = new Float32Array(y.length);
  for (let r = 0; r < y.length / D; r++) {
    let dot = 0;
    for (let j = r * D; j < (r + 1) * D; j++) dot += dy[j]! * y[j]!;
    for (let j = r * D; j < (r + 1) * D; j++) dx[j] = y[j]! * (dy[j]! - dot);
  }
  return dx;
}

function checkPair(op: string, pred: Float32Array, target: Float32Array): void {
  if (pred.length !== target.length || pred.length === 0) {
    throw new Error(`${op}: expected pred and target of equal, non-zero length, found ${pred.length} and ${target.length}`);
  }
}

/** mean((pred - target)^2) over every element (F.mse_loss, reduction='mean'), as a float64 number. */
export function mseLoss(pred: Float32Array, target: Float32Array): number {
  checkPair('mseLoss', pred, target);
  let s = 0;
  for (let i = 0; i < pred.length; i++) s += (pred[i]! - target[i]!) ** 2;
  return s / pred.length;
}

/** Gradients of gy * mseLoss(pred, target): dpred = gy * 2 (pred - target) / numel, dtarget = -dpred. */
export function mseLossBackward(pred: Float32Array, target: Float32Array, gy: number): { dpred: Float32Array; dtarget: Float32Array } {
  checkPair('mseLossBackward', pred, target);
  const k = (2 * gy) / pred.length;
  const dpred = new Float32Array(pred.length), dtarget = new Float32Array(pred.length);
  for (let i = 0; i < pred.length; i++) {
    const d = k * (pred[i]! - target[i]!);
    dpred[i] = d;
    dtarget[i] = -d;
  }
  return { dpred, dtarget };
}
