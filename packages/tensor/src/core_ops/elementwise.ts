// Elementwise core ops: unary functions, the affine map x * mul + add, and binary ops on two tensors of
// the output's shape (ops.binary broadcasts by expanding views first, so the inputs may have stride-0
// dims: these ops read strided views, inputLayout 'strided').

import type { Activation, BinaryOp, UnaryOp } from '../backend.js';
import { erf } from '../cpu/erf.js';
import { defineOp, expectF32, f32 } from '../op_definition.js';
import { formatShape, numel, shapesEqual } from '../shape.js';

/** The reference value of a unary op or an epilogue activation at x (float64). */
export function applyUnary(op: UnaryOp | Activation, x: number): number {
  switch (op) {
    case 'none': return x;
    case 'neg': return -x;
    case 'abs': return Math.abs(x);
    case 'exp': return Math.exp(x);
    case 'log': return Math.log(x);
    case 'sqrt': return Math.sqrt(x);
    case 'rsqrt': return 1 / Math.sqrt(x);
    case 'recip': return 1 / x;
    case 'square': return x * x;
    case 'sin': return Math.sin(x);
    case 'cos': return Math.cos(x);
    case 'tanh': return Math.tanh(x);
    case 'sigmoid': return 1 / (1 + Math.exp(-x));
    case 'relu': return x > 0 ? x : 0;
    case 'silu': return x / (1 + Math.exp(-x));
    case 'gelu': return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'gelu_tanh': return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    case 'quick_gelu': return x / (1 + Math.exp(-1.702 * x));
  }
}

/** The reference value of a binary op (max/min propagate NaN, as torch.maximum does). */
export function applyBinary(op: BinaryOp, a: number, b: number): number {
  switch (op) {
    case 'add': return a + b;
    case 'sub': return a - b;
    case 'mul': return a * b;
    case 'div': return a / b;
    case 'max': return a > b || Number.isNaN(a) ? a : b;
    case 'min': return a < b || Number.isNaN(a) ? a : b;
  }
}

export interface UnaryParams { op: UnaryOp }
export interface AffineParams { mul: number; add: number }
export interface BinaryParams { op: BinaryOp }

/** y = f(x), any shape. */
export const unaryOp = defineOp<UnaryParams>({
  name: 'unary',
  inputLayout: 'strided',
  outputs([x], p) {
    expectF32(p.op, [x]);
    return f32(x!.shape);
  },
  cpu([x], p) {
    const v = x!.data as Float32Array;
    const out = new Float32Array(v.length);
    for (let i = 0; i < v.length; i++) out[i] = applyUnary(p.op, v[i]!);
    return [out];
  },
});

/** y = x * mul + add. */
export const affineOp = defineOp<AffineParams>({
  name: 'affine',
  inputLayout: 'strided',
  outputs([x]) {
    expectF32('affine', [x]);
    return f32(x!.shape);
  },
  cpu([x], { mul, add }) {
    const v = x!.data as Float32Array;
    const out = new Float32Array(v.length);
    for (let i = 0; i < v.length; i++) out[i] = v[i]! * mul + add;
    return [out];
  },
});

/** y = a op b for a and b of one shape (broadcast views arrive expanded). */
export const binaryOp = defineOp<BinaryParams>({
  name: 'binary',
  inputLayout: 'strided',
  outputs([a, b], p) {
    expectF32(p.op, [a, b]);
    if (!shapesEqual(a!.shape, b!.shape)) {
      throw new Error(`${p.op}: expected inputs of one shape (ops.binary expands broadcasts), found ${formatShape(a!.shape)} and ${formatShape(b!.shape)}`);
    }
    return f32(a!.shape);
  },
  cpu([a, b], p) {
    const va = a!.data as Float32Array, vb = b!.data as Float32Array;
    const out = new Float32Array(numel(a!.shape));
    for (let i = 0; i < out.length; i++) out[i] = applyBinary(p.op, va[i]!, vb[i]!);
    return [out];
  },
});
