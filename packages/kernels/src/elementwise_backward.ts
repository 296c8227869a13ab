// Backward of the elementwise activations and of softmax.
//
//  - unaryBackward(op, x, dy): dx = dy * f'(x) for every UnaryOp and epilogue Activation, x and dy
//    contiguous of one shape, one thread per element. Derivatives as @cnx/tensor's unaryDerivative
//    (cpu/elementwise_backward.ts, torch's autograd formulas), written to avoid cancellation and overflow
//    in f32:
//      sigmoid-based ones (sigmoid, silu, quick_gelu) with s = 1/(1 + exp(-a)), which saturates to 0/1;
//      gelu (exact): Phi(x) + x phi(x) with Phi from erfc in the tails (wgsl_math.ts's Cody erf pieces);
//      gelu_tanh: 0.5 (1 + tanh a) = s(2a) and 1 - tanh(a)^2 = 4 s (1 - s), so
//        f' = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2) with s = sigmoid(2a), no 1 + tanh;
//      tanh: 1 - t^2 with wgsl_math.ts's overflow-safe tanh; sin/cos through its accurately
//        range-reduced sincos (WGSL's builtins promise only 2^-11 absolute on [-pi, pi]);
//      abs: sign(x) (0 at 0, as torch's sgn); relu: 1 where x > 0, else 0 (torch's threshold_backward).
//  - softmaxBackward(y, dy): over the last dim D, from the forward's output y:
//    dx = y * (dy - sum_j dy_j y_j), one workgroup per row (tree sum), as torch's _softmax_backward_data.
// Limits: f32 contiguous tensors; numel < 2^32; grids split over x/y past 65535 workgroups.

import type { Activation, Tensor, UnaryOp } from '@cnx/tensor';
import { gridFor, packUniforms, type GpuContext } from './webgpu/context.js';
import { ERF_WGSL, SINCOS_WGSL, TANH_WGSL } from './wgsl_math.js';

const WG = 256;

/** fn phi_cdf(x: f32) -> f32: the standard normal CDF, erfc in the tails (needs ERF_WGSL). */
const PHI_CDF_WGSL = /* wgsl */ `
fn phi_cdf(x: f32) -> f32 {
  let z = x * 0.70710678118654752;
  if (abs(z) <= 0.46875) { return 0.5 * (1.0 + erf_small(z)); }
  if (x < 0.0) { return 0.5 * erfc_pos(-z); }
  return 1.0 - 0.5 * erfc_pos(z);
}`;

/** WGSL defining `fn dfdx(x: f32) -> f32`, the derivative of op, with the helpers it needs. */
export function derivativeWgsl(op: UnaryOp | Activation): string {
  const sig = 'fn sig(a: f32) -> f32 { return 1.0 / (1.0 + exp(-a)); }\n';
  const body = (e: string) => `fn dfdx(x: f32) -> f32 {\n  ${e}\n}\n`;
  switch (op) {
    case 'none': return body('return 1.0;');
    case 'neg': return body('return -1.0;');
    case 'abs': return body('return sign(x);');
    case 'exp': return body('return exp(x);');
    case 'log': return body('return 1.0 / x;');
    case 'sqrt': return body('return 0.5 / sqrt(x);');
    case 'rsqrt': return body('return -0.5 / (x * sqrt(x));');
    case 'recip': return body('return -1.0 / (x * x);');
    case 'square': return body('return 2.0 * x;');
    case 'sin': return `${SINCOS_WGSL}${body('return sincos_f32(x).y;')}`;
    case 'cos': return `${SINCOS_WGSL}${body('return -sincos_f32(x).x;')}`;
    case 'tanh': return `${TANH_WGSL}${body('let t = tanh_f32(x);\n  return 1.0 - t * t;')}`;
    case 'sigmoid': return `${sig}${body('let s = sig(x);\n  return s * (1.0 - s);')}`;
    case 'relu': return body('return select(0.0, 1.0, x > 0.0);');
    case 'silu': return `${sig}${body('let s = sig(x);\n  return s * (1.0 + x * (1.0 - s));')}`;
    case 'quick_gelu': return `${sig}${body('let s = sig(1.702 * x);\n  return s + 1.702 * x * s * (1.0 - s);')}`;
    case 'gelu': return `${ERF_WGSL}${PHI_CDF_WGSL}\n${body('return phi_cdf(x) + x * 0.3989422804014327 * exp(-0.5 * x * x);')}`;
    case 'gelu_tanh':
      return `${sig}${body(`let s = sig(1.5957691216057308 * (x + 0.044715 * x * x * x));
  return s + 2.0 * x * s * (1.0 - s) * 0.7978845608028654 * (1.0 + 0.134145 * x * x);`)}`;
  }
}

export interface ElementwiseBackwardParams {
  kind: 'unary' | 'softmax';
  /** The op whose derivative 'unary' applies. */
  op?: UnaryOp | Activation;
  wg: number;
}

export function wgsl(p: ElementwiseBackwardParams): string {
  if (p.kind === 'unary') {
    return /* wgsl */ `// unary backward: dx = dy * f'(x), f = ${p.op}
struct U { n: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> DY: array<f32>;
@group(0) @binding(2) var<storage, read_write> DX: array<f32>;
@group(0) @binding(3) var<uniform> u: U;
${derivativeWgsl(p.op!)}
@compute @workgroup_size(${p.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let i = (wid.x + wid.y * nwg.x) * ${p.wg}u + tid;
  if (i >= u.n) { return; }
  DX[i] = DY[i] * dfdx(X[i]);
}
`;
  }
  if (p.wg & (p.wg - 1)) throw new Error(`softmax backward: workgroup size ${p.wg} is not a power of two`);
  return /* wgsl */ `// softmax backward over the last dim: dx = y * (dy - sum(dy * y))
struct U { rows: u32, d: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> Y: array<f32>;
@group(0) @binding(1) var<storage, read> DY: array<f32>;
@group(0) @binding(2) var<storage, read_write> DX: array<f32>;
@group(0) @binding(3) var<uniform> u: U;
const WG = ${p.wg}u;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(${p.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= u.rows) { return; }
  let base = row * u.d;
  var acc = 0.0;
  for (var j = tid; j < u.d; j += WG) { acc = fma(DY[base + j], Y[base + j], acc); }
  red[tid] = acc;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (tid < stride) { red[tid] = red[tid] + red[tid + stride]; }
    workgroupBarrier();
  }
  let dot = red[0];
  for (var j = tid; j < u.d; j += WG) { DX[base + j] = Y[base + j] * (DY[base + j] - dot); }
}
`;
}

function requireSame(op: string, a: Tensor, b: Tensor, an: string, bn: string): void {
  if (a.dtype !== 'f32' || b.dtype !== 'f32' || a.rank !== b.rank || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new Error(`${op}: expected f32 ${an} and ${bn} of one shape, found ${a.dtype} [${a.shape.join(', ')}] and ${b.dtype} [${b.shape.join(', ')}]`);
  }
}

/** dx = dy * f'(x) for a unary op or activation; x and dy contiguous of the same shape. */
export function unaryBackward(ctx: GpuContext, op: UnaryOp | Activation, x: Tensor, dy: Tensor): Tensor {
  requireSame(`unaryBackward ${op}`, x, dy, 'x', 'dy');
  const dx = ctx.empty(x.shape);
  if (x.size === 0) return dx;
  ctx.dispatch({
    label: `unary_backward_${op}`, code: wgsl({ kind: 'unary', op, wg: WG }), bindings: [x, dy, dx],
    uniforms: packUniforms([['u32', x.size], ['u32', 0], ['u32', 0], ['u32', 0]]),
    workgroups: gridFor(Math.ceil(x.size / WG), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
  return dx;
}

function rowWorkgroup(d: number): number {
  let wg = 32;
  while (wg < 256 && wg * 8 < d) wg *= 2;
  return wg;
}

/** Softmax backward over the last dim from its output y: dx = y * (dy - rowsum(dy * y)). */
export function softmaxBackward(ctx: GpuContext, y: Tensor, dy: Tensor): Tensor {
  requireSame('softmaxBackward', y, dy, 'y', 'dy');
  const D = y.shape[y.rank - 1];
  if (D === undefined || D === 0) throw new Error(`softmaxBackward: expected y [..., D] with D > 0, found [${y.shape.join(', ')}]`);
  const dx = ctx.empty(y.shape);
  const rows = y.size / D;
  if (rows === 0) return dx;
  ctx.dispatch({
    label: 'softmax_backward', code: wgsl({ kind: 'softmax', wg: rowWorkgroup(D) }), bindings: [y, dy, dx],
    uniforms: packUniforms([['u32', rows], ['u32', D], ['u32', 0], ['u32', 0]]),
    workgroups: gridFor(rows, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
  return dx;
}
