// Elementwise core ops: unary functions, the affine map x * mul + add, and binary ops on two tensors of
// the output's shape (ops.binary broadcasts by expanding views first, so the inputs may have stride-0
// dims: these ops read strided views, inputLayout 'strided').
// Backward: unary -> unary_backward (dy * f'(x), grad_ops/elementwise_backward.ts); affine -> dy * mul;
// binary -> add/sub/mul/div by their derivatives, max/min (torch.maximum's rule: the larger input gets
// the gradient, ties split it in halves). The binary inputs' gradients have the output's shape; the
// broadcast expand that made them (ops.binary) sums them back over the broadcast dims (tensor.ts).

import type { Activation, BinaryOp, UnaryOp } from '../backend.js';
import { erf } from '../cpu/erf.js';
import { compareOp, unaryBackwardOp } from '../grad_ops/elementwise_backward.js';
import { defineOp, expectF32, f32, runOp1, type OpDefinition } from '../op_definition.js';
import { formatShape, numel, shapesEqual } from '../shape.js';
import type { Tensor } from '../tensor.js';

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
export const unaryOp: OpDefinition<UnaryParams> = defineOp<UnaryParams>({
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
  saves: (_, p) => ({ inputs: p.op === 'neg' ? [] : [0], outputs: [] }),
  backward({ inputs: [x], params }, [g]) {
    if (params.op === 'neg') return [runOp1(affineOp, [g], { mul: -1, add: 0 })];
    return [runOp1(unaryBackwardOp, [x, g], { op: params.op })];
  },
});

/** y = x * mul + add. */
export const affineOp: OpDefinition<AffineParams> = defineOp<AffineParams>({
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
  saves: () => ({ inputs: [], outputs: [] }),
  backward({ params }, [g]) {
    return [runOp1(affineOp, [g], { mul: params.mul, add: 0 })];
  },
});

/** y = a op b for a and b of one shape (broadcast views arrive expanded). */
export const binaryOp: OpDefinition<BinaryParams> = defineOp<BinaryParams>({
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
  saves(needs, p) {
    switch (p.op) {
      case 'add': case 'sub': return { inputs: [], outputs: [] };
      case 'mul': return { inputs: [...(needs[1] ? [0] : []), ...(needs[0] ? [1] : [])], outputs: [] };
      case 'div': return { inputs: [1], outputs: needs[1] ? [0] : [] };
      case 'max': case 'min': return { outputs: [] };
    }
  },
  backward({ inputs: [a, b], outputs: [y], params, needsGrad }, [g]) {
    const bin = (op: BinaryOp, x: Tensor, z: Tensor) => runOp1(binaryOp, [x, z], { op });
    switch (params.op) {
      case 'add': return [g, g];
      case 'sub': return [g, runOp1(affineOp, [g!], { mul: -1, add: 0 })];
      case 'mul': return [needsGrad[0] ? bin('mul', g!, b!) : undefined, needsGrad[1] ? bin('mul', g!, a!) : undefined];
      case 'div': {
        // y = a / b: da = g / b, db = -g a / b^2 = -da * y
        const da = bin('div', g!, b!);
        return [da, needsGrad[1] ? runOp1(affineOp, [bin('mul', da, y!)], { mul: -1, add: 0 }) : undefined];
      }
      case 'max': case 'min': {
        // weight of a: 1 where a wins, 1/2 on a tie, 0 where b wins (torch.maximum / minimum backward)
        const wins = runOp1(compareOp, [a!, b!], { op: params.op === 'max' ? 'gt' : 'lt' });
        const ties = runOp1(compareOp, [a!, b!], { op: 'eq' });
        const wa = bin('add', wins, runOp1(affineOp, [ties], { mul: 0.5, add: 0 }));
        const da = bin('mul', g!, wa);
        return [da, needsGrad[1] ? bin('sub', g!, da) : undefined];
      }
    }
  },
});
