// Elementwise kernels: unary (every UnaryOp), affine (x * mul + add) and binary with strided/broadcast
// inputs. Shapes: every input has the output's shape [d0, ..., dn] (broadcast dims have stride 0; the
// functional layer in ops.ts expands them); any strides and offset; f32 inputs; contiguous f32 output.
// One thread per output element; layouts are merged to rank <= 6 by layout.ts's collapseLayouts.
// Dense variant (ElementwiseParams.vec4): when every operand merges to one contiguous run (no broadcast,
// no permutation) whose offset and length are multiples of 4, as the UNet's residual adds and
// activations are, the buffers are read and written as vec4<f32> (one 16-byte load per operand and
// thread, a quarter of the threads, no index arithmetic) and the same scalar expression is evaluated per
// component, so the numerics are those of the strided variant. (Issue 16 lead: the H100 profile showed
// the residual add at ~30 GB/s; the speed-up is unmeasured here, without a GPU.)
//
// Numerics follow cpu_backend.ts applyUnary/applyBinary:
//  - gelu is the exact erf GELU (torch default): gelu_erf from ../wgsl_math.ts, shared with the
//    matmul/conv epilogues and geglu.
//  - gelu_tanh is evaluated as x * sigmoid(2z) (identical to 0.5 x (1 + tanh z), no cancellation).
//  - tanh is wgsl_math.ts's overflow-safe tanh_f32 (some drivers compute tanh as
//    (e^2x - 1)/(e^2x + 1) and return NaN for large |x|).
//  - compare (autograd's masks for max/min gradients): 1.0 where a == b / a > b / a < b, else 0.0.
//  - max/min propagate NaN like the CPU (`a > b || isNaN(a) ? a : b`), tested on bits so that
//    fast-math compilers cannot drop the check.

import type { BinaryOp, Tensor, UnaryOp } from '@cnx/tensor';
import type { GpuContext } from './context.js';
import { memoizeSource } from './pipeline_cache.js';
import { ERF_WGSL, TANH_WGSL } from '../wgsl_math.js';
import {
  THREAD_INDEX, THREAD_INDEX_LET, WORKGROUP, collapseLayouts, packStridedUniforms, stridedOffsetsWgsl,
  stridedUniformWgsl, threadGrid,
} from './layout.js';


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
    case 'tanh': return `tanh_f32(${x})`;
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

/** Comparisons of the autograd's compare op (@cnx/tensor grad_ops/elementwise_backward.ts): 1.0 or 0.0. */
export type CompareOp = 'eq' | 'gt' | 'lt';

function compareExpr(op: CompareOp, a: string, b: string): string {
  const cmp = op === 'eq' ? '==' : op === 'gt' ? '>' : '<';
  return `select(0.0, 1.0, ${a} ${cmp} ${b})`;
}

export type ElementwiseParams = (
  | { kind: 'unary'; op: UnaryOp; rank: number }
  | { kind: 'affine'; rank: number }
  | { kind: 'binary'; op: BinaryOp; rank: number }
  | { kind: 'compare'; op: CompareOp; rank: number }
) & { vec4?: boolean };

/** The scalar WGSL expression of an elementwise kernel over `x` (and `y`). */
function valueExpr(p: ElementwiseParams): string {
  return p.kind === 'unary' ? unaryExpr(p.op, 'x')
    : p.kind === 'affine' ? 'x * u.f.x + u.f.y'
    : p.kind === 'compare' ? compareExpr(p.op, 'x', 'y')
    : binaryExpr(p.op, 'x', 'y');
}

/** The dense vec4 variant: operand k starts at vec4 u.h[k + 1]; u.h.x = vec4 count; u.f as the strided block. */
function wgslVec4(p: ElementwiseParams): string {
  const K = p.kind === 'binary' || p.kind === 'compare' ? 2 : 1;
  return `// elementwise ${p.kind}${'op' in p ? ` ${p.op}` : ''}, dense vec4
struct U { h: vec4<u32>, f: vec4<f32> };
@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
${K === 2 ? '@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;\n' : ''}@group(0) @binding(${K}) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(${K + 1}) var<uniform> u: U;
${p.kind === 'unary' && p.op === 'gelu' ? ERF_WGSL : ''}
${p.kind === 'unary' && p.op === 'tanh' ? TANH_WGSL : ''}
${p.kind === 'binary' ? NAN_WGSL : ''}
@compute @workgroup_size(${WORKGROUP})
fn main(${THREAD_INDEX}) {
  ${THREAD_INDEX_LET}
  if (i >= u.h.x) { return; }
  let xv = a[u.h.y + i];
${K === 2 ? '  let yv = b[u.h.z + i];\n' : ''}  var r: vec4<f32>;
  for (var c = 0u; c < 4u; c++) {
    let x = xv[c];
${K === 2 ? '    let y = yv[c];\n' : ''}    r[c] = ${valueExpr(p)};
  }
  out[i] = r;
}`;
}

export function wgsl(p: ElementwiseParams): string {
  if (p.vec4) return wgslVec4(p);
  const K = p.kind === 'binary' || p.kind === 'compare' ? 2 : 1;
  const inputs = K === 2
    ? `@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;`
    : `@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;`;
  const value = valueExpr(p);
  return `// elementwise ${p.kind}${'op' in p ? ` ${p.op}` : ''}, strided rank ${p.rank}
${stridedUniformWgsl(K).replace('BINDING_U', String(K + 1))}
${inputs}
${p.kind === 'unary' && p.op === 'gelu' ? ERF_WGSL : ''}
${p.kind === 'unary' && p.op === 'tanh' ? TANH_WGSL : ''}
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

const source = memoizeSource(wgsl, (p) => `${p.kind}|${'op' in p ? p.op : ''}|${p.rank}|${p.vec4 ? 'vec4' : ''}`);

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
  // Dense: one merged dim, unit strides, offsets and length multiples of 4 (see the header).
  if (layout.shape.length === 1 && n % 4 === 0 && layout.strides.every((st) => st[0] === 1) && layout.offsets.every((o) => o % 4 === 0)) {
    const u = new ArrayBuffer(32);
    const h = new Uint32Array(u, 0, 4), f = new Float32Array(u, 16, 4);
    h[0] = n / 4;
    layout.offsets.forEach((o, k) => (h[k + 1] = o / 4));
    floats.forEach((v, i) => (f[i] = v));
    ctx.dispatch({
      label: `${label} vec4`,
      code: source({ ...p, rank: 1, vec4: true } as ElementwiseParams),
      bindings: [...xs, out],
      uniforms: u,
      workgroups: threadGrid(ctx, n / 4),
    });
    return out;
  }
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

/** 1.0 where `a op b`, else 0.0; a and b have the output's shape (broadcast dims with stride 0). */
export function compare(ctx: GpuContext, op: CompareOp, a: Tensor, b: Tensor): Tensor {
  if (a.rank !== b.rank || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new Error(`webgpu compare ${op}: inputs must have one shape, got ${a.toString()} and ${b.toString()}`);
  }
  return run(ctx, { kind: 'compare', op }, [a, b]);
}
