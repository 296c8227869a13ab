// Elementwise kernels: unary (every UnaryOp), affine (x * mul + add) and binary with strided/broadcast
// inputs. Shapes: every input has the output's shape [d0, ..., dn] (broadcast dims have stride 0; the
// functional layer in ops.ts expands them); any strides and offset; f32 inputs; contiguous f32 output.
// One thread per output element; layouts are merged to rank <= 6 by layout.ts's collapseLayouts.
//
// Numerics follow cpu_backend.ts applyUnary/applyBinary:
//  - gelu is the exact erf GELU (torch default). WGSL has no erf: erf/erfc here are W. J. Cody's
//    rational approximations (Math. Comp. 23, 1969; the same coefficients as @cnx/tensor's cpu/erf.ts)
//    evaluated in f32, relative error a few f32 ulp. For x < 0, gelu uses erfc directly
//    (0.5 x erfc(-x/sqrt2)) so that the tail keeps its relative accuracy instead of cancelling in 1 + erf.
//  - gelu_tanh is evaluated as x * sigmoid(2z) (identical to 0.5 x (1 + tanh z), no cancellation).
//  - tanh clamps its argument to +-15 (tanh(15) = 1 in f32) because some drivers compute tanh as
//    (e^2x - 1)/(e^2x + 1) and return NaN for large |x|.
//  - max/min propagate NaN like the CPU (`a > b || isNaN(a) ? a : b`), tested on bits so that
//    fast-math compilers cannot drop the check.

import type { BinaryOp, Tensor, UnaryOp } from '@cnx/tensor';
import type { GpuContext } from './context.js';
import { memoizeSource } from './pipeline_cache.js';
import {
  THREAD_INDEX, THREAD_INDEX_LET, WORKGROUP, collapseLayouts, packStridedUniforms, stridedOffsetsWgsl,
  stridedUniformWgsl, threadGrid,
} from './layout.js';

/** WGSL erf / erfc for f32 (Cody's approximations, see header). */
export const ERF_WGSL = `
fn erfc_pos(y: f32) -> f32 {
  // erfc(y) for y > 0.46875
  var r: f32;
  if (y <= 4.0) {
    var num = 2.15311535474403846e-8 * y;
    var den = y;
    num = (num + 0.564188496988670089) * y; den = (den + 15.7449261107098347) * y;
    num = (num + 8.88314979438837594) * y;  den = (den + 117.693950891312499) * y;
    num = (num + 66.1191906371416295) * y;  den = (den + 537.181101862009858) * y;
    num = (num + 298.635138197400131) * y;  den = (den + 1621.38957456669019) * y;
    num = (num + 881.95222124176909) * y;   den = (den + 3290.79923573345963) * y;
    num = (num + 1712.04761263407058) * y;  den = (den + 4362.61909014324716) * y;
    num = (num + 2051.07837782607147) * y;  den = (den + 3439.36767414372164) * y;
    r = (num + 1230.33935479799725) / (den + 1230.33935480374942);
  } else {
    if (y >= 10.0) { return 0.0; } // erfc(10) = 2e-45: below the f32 range
    let z = 1.0 / (y * y);
    var num = 0.0163153871373020978 * z;
    var den = z;
    num = (num + 0.305326634961232344) * z;  den = (den + 2.56852019228982242) * z;
    num = (num + 0.360344899949804439) * z;  den = (den + 1.87295284992346725) * z;
    num = (num + 0.125781726111229246) * z;  den = (den + 0.527905102951428412) * z;
    num = (num + 0.0160837851487422766) * z; den = (den + 0.0605183413124413191) * z;
    r = (z * (num + 6.58749161529837803e-4)) / (den + 0.00233520497626869185);
    r = (0.56418958354775628695 - r) / y;
  }
  // exp(-y^2) split as exp(-ysq^2) exp(-(y-ysq)(y+ysq)) with ysq = y rounded down to 1/16 (Cody), so
  // that the large exponent is exact.
  let ysq = trunc(y * 16.0) / 16.0;
  let del = (y - ysq) * (y + ysq);
  return exp(-ysq * ysq) * exp(-del) * r;
}
fn erf_small(x: f32) -> f32 {
  // |x| <= 0.46875
  let z = x * x;
  var num = 0.185777706184603153 * z;
  var den = z;
  num = (num + 3.1611237438705656) * z;  den = (den + 23.6012909523441209) * z;
  num = (num + 113.864154151050156) * z; den = (den + 244.024637934444173) * z;
  num = (num + 377.485237685302021) * z; den = (den + 1282.61652607737228) * z;
  return x * (num + 3209.37758913846947) / (den + 2844.23683343917062);
}
fn erf_f32(x: f32) -> f32 {
  let y = abs(x);
  if (y <= 0.46875) { return erf_small(x); }
  let c = erfc_pos(y);
  return select(c - 1.0, 1.0 - c, x > 0.0);
}
fn gelu_erf(x: f32) -> f32 {
  let z = x * 0.70710678118654752;
  if (abs(z) <= 0.46875) { return 0.5 * x * (1.0 + erf_small(z)); }
  if (x < 0.0) { return 0.5 * x * erfc_pos(-z); }
  return 0.5 * x * (2.0 - erfc_pos(z));
}
fn tanh_safe(x: f32) -> f32 { return tanh(clamp(x, -15.0, 15.0)); }
`;

/** WGSL expression of a unary op (or activation) applied to the f32 expression `x`. */
export function unaryExpr(op: UnaryOp | 'none', x: string): string {
  switch (op) {
    case 'none': return x;
    case 'neg': return `(-${x})`;
    case 'abs': return `abs(${x})`;
    case 'exp': return `exp(${x})`;
    case 'log': return `log(${x})`;
    case 'sqrt': return `sqrt(${x})`;
    case 'rsqrt': return `(1.0 / sqrt(${x}))`;
    case 'recip': return `(1.0 / ${x})`;
    case 'square': return `(${x} * ${x})`;
    case 'sin': return `sin(${x})`;
    case 'cos': return `cos(${x})`;
    case 'tanh': return `tanh_safe(${x})`;
    case 'sigmoid': return `(1.0 / (1.0 + exp(-${x})))`;
    case 'relu': return `max(${x}, 0.0)`;
    case 'silu': return `(${x} / (1.0 + exp(-${x})))`;
    case 'gelu': return `gelu_erf(${x})`;
    // 0.5 x (1 + tanh(z)) = x sigmoid(2z): the same function without the cancellation of 1 + tanh(z)
    // for x < 0, where tanh(z) -> -1 and the f32 difference would lose every significant digit.
    case 'gelu_tanh': return `(${x} / (1.0 + exp(-1.5957691216057308 * (${x} + 0.044715 * ${x} * ${x} * ${x}))))`;
    case 'quick_gelu': return `(${x} / (1.0 + exp(-1.702 * ${x})))`;
  }
}

const NAN_WGSL = `fn is_nan(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }`;

function binaryExpr(op: BinaryOp, a: string, b: string): string {
  switch (op) {
    case 'add': return `${a} + ${b}`;
    case 'sub': return `${a} - ${b}`;
    case 'mul': return `${a} * ${b}`;
    case 'div': return `${a} / ${b}`;
    case 'max': return `select(${b}, ${a}, ${a} > ${b} || is_nan(${a}))`;
    case 'min': return `select(${b}, ${a}, ${a} < ${b} || is_nan(${a}))`;
  }
}

export type ElementwiseParams =
  | { kind: 'unary'; op: UnaryOp; rank: number }
  | { kind: 'affine'; rank: number }
  | { kind: 'binary'; op: BinaryOp; rank: number };

export function wgsl(p: ElementwiseParams): string {
  const K = p.kind === 'binary' ? 2 : 1;
  const inputs = p.kind === 'binary'
    ? `@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;`
    : `@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;`;
  const value = p.kind === 'unary' ? unaryExpr(p.op, 'x')
    : p.kind === 'affine' ? 'x * u.f.x + u.f.y'
    : binaryExpr(p.op, 'x', 'y');
  return `// elementwise ${p.kind}${'op' in p ? ` ${p.op}` : ''}, strided rank ${p.rank}
${stridedUniformWgsl(K).replace('BINDING_U', String(K + 1))}
${inputs}
${p.kind === 'unary' && ['gelu', 'tanh'].includes(p.op) ? ERF_WGSL : ''}
${p.kind === 'binary' ? NAN_WGSL : ''}
${stridedOffsetsWgsl(p.rank, K)}
@compute @workgroup_size(${WORKGROUP})
fn main(${THREAD_INDEX}) {
  ${THREAD_INDEX_LET}
  if (i >= u.h.x) { return; }
  let o = offsets(i);
  let x = a[o[0]];
${K === 2 ? '  let y = b[o[1]];\n' : ''}  out[i] = ${value};
}`;
}

const source = memoizeSource(wgsl, (p) => `${p.kind}|${'op' in p ? p.op : ''}|${p.rank}`);

function requireF32(x: Tensor, what: string): void {
  if (x.dtype !== 'f32') throw new Error(`webgpu ${what}: expected an f32 input, got ${x.dtype} ${x.toString()} (cast it first)`);
}

type WithoutRank<T> = T extends unknown ? Omit<T, 'rank'> : never;

function run(ctx: GpuContext, p: WithoutRank<ElementwiseParams>, xs: readonly Tensor[], floats: readonly number[] = []): Tensor {
  const label = `${p.kind}${'op' in p ? ` ${p.op}` : ''}`;
  xs.forEach((x) => requireF32(x, label));
  const shape = xs[0]!.shape;
  const out = ctx.empty(shape, 'f32');
  const n = out.size;
  if (n === 0) return out;
  const layout = collapseLayouts(shape, xs, label);
  ctx.dispatch({
    label,
    code: source({ ...p, rank: layout.shape.length } as ElementwiseParams),
    bindings: [...xs, out],
    uniforms: packStridedUniforms(layout, [n], floats),
    workgroups: threadGrid(ctx, n),
  });
  return out;
}

export function unary(ctx: GpuContext, op: UnaryOp, x: Tensor): Tensor {
  return run(ctx, { kind: 'unary', op }, [x]);
}

/** x * mul + add (mul and add rounded to f32). */
export function affine(ctx: GpuContext, x: Tensor, mul: number, add: number): Tensor {
  return run(ctx, { kind: 'affine' }, [x], [mul, add]);
}

/** a and b have the output's shape (broadcast dims with stride 0). */
export function binary(ctx: GpuContext, op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  if (a.rank !== b.rank || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new Error(`webgpu binary ${op}: inputs must have the output's shape (expand first), got ${a.toString()} and ${b.toString()}`);
  }
  return run(ctx, { kind: 'binary', op }, [a, b]);
}
