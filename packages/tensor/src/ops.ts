// The functional op layer that models call. It checks shapes (errors name what was expected and what
// was found), establishes the Backend's layout conventions (broadcast views, contiguous inputs,
// transpose flags instead of copies) and dispatches to the tensor's backend. Ops are plain functions
// over tensors so that a later autograd layer can record them.

import type {
  Activation, AttentionOptions, BinaryOp, CrossNormOptions, ReduceOp, TimestepEmbeddingOptions, UnaryOp,
} from './backend.js';
import type { DType } from './dtype.js';
import { broadcastShapes, formatShape, normAxis, shapesEqual } from './shape.js';
import type { Tensor } from './tensor.js';

/** Run `fn` on contiguous versions of `xs`, disposing any copies it had to make. */
function withContiguous<T>(xs: readonly Tensor[], fn: (cs: Tensor[]) => T): T {
  const cs = xs.map((x) => (x.isContiguous ? x : x.backend.contiguous(x)));
  try {
    return fn(cs);
  } finally {
    cs.forEach((c, i) => { if (c !== xs[i]) c.dispose(); });
  }
}

function assertF32(op: string, ...xs: (Tensor | undefined)[]): void {
  for (const x of xs) if (x && x.dtype !== 'f32') throw new Error(`${op}: expected f32 input, found ${x.dtype} ${formatShape(x.shape)}`);
}

function assertRank(op: string, name: string, x: Tensor, rank: number): void {
  if (x.rank !== rank) throw new Error(`${op}: expected ${name} of rank ${rank}, found ${formatShape(x.shape)}`);
}

// ---------------------------------------------------------------- elementwise

export function unary(op: UnaryOp, x: Tensor): Tensor {
  assertF32(op, x);
  return x.backend.unary(op, x);
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
  assertF32('affine', x);
  return x.backend.affine(x, mul, add);
}
export const scale = (x: Tensor, s: number) => affine(x, s, 0);

export function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  assertF32(op, a, b);
  if (a.backend !== b.backend) throw new Error(`${op}: inputs live on different backends (${a.backend.name}, ${b.backend.name})`);
  const shape = broadcastShapes(a.shape, b.shape);
  const ea = shapesEqual(a.shape, shape) ? a : a.expand(shape);
  const eb = shapesEqual(b.shape, shape) ? b : b.expand(shape);
  try {
    return a.backend.binary(op, ea, eb);
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
  return x.dtype === dtype ? x.contiguous() : x.backend.cast(x, dtype);
}

// ---------------------------------------------------------------- reductions

function reduceAxes(x: Tensor, axes: number | readonly number[] | undefined): number[] {
  const list = axes === undefined ? x.shape.map((_, i) => i) : typeof axes === 'number' ? [axes] : axes;
  return [...new Set(list.map((a) => normAxis(a, x.rank)))].sort((p, q) => p - q);
}

/** Reduce over `axes` (all by default); `keepDims` keeps them as size 1. */
export function reduce(op: ReduceOp, x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  assertF32(op, x);
  const ax = reduceAxes(x, axes);
  const r = x.backend.reduce(op, x, ax);
  if (keepDims) return r;
  const out = r.reshape(x.shape.filter((_, i) => !ax.includes(i)));
  r.dispose();
  return out;
}
export const sum = (x: Tensor, axes?: number | readonly number[], keepDims = false) => reduce('sum', x, axes, keepDims);
export const mean = (x: Tensor, axes?: number | readonly number[], keepDims = false) => reduce('mean', x, axes, keepDims);
export const max = (x: Tensor, axes?: number | readonly number[], keepDims = false) => reduce('max', x, axes, keepDims);

export function softmax(x: Tensor, axis = -1): Tensor {
  assertF32('softmax', x);
  if (normAxis(axis, x.rank) !== x.rank - 1) {
    const t = x.transpose(axis, -1);
    const s = softmax(t);
    const back = s.transpose(axis, -1);
    const out = back.contiguous();
    [t, s, back].forEach((v) => v.dispose());
    return out;
  }
  return withContiguous([x], ([c]) => x.backend.softmax(c!));
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
  assertF32('matmul', a, b, args.bias, args.residual);
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
  if (args.bias && (args.bias.rank !== 1 || args.bias.shape[0] !== N)) {
    throw new Error(`matmul: expected bias [${N}], found ${formatShape(args.bias.shape)}`);
  }
  const residual = args.residual ? args.residual.contiguous().reshape([nb, M, N]) : undefined;
  const bias = args.bias?.contiguous();
  try {
    const out = a.backend.matmul(A.t, B.t, {
      transA: A.trans, transB: B.trans, alpha: args.alpha, activation: args.activation, bias, residual,
    });
    const shaped = out.reshape([...batch, M, N]);
    out.dispose();
    return shaped;
  } finally {
    A.t.dispose(); B.t.dispose(); residual?.dispose(); bias?.dispose();
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
  assertF32('conv2d', x, weight, bias, args.residual);
  assertRank('conv2d', 'input [N, C, H, W]', x, 4);
  assertRank('conv2d', 'weight [O, C/groups, kh, kw]', weight, 4);
  const groups = args.groups ?? 1;
  const [O, Cg] = weight.shape as [number, number, number, number];
  if (x.shape[1] !== Cg * groups || O % groups !== 0) {
    throw new Error(`conv2d: input ${formatShape(x.shape)} does not match weight ${formatShape(weight.shape)} with groups=${groups}`);
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== O)) throw new Error(`conv2d: expected bias [${O}], found ${formatShape(bias.shape)}`);
  const st = typeof args.stride === 'number' ? [args.stride, args.stride] as const : args.stride ?? [1, 1] as const;
  const p = args.padding ?? 0;
  const pad = typeof p === 'number' ? [p, p, p, p] as const : p.length === 2 ? [p[0], p[0], p[1], p[1]] as const : p;
  const extra = [bias, args.residual].filter((t): t is Tensor => t !== undefined);
  return withContiguous([x, weight, ...extra], ([cx, cw, ...rest]) => {
    const cb = bias ? rest.shift() : undefined;
    const cr = args.residual ? rest.shift() : undefined;
    return x.backend.conv2d(cx!, cw!, cb, { stride: st, padding: pad, groups, residual: cr, activation: args.activation });
  });
}

/**
 * Scaled dot-product attention with heads interleaved in the channel dim: q [B, Lq, H*D],
 * k [B, Lk, H*D], v [B, Lk, H*Dv] -> [B, Lq, H*Dv]. Scale defaults to 1/sqrt(D).
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, heads: number, opts: Partial<AttentionOptions> = {}): Tensor {
  assertF32('attention', q, k, v);
  const [B, Lq, HD] = q.shape as [number, number, number];
  const Lk = k.shape[1]!;
  if (q.rank !== 3 || k.rank !== 3 || v.rank !== 3 || k.shape[0] !== B || v.shape[0] !== B || v.shape[1] !== Lk ||
      k.shape[2] !== HD || HD % heads !== 0 || v.shape[2]! % heads !== 0) {
    throw new Error(`attention: expected q [B, Lq, H*D], k [B, Lk, H*D], v [B, Lk, H*Dv] with H=${heads}, found ` +
      `${formatShape(q.shape)}, ${formatShape(k.shape)}, ${formatShape(v.shape)}`);
  }
  const D = HD / heads, Dv = v.shape[2]! / heads;
  return withContiguous([q, k, v], ([cq, ck, cv]) => {
    const q4 = cq!.reshape([B, Lq, heads, D]), k4 = ck!.reshape([B, Lk, heads, D]), v4 = cv!.reshape([B, Lk, heads, Dv]);
    const o = q.backend.attention(q4, k4, v4, { scale: opts.scale ?? 1 / Math.sqrt(D), causal: opts.causal });
    const out = o.reshape([B, Lq, heads * Dv]);
    [q4, k4, v4, o].forEach((t) => t.dispose());
    return out;
  });
}

// ---------------------------------------------------------------- normalisation

export function groupNorm(x: Tensor, groups: number, weight: Tensor | undefined, bias: Tensor | undefined, eps: number, fuseSilu = false): Tensor {
  assertF32('groupNorm', x, weight, bias);
  const C = x.shape[1]!;
  if (x.rank < 2 || C % groups !== 0) throw new Error(`groupNorm: ${C} channels of ${formatShape(x.shape)} do not split into ${groups} groups`);
  for (const [n, t] of [['weight', weight], ['bias', bias]] as const) {
    if (t && (t.rank !== 1 || t.shape[0] !== C)) throw new Error(`groupNorm: expected ${n} [${C}], found ${formatShape(t.shape)}`);
  }
  const ps = [weight, bias].filter((t): t is Tensor => t !== undefined);
  return withContiguous([x, ...ps], ([cx, ...rest]) =>
    x.backend.groupNorm(cx!, weight ? rest.shift() : undefined, bias ? rest.shift() : undefined, { groups, eps, silu: fuseSilu }));
}

export function layerNorm(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps: number): Tensor {
  assertF32('layerNorm', x, weight, bias);
  const D = x.shape[x.rank - 1]!;
  for (const [n, t] of [['weight', weight], ['bias', bias]] as const) {
    if (t && (t.rank !== 1 || t.shape[0] !== D)) throw new Error(`layerNorm: expected ${n} [${D}], found ${formatShape(t.shape)}`);
  }
  const ps = [weight, bias].filter((t): t is Tensor => t !== undefined);
  return withContiguous([x, ...ps], ([cx, ...rest]) =>
    x.backend.layerNorm(cx!, weight ? rest.shift() : undefined, bias ? rest.shift() : undefined, eps));
}

/** See Backend.crossNorm. */
export function crossNorm(x: Tensor, control: Tensor, opts: CrossNormOptions): Tensor {
  assertF32('crossNorm', x, control);
  assertRank('crossNorm', 'feature [N, C, h, w]', x, 4);
  assertRank('crossNorm', 'control [N, C, h, w]', control, 4);
  const N = x.shape[0]!, Nc = control.shape[0]!;
  if (x.shape[1] !== control.shape[1] || (Nc !== N && Nc !== 1)) {
    throw new Error(`crossNorm: control ${formatShape(control.shape)} does not match feature ${formatShape(x.shape)} (channels must agree, batch N or 1)`);
  }
  if (typeof opts.scale !== 'number' && (opts.scale.rank !== 1 || opts.scale.shape[0] !== N)) {
    throw new Error(`crossNorm: expected a per-sample scale [${N}], found ${formatShape(opts.scale.shape)}`);
  }
  const s = opts.scale;
  const ts = typeof s === 'number' ? [] : [s];
  return withContiguous([x, control, ...ts], ([cx, cc, cs]) =>
    x.backend.crossNorm(cx!, cc!, { ...opts, scale: cs ?? (s as number) }));
}

// ---------------------------------------------------------------- resampling and layout

export function upsampleNearest(x: Tensor, size: readonly [number, number]): Tensor {
  assertF32('upsampleNearest', x);
  assertRank('upsampleNearest', 'input [N, C, H, W]', x, 4);
  return withContiguous([x], ([c]) => x.backend.upsampleNearest(c!, size));
}

export function adaptiveAvgPool2d(x: Tensor, size: readonly [number, number]): Tensor {
  assertF32('adaptiveAvgPool2d', x);
  assertRank('adaptiveAvgPool2d', 'input [N, C, H, W]', x, 4);
  return withContiguous([x], ([c]) => x.backend.adaptiveAvgPool2d(c!, size));
}

export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new Error('concat: no tensors');
  const first = xs[0]!;
  const a = normAxis(axis, first.rank);
  for (const x of xs) {
    if (x.rank !== first.rank || x.dtype !== first.dtype || x.shape.some((d, i) => i !== a && d !== first.shape[i])) {
      throw new Error(`concat: ${formatShape(x.shape)} (${x.dtype}) does not match ${formatShape(first.shape)} (${first.dtype}) outside axis ${a}`);
    }
  }
  return withContiguous(xs, (cs) => first.backend.concat(cs, a));
}

export function timestepEmbedding(t: Tensor, dim: number, opts: TimestepEmbeddingOptions): Tensor {
  assertF32('timestepEmbedding', t);
  assertRank('timestepEmbedding', 'timesteps [N]', t, 1);
  return withContiguous([t], ([c]) => t.backend.timestepEmbedding(c!, dim, opts));
}

export function geglu(h: Tensor): Tensor {
  assertF32('geglu', h);
  if (h.shape[h.rank - 1]! % 2 !== 0) throw new Error(`geglu: last dim of ${formatShape(h.shape)} must be even`);
  return withContiguous([h], ([c]) => h.backend.geglu(c!));
}
