// The kernel checks the browser test runs IN the page (on the browser's WebGPU adapter) and in Node (on
// the float64-accumulating CPU reference backend): one list, bundled into the page (page_entry.ts) and
// imported by browser.test.ts, so both sides run the same code on the same inputs. Each case names its
// inputs' shapes (random values drawn in Node with a seed, sent to the page), runs public ops on them
// and returns the tensors to compare, with a tolerance from the dtype (f32) and the reduction length.
// Together the cases reach every entry of the WebGPU core-kernel table (coreKernels: unary, affine,
// binary, reduce, softmax, matmul, conv2d, attention, group_norm, layer_norm, upsample_nearest,
// adaptive_avg_pool2d, concat, adamw_step, clip_grad_norm, mse_loss), the extension ops of the model
// packages (controlnext.cross_norm, unet.geglu, unet.timestep_embedding), and, through backward() of
// a small network, the gradient kernels (gradKernels) and the extension ops' backward kernels.
// Shapes are awkward on purpose: odd sizes, not multiples of any tile, batch > 1.

import { AdamW, backward, ops, type Tensor } from '@cnx/tensor';
import { crossNorm } from '@cnx/controlnext';
import { geglu, timestepEmbedding } from '@cnx/unet';

export interface InputSpec {
  shape: number[];
  /** Values uniform in [shift - scale, shift + scale] (default 1, 0). */
  scale?: number;
  shift?: number;
}

export interface OpCase {
  name: string;
  inputs: InputSpec[];
  /** Runs on whatever backend the inputs live on; returns the tensors to compare. */
  run(x: Tensor[]): Tensor[];
  /** Largest reduction length behind one output element, and the magnitude of its terms (for the tolerance). */
  reduction?: number;
  magnitude?: number;
  /** A fixed tolerance where the float64 reference and an f32 kernel differ by more than rounding (named why). */
  tol?: { atol: number; rtol: number };
}

const UNARY = ['neg', 'abs', 'exp', 'log', 'sqrt', 'rsqrt', 'recip', 'square', 'sin', 'cos', 'tanh', 'sigmoid', 'relu', 'silu', 'gelu', 'gelu_tanh', 'quick_gelu'] as const;
const POSITIVE = new Set(['log', 'sqrt', 'rsqrt', 'recip']);
/** Transcendental functions: WGSL allows a few ulp (exp: 3 + 2|x| ulp; sin/cos: absolute 2^-11 on [-pi, pi]). */
const UNARY_TOL: Partial<Record<(typeof UNARY)[number], { atol: number; rtol: number }>> = {
  exp: { atol: 1e-30, rtol: 20 * 1.19e-7 }, sin: { atol: 2 ** -11, rtol: 0 }, cos: { atol: 2 ** -11, rtol: 0 },
  tanh: { atol: 4e-7, rtol: 8 * 1.19e-7 }, sigmoid: { atol: 1e-7, rtol: 20 * 1.19e-7 }, silu: { atol: 1e-7, rtol: 20 * 1.19e-7 },
  gelu_tanh: { atol: 1e-7, rtol: 20 * 1.19e-7 }, quick_gelu: { atol: 1e-7, rtol: 20 * 1.19e-7 }, log: { atol: 4 * 1.19e-7, rtol: 4 * 1.19e-7 },
};

export const OP_CASES: OpCase[] = [
  ...UNARY.map((op): OpCase => ({
    name: `unary ${op}`,
    inputs: [{ shape: [3, 37], scale: op === 'exp' ? 8 : op === 'sin' || op === 'cos' ? 3.1 : POSITIVE.has(op) ? 20 : 6, shift: POSITIVE.has(op) ? 20.5 : 0 }],
    run: ([x]) => [ops.unary(op, x!)],
    ...(UNARY_TOL[op] ? { tol: UNARY_TOL[op] } : {}),
  })),
  { name: 'affine', inputs: [{ shape: [5, 19] }], run: ([x]) => [ops.affine(x!, 1.7, -0.3)] },
  ...(['add', 'sub', 'mul', 'div', 'max', 'min'] as const).map((op): OpCase => ({
    name: `binary ${op} (broadcast [2,3,5,7] with [3,1,7])`,
    inputs: [{ shape: [2, 3, 5, 7] }, { shape: [3, 1, 7], ...(op === 'div' ? { scale: 1, shift: 2.5 } : {}) }],
    run: ([a, b]) => [ops.binary(op, a!, b!)],
  })),
  ...(['sum', 'mean', 'max', 'min'] as const).map((op): OpCase => ({
    name: `reduce ${op} over axes 1 and 3, and over everything`,
    inputs: [{ shape: [2, 5, 3, 9] }],
    run: ([x]) => [ops.reduce(op, x!, [1, 3]), ops.reduce(op, x!)],
    reduction: 270,
  })),
  { name: 'softmax (large logits)', inputs: [{ shape: [3, 7, 33], scale: 30 }], run: ([x]) => [ops.softmax(x!)], reduction: 33 },
  {
    name: 'matmul [2,13,37] @ [37,19] + bias, gelu, residual, alpha; transposed operand',
    inputs: [{ shape: [2, 13, 37] }, { shape: [37, 19] }, { shape: [19] }, { shape: [2, 13, 19] }, { shape: [19, 37] }],
    run: ([a, b, bias, res, bt]) => [
      ops.matmul(a!, b!, { bias: bias!, activation: 'gelu', residual: res!, alpha: 0.7 }),
      ops.matmul(a!, bt!.transpose(0, 1)),
    ],
    reduction: 37,
  },
  {
    name: 'conv2d: 3x3 s1 p1 + bias, residual + silu; 3x3 s2 p1; 1x1; groups 2; asymmetric pad s2',
    inputs: [{ shape: [2, 6, 9, 11] }, { shape: [7, 6, 3, 3] }, { shape: [7] }, { shape: [2, 7, 9, 11] }, { shape: [5, 6, 1, 1] }, { shape: [4, 3, 3, 3] }],
    run: ([x, w, b, res, w1, wg]) => [
      ops.conv2d(x!, w!, b!, { padding: 1 }),
      ops.conv2d(x!, w!, b!, { padding: 1, residual: res!, activation: 'silu' }),
      ops.conv2d(x!, w!, undefined, { stride: 2, padding: 1 }),
      ops.conv2d(x!, w1!, undefined),
      ops.conv2d(x!, wg!, undefined, { padding: 1, groups: 2 }),
      ops.conv2d(x!, w!, b!, { stride: 2, padding: [0, 1, 0, 1] }),
    ],
    reduction: 54,
  },
  {
    name: 'attention: cross (2 heads, Lq 17, Lk 23, Dv != D) with logsumexp; causal self',
    inputs: [{ shape: [2, 17, 16] }, { shape: [2, 23, 16] }, { shape: [2, 23, 12] }],
    run: ([q, k, v]) => {
      const { out, lse } = ops.attentionWithStats(q!, k!, v!, 2);
      return [out, lse!, ops.attention(q!, q!, q!, 4, { causal: true })];
    },
    reduction: 23,
  },
  {
    name: 'group_norm (4 groups) with statistics, and fused SiLU',
    inputs: [{ shape: [2, 12, 5, 7] }, { shape: [12] }, { shape: [12] }],
    run: ([x, w, b]) => {
      const { y, mean, rstd } = ops.groupNormWithStats(x!, 4, w!, b!, 1e-5);
      return [y, mean, rstd, ops.groupNorm(x!, 4, w!, b!, 1e-5, true)];
    },
    reduction: 105,
  },
  {
    name: 'layer_norm with statistics; without affine',
    inputs: [{ shape: [3, 11, 40], scale: 3, shift: 1 }, { shape: [40] }, { shape: [40] }],
    run: ([x, w, b]) => {
      const { y, mean, rstd } = ops.layerNormWithStats(x!, w!, b!, 1e-5);
      return [y, mean, rstd, ops.layerNorm(x!, undefined, undefined, 1e-5)];
    },
    reduction: 40,
  },
  {
    name: 'upsample_nearest 2x and to 11x13; adaptive_avg_pool2d 17x13 -> 4x5',
    inputs: [{ shape: [2, 3, 5, 7] }, { shape: [2, 3, 17, 13] }],
    run: ([x, y]) => [ops.upsampleNearest(x!, [10, 14]), ops.upsampleNearest(x!, [11, 13]), ops.adaptiveAvgPool2d(y!, [4, 5])],
    reduction: 20,
  },
  {
    name: 'concat on axes 1 and 2',
    inputs: [{ shape: [2, 3, 4] }, { shape: [2, 5, 4] }, { shape: [2, 3, 7] }],
    run: ([a, b, c]) => [ops.concat([a!, b!], 1), ops.concat([a!, c!], 2)],
  },
  { name: 'mse_loss', inputs: [{ shape: [2, 3, 7, 5] }, { shape: [2, 3, 7, 5] }], run: ([a, b]) => [ops.mseLoss(a!, b!)], reduction: 210 },
  {
    name: 'AdamW: clip_grad_norm, then two adamw_step',
    inputs: [{ shape: [7, 5] }, { shape: [13] }, { shape: [7, 5], scale: 3 }, { shape: [13], scale: 3 }],
    run: ([p1, p2, g1, g2]) => {
      const params = [p1!.contiguous(), p2!.contiguous()];
      const opt = new AdamW(params, { lr: 0.01, weightDecay: 0.1 });
      params[0]!.grad = g1!.contiguous();
      params[1]!.grad = g2!.contiguous();
      const norm = opt.clipGradNorm(1);
      opt.step();
      opt.step();
      return [norm, ...params];
    },
    reduction: 48,
  },
  {
    name: 'controlnext.cross_norm: pool_then_norm with a per-sample scale tensor; norm_then_pool with a shared control',
    inputs: [{ shape: [2, 6, 5, 7] }, { shape: [2, 6, 11, 13] }, { shape: [2] }, { shape: [1, 6, 9, 9] }],
    run: ([x, c, s, c1]) => [
      crossNorm(x!, c!, { eps: 1e-5, order: 'pool_then_norm', scale: s! }),
      crossNorm(x!, c1!, { eps: 1e-5, order: 'norm_then_pool', scale: 0.7 }),
    ],
    reduction: 210,
    magnitude: 4,
  },
  { name: 'unet.geglu', inputs: [{ shape: [2, 9, 2 * 24], scale: 3 }], run: ([h]) => [geglu(h!)] },
  {
    name: 'unet.timestep_embedding (odd width)',
    inputs: [{ shape: [3], scale: 400, shift: 500 }],
    run: ([t]) => [timestepEmbedding(t!, { dim: 33, flipSinToCos: true, downscaleFreqShift: 0 })],
    // sin/cos of arguments up to ~900: f32 argument rounding dominates (|t * f| * eps), as in the kernel tests.
    tol: { atol: 2e-4, rtol: 0 },
  },
  {
    name: 'backward of a small network: conv2d -> group_norm+SiLU -> attention -> geglu -> linear -> cross_norm -> mse',
    inputs: [{ shape: [2, 4, 6, 6] }, { shape: [8, 4, 3, 3], scale: 0.3 }, { shape: [8] }, { shape: [8] }, { shape: [16, 8], scale: 0.3 },
      { shape: [8, 8], scale: 0.3 }, { shape: [2, 8, 6, 6] }, { shape: [2, 8, 9, 9] }],
    run: ([x, wc, gw, gb, wff, wo, target, control]) => {
      const leaves = [x!, wc!, gw!, gb!, wff!, wo!, control!].map((t) => { const c = t.contiguous(); c.requiresGrad = true; return c; });
      const [xl, wcl, gwl, gbl, wffl, wol, ctl] = leaves as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
      const h = ops.groupNorm(ops.conv2d(xl, wcl, undefined, { padding: 1 }), 4, gwl, gbl, 1e-5, true); // [2, 8, 6, 6]
      const seq = h.reshape([2, 8, 36]).transpose(1, 2);                                                // [2, 36, 8]
      const a = ops.attention(seq, seq, seq, 2);                                                        // [2, 36, 8]
      const f = ops.linear(geglu(ops.linear(a, wffl)), wol);                                            // [2, 36, 8]
      const back = f.transpose(1, 2).reshape([2, 8, 6, 6]);
      const y = crossNorm(back, ctl, { eps: 1e-5, order: 'pool_then_norm', scale: 0.5 });
      const loss = ops.mseLoss(y, target!);
      backward(loss);
      return [loss, ...leaves.map((l) => l.grad!)];
    },
    reduction: 1000,
    magnitude: 2,
  },
];

/** The tolerance of a case: its own, else f32 rounding over its reduction length (test/harness/allclose.ts tolFor). */
export function caseTolerance(c: OpCase): { atol: number; rtol: number } {
  if (c.tol) return c.tol;
  const eps = 1.19e-7;
  return { atol: 8 * eps * Math.sqrt(Math.max(c.reduction ?? 1, 1)) * (c.magnitude ?? 1), rtol: 8 * eps };
}

/** Deterministic inputs for a case (mulberry32; the same function runs in Node and in the page). */
export function caseInputs(c: OpCase, seed: number): Float32Array[] {
  return c.inputs.map((spec, i) => {
    let a = (seed * 7919 + i * 104729) >>> 0;
    const n = spec.shape.reduce((p, d) => p * d, 1);
    const out = new Float32Array(n);
    for (let j = 0; j < n; j++) {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      out[j] = (spec.shift ?? 0) + (spec.scale ?? 1) * (2 * u - 1);
    }
    return out;
  });
}
