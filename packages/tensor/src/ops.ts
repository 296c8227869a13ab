// The functional op layer that models call. It normalises arguments (padding forms, broadcast views,
// transpose flags instead of copies, heads folded into the channel dim) and runs the op definitions of
// core_ops/ through runOp (op_definition.ts), which checks them and dispatches to the tensors' backend.
// Ops are plain functions over tensors so that the autograd layer can record them.

import type { Activation, BinaryOp, ReduceOp, UnaryOp } from './backend.js';
import { recordFunction } from './autograd.js';
import {
  adaptiveAvgPool2dOp, affineOp, attentionOp, binaryOp, concatOp, conv2dOp, groupNormOp, layerNormOp, matmulOp, mseLossOp, reduceOp,
  softmaxOp, unaryOp, upsampleNearestOp,
} from './core_ops/index.js';
import type { DType } from './dtype.js';
import { runOp, runOp1 } from './op_definition.js';
import { broadcastShapes, formatShape, normAxis, shapesEqual } from './shape.js';
import type { Tensor } from './tensor.js';

// ---------------------------------------------------------------- elementwise

export function unary(op: UnaryOp, x: Tensor): Tensor {
  return runOp1(unaryOp, [x], { op });
}
export const neg = (x: Tensor) => unary('neg', x);
export const exp = (x: Tensor) => unary('exp', x);
export const sqrt = (x: Tensor) => unary('sqrt', x);
export const silu = (x: Tensor) => unary('silu', x);
export const gelu = (x: Tensor) => unary('gelu', x);
export const relu = (x: Tensor) => unary('relu', x);
export const sigmoid = (x: Tensor) => unary('sigmoid', x);

/** x * mul + add. */
export function affine(x: Tensor, mul: number, add = 0): Tensor {
  return runOp1(affineOp, [x], { mul, add });
}
export const scale = (x: Tensor, s: number) => affine(x, s, 0);

export function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  if (a.backend !== b.backend) throw new Error(`${op}: inputs live on different backends (${a.backend.name}, ${b.backend.name})`);
  const shape = broadcastShapes(a.shape, b.shape);
  const ea = shapesEqual(a.shape, shape) ? a : a.expand(shape);
  const eb = shapesEqual(b.shape, shape) ? b : b.expand(shape);
  try {
    return runOp1(binaryOp, [ea, eb], { op });
  } finally {
    if (ea !== a) ea.dispose();
    if (eb !== b) eb.dispose();
  }
}
export const add = (a: Tensor, b: Tensor) => binary('add', a, b);
export const sub = (a: Tensor, b: Tensor) => binary('sub', a, b);
export const mul = (a: Tensor, b: Tensor) => binary('mul', a, b);
export const div = (a: Tensor, b: Tensor) => binary('div', a, b);

/** sum_i w_i * x_i for tensors of one shape (scheduler updates). */
export function linearCombination(terms: readonly (readonly [Tensor, number])[]): Tensor {
  if (terms.length === 0) throw new Error('linearCombination: no terms');
  let acc = affine(terms[0]![0], terms[0]![1]);
  for (const [x, w] of terms.slice(1)) {
    const sx = affine(x, w);
    const next = add(acc, sx);
    acc.dispose();
    sx.dispose();
    acc = next;
  }
  return acc;
}

export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x.contiguous();
  const out = x.backend.cast(x, dtype);
  // The gradient goes back in the input's dtype (f32 for anything trained).
  const from = x.dtype;
  recordFunction('cast', [x], [out], (_ctx, [g]) => [g!.dtype === from ? g!.contiguous() : g!.backend.cast(g!, from)], { saveInputs: false });
  return out;
}

// ---------------------------------------------------------------- reductions

function reduceAxes(x: Tensor, axes: number | readonly number[] | undefined): number[] {
  const list = axes === undefined ? x.shape.map((_, i) => i) : typeof axes === 'number' ? [axes] : axes;
  return [...new Set(list.map((a) => normAxis(a, x.rank)))].sort((p, q) => p - q);
}

/** Reduce over `axes` (all by default); `keepDims` keeps them as size 1. */
export function reduce(op: ReduceOp, x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const ax = reduceAxes(x, axes);
  const r = runOp1(reduceOp, [x], { op, axes: ax });
  if (keepDims) return r;
  const out = r.reshape(x.shape.filter((_, i) => !ax.includes(i)));
  r.dispose();
  return out;
}
export const sum = (x: Tensor, axes?: number | readonly number[], keepDims = false) => reduce('sum', x, axes, keepDims);
export const mean = (x: Tensor, axes?: number | readonly number[], keepDims = false) => reduce('mean', x, axes, keepDims);
export const max = (x: Tensor, axes?: number | readonly number[], keepDims = false) => reduce('max', x, axes, keepDims);

export function softmax(x: Tensor, axis = -1): Tensor {
  if (normAxis(axis, x.rank) !== x.rank - 1) {
    const t = x.transpose(axis, -1);
    const s = softmax(t);
    const back = s.transpose(axis, -1);
    const out = back.contiguous();
    [t, s, back].forEach((v) => v.dispose());
    return out;
  }
  return runOp1(softmaxOp, [x], {});
}

// ---------------------------------------------------------------- linear algebra

/** The [B, R, C] layout of a rank>=2 tensor, and whether it is stored transposed (so no copy is needed). */
function asBatchedMatrix(x: Tensor): { t: Tensor; trans: boolean } {
  const r = x.rank;
  const rows = x.shape[r - 2]!, cols = x.shape[r - 1]!;
  const batch = x.size / (rows * cols);
  // A transposed view of a contiguous matrix: last two strides swapped.
  const s = x.strides;
  const transposedView = r >= 2 && s[r - 2] === 1 && s[r - 1] === rows && x.offset === 0 &&
    (batch === 1 || (r === 3 && s[0] === rows * cols));
  if (transposedView && cols > 1 && rows > 1) {
    // Each view holds a reference on the storage: dispose the intermediate ones (else the weight's
    // storage is never freed when its owner disposes it).
    const tr = x.transpose(-1, -2);
    const c = tr.contiguous();
    const t = c.reshape([batch, cols, rows]);
    tr.dispose();
    c.dispose();
    return { t, trans: true };
  }
  const c = x.contiguous();
  const t = c.reshape([batch, rows, cols]);
  c.dispose();
  return { t, trans: false };
}

export interface MatmulArgs {
  bias?: Tensor;
  alpha?: number;
  activation?: Activation;
  residual?: Tensor;
}

/**
 * Batched matrix product a @ b: a [..., M, K], b [..., K, N] with broadcast batch dims (either side may
 * be unbatched). Transposed views are passed to the backend as flags, not copied.
 */
export function matmul(a: Tensor, b: Tensor, args: MatmulArgs = {}): Tensor {
  if (a.rank < 2 || b.rank < 2) throw new Error(`matmul: expected rank >= 2, found ${formatShape(a.shape)} @ ${formatShape(b.shape)}`);
  const M = a.shape[a.rank - 2]!, K = a.shape[a.rank - 1]!;
  const K2 = b.shape[b.rank - 2]!, N = b.shape[b.rank - 1]!;
  if (K !== K2) throw new Error(`matmul: inner dims differ: ${formatShape(a.shape)} @ ${formatShape(b.shape)}`);
  const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
  const batch = broadcastShapes(batchA, batchB);
  const nb = batch.reduce((p, d) => p * d, 1);
  const na = batchA.reduce((p, d) => p * d, 1), nbb = batchB.reduce((p, d) => p * d, 1);
  // A batch side that is neither the full batch nor 1 must be expanded (materialised).
  const ea = na === nb || na === 1 ? a : a.expand([...batch, M, K]).contiguous();
  const eb = nbb === nb || nbb === 1 ? b : b.expand([...batch, K, N]).contiguous();
  const A = asBatchedMatrix(ea), B = asBatchedMatrix(eb);
  const residual = args.residual?.reshape([nb, M, N]);
  try {
    const out = runOp1(matmulOp, [A.t, B.t, args.bias, residual], {
      transA: A.trans, transB: B.trans, alpha: args.alpha, activation: args.activation,
    });
    const shaped = out.reshape([...batch, M, N]);
    out.dispose();
    return shaped;
  } finally {
    A.t.dispose(); B.t.dispose(); residual?.dispose();
    if (ea !== a) ea.dispose();
    if (eb !== b) eb.dispose();
  }
}

/** torch Linear: x [..., in] @ weight[out, in]^T + bias[out]. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor, activation?: Activation): Tensor {
  if (weight.rank !== 2 || x.shape[x.rank - 1] !== weight.shape[1]) {
    throw new Error(`linear: input ${formatShape(x.shape)} does not match weight ${formatShape(weight.shape)} ([out, in])`);
  }
  const flat = x.reshape([-1, weight.shape[1]!]);
  const wt = weight.transpose(0, 1);
  const y = matmul(flat, wt, { bias, activation });
  const out = y.reshape([...x.shape.slice(0, -1), weight.shape[0]!]);
  [flat, wt, y].forEach((t) => t.dispose());
  return out;
}

export interface Conv2dArgs {
  stride?: number | readonly [number, number];
  /** A number (all sides), [ph, pw], or [top, bottom, left, right]. */
  padding?: number | readonly [number, number] | readonly [number, number, number, number];
  groups?: number;
  residual?: Tensor;
  activation?: Activation;
}

export function conv2d(x: Tensor, weight: Tensor, bias: Tensor | undefined, args: Conv2dArgs = {}): Tensor {
  const st = typeof args.stride === 'number' ? [args.stride, args.stride] as const : args.stride ?? [1, 1] as const;
  const p = args.padding ?? 0;
  const padding = typeof p === 'number' ? [p, p, p, p] as const : p.length === 2 ? [p[0], p[0], p[1], p[1]] as const : p;
  return runOp1(conv2dOp, [x, weight, bias, args.residual], { stride: st, padding, groups: args.groups ?? 1, activation: args.activation });
}

export interface AttentionArgs {
  /** Multiplier of q.k; default 1/sqrt(D). */
  scale?: number;
  /** Mask keys j > i (CLIP's causal self-attention). */
  causal?: boolean;
}

/** q [B, Lq, H*D], k [B, Lk, H*D], v [B, Lk, H*Dv] as [B, L, H, D] views, checked. */
function attentionViews(q: Tensor, k: Tensor, v: Tensor, heads: number): { q4: Tensor; k4: Tensor; v4: Tensor; D: number; Dv: number } {
  const [B, Lq, HD] = q.shape as [number, number, number];
  const Lk = k.shape[1]!;
  if (q.rank !== 3 || k.rank !== 3 || v.rank !== 3 || k.shape[0] !== B || v.shape[0] !== B || v.shape[1] !== Lk ||
      k.shape[2] !== HD || HD % heads !== 0 || v.shape[2]! % heads !== 0) {
    throw new Error(`attention: expected q [B, Lq, H*D], k [B, Lk, H*D], v [B, Lk, H*Dv] with H=${heads}, found ` +
      `${formatShape(q.shape)}, ${formatShape(k.shape)}, ${formatShape(v.shape)}`);
  }
  const D = HD / heads, Dv = v.shape[2]! / heads;
  return { q4: q.reshape([B, Lq, heads, D]), k4: k.reshape([B, Lk, heads, D]), v4: v.reshape([B, Lk, heads, Dv]), D, Dv };
}

/**
 * Scaled dot-product attention with heads interleaved in the channel dim: q [B, Lq, H*D],
 * k [B, Lk, H*D], v [B, Lk, H*Dv] -> [B, Lq, H*Dv]. Scale defaults to 1/sqrt(D).
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, heads: number, opts: AttentionArgs = {}): Tensor {
  return attentionWithStats(q, k, v, heads, opts, false).out;
}

/** attention, plus the logsumexp of each row of scaled scores, lse [B, Lq, H] (for a flash-attention backward). */
export function attentionWithStats(q: Tensor, k: Tensor, v: Tensor, heads: number, opts: AttentionArgs = {}, stats = true): { out: Tensor; lse?: Tensor } {
  const { q4, k4, v4, D } = attentionViews(q, k, v, heads);
  try {
    const [o, lse] = runOp(attentionOp, [q4, k4, v4], { scale: opts.scale ?? 1 / Math.sqrt(D), causal: opts.causal, stats });
    const out = o!.reshape([q.shape[0]!, q.shape[1]!, -1]);
    o!.dispose();
    return lse ? { out, lse } : { out };
  } finally {
    [q4, k4, v4].forEach((t) => t.dispose());
  }
}

// ---------------------------------------------------------------- normalisation

export function groupNorm(x: Tensor, groups: number, weight: Tensor | undefined, bias: Tensor | undefined, eps: number, fuseSilu = false): Tensor {
  return runOp1(groupNormOp, [x, weight, bias], { groups, eps, silu: fuseSilu });
}

/** groupNorm plus the per-(sample, group) mean and rstd [N, G] (what its backward reads). */
export function groupNormWithStats(x: Tensor, groups: number, weight: Tensor | undefined, bias: Tensor | undefined, eps: number, fuseSilu = false): { y: Tensor; mean: Tensor; rstd: Tensor } {
  const [y, mean, rstd] = runOp(groupNormOp, [x, weight, bias], { groups, eps, silu: fuseSilu, stats: true });
  return { y: y!, mean: mean!, rstd: rstd! };
}

export function layerNorm(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number): Tensor {
  return runOp1(layerNormOp, [x, weight, bias], { eps });
}

/** layerNorm plus the per-row mean and rstd (x's shape without the last dim). */
export function layerNormWithStats(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number): { y: Tensor; mean: Tensor; rstd: Tensor } {
  const [y, mean, rstd] = runOp(layerNormOp, [x, weight, bias], { eps, stats: true });
  return { y: y!, mean: mean!, rstd: rstd! };
}

// ---------------------------------------------------------------- resampling and layout

export function upsampleNearest(x: Tensor, size: readonly [number, number]): Tensor {
  return runOp1(upsampleNearestOp, [x], { size });
}

export function adaptiveAvgPool2d(x: Tensor, size: readonly [number, number]): Tensor {
  return runOp1(adaptiveAvgPool2dOp, [x], { size });
}

/** F.mse_loss(pred, target) with reduction 'mean': a [1] tensor. */
export function mseLoss(pred: Tensor, target: Tensor): Tensor {
  return runOp1(mseLossOp, [pred, target], {});
}

export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new Error('concat: no tensors');
  return runOp1(concatOp, xs, { axis: normAxis(axis, xs[0]!.rank) });
}
