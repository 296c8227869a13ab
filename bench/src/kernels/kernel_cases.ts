// The kernel benchmark cases: one entry per kernel family and shape, each with its counted FLOPs and
// compulsory bytes (every input read once and every output written once, f32), so achieved GFLOP/s and
// GB/s can be read next to the time. 'full' shapes are the real SD1.5 shapes at 512x512 pixels (latent
// 64x64, CFG batch 2; the control modules at pixel resolution); 'small' shapes are for software
// adapters (0.1-1 GFLOP/s) and keep each case under about a second there.

import { crossNorm } from '@cnx/controlnext';
import { ops, type Backend, type Tensor } from '@cnx/tensor';
import { geglu } from '@cnx/unet';

export type KernelFamily = 'matmul' | 'conv2d' | 'attention' | 'group_norm' | 'layer_norm' | 'softmax' | 'cross_norm' | 'geglu' | 'elementwise' | 'upsample';

export interface KernelCase {
  family: KernelFamily;
  name: string;
  /** Where the shape occurs in SD1.5 / the control modules. */
  where: string;
  flops: number;
  bytes: number;
  /** Allocate inputs; returns the op to time (it returns the output, which the timer disposes). */
  setup(backend: Backend): { run(): Tensor; dispose(): void };
  /** For matmul cases: the operand shapes, so other implementations (naive WGSL, gpu.js) can run the same product. */
  matmul?: { M: number; N: number; K: number };
}

function filled(backend: Backend, shape: number[], seed: number, lo = -1, hi = 1): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const d = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    d[i] = lo + ((hi - lo) * s) / 4294967296;
  }
  return backend.fromRaw(d, shape);
}

const F32 = 4;

/** y [M, N] = x [M, K] @ W[N, K]^T + b: a torch Linear, as ops.linear runs it. */
function linearCase(name: string, where: string, M: number, K: number, N: number): KernelCase {
  return {
    family: 'matmul', name, where,
    flops: 2 * M * N * K + M * N,
    bytes: F32 * (M * K + N * K + N + M * N),
    matmul: { M, N, K },
    setup(be) {
      const x = filled(be, [M, K], 1), w = filled(be, [N, K], 2, -0.05, 0.05), b = filled(be, [N], 3);
      return { run: () => ops.linear(x, w, b), dispose: () => [x, w, b].forEach((t) => t.dispose()) };
    },
  };
}

function convCase(name: string, where: string, N: number, C: number, H: number, W: number, O: number, k: number, stride = 1): KernelCase {
  const pad = (k - 1) / 2;
  const Ho = Math.floor((H + 2 * pad - k) / stride) + 1, Wo = Math.floor((W + 2 * pad - k) / stride) + 1;
  return {
    family: 'conv2d', name, where,
    flops: 2 * N * O * Ho * Wo * C * k * k + N * O * Ho * Wo,
    bytes: F32 * (N * C * H * W + O * C * k * k + O + N * O * Ho * Wo),
    setup(be) {
      const x = filled(be, [N, C, H, W], 4), w = filled(be, [O, C, k, k], 5, -0.05, 0.05), b = filled(be, [O], 6);
      return { run: () => ops.conv2d(x, w, b, { stride, padding: pad }), dispose: () => [x, w, b].forEach((t) => t.dispose()) };
    },
  };
}

function attentionCase(name: string, where: string, B: number, H: number, Lq: number, Lk: number, D: number): KernelCase {
  return {
    family: 'attention', name, where,
    flops: 2 * B * H * Lq * Lk * 2 * D + 5 * B * H * Lq * Lk,
    bytes: F32 * (B * Lq * H * D * 2 + 2 * B * Lk * H * D),
    setup(be) {
      const q = filled(be, [B, Lq, H * D], 7), k = filled(be, [B, Lk, H * D], 8), v = filled(be, [B, Lk, H * D], 9);
      return { run: () => ops.attention(q, k, v, H), dispose: () => [q, k, v].forEach((t) => t.dispose()) };
    },
  };
}

function groupNormCase(name: string, where: string, N: number, C: number, H: number, W: number, groups: number, silu: boolean): KernelCase {
  const n = N * C * H * W;
  return {
    family: 'group_norm', name, where,
    flops: 8 * n + (silu ? 4 * n : 0),
    bytes: F32 * (2 * n + 2 * C),
    setup(be) {
      const x = filled(be, [N, C, H, W], 10), w = filled(be, [C], 11), b = filled(be, [C], 12);
      return { run: () => ops.groupNorm(x, groups, w, b, 1e-5, silu), dispose: () => [x, w, b].forEach((t) => t.dispose()) };
    },
  };
}

function layerNormCase(name: string, where: string, rows: number, D: number): KernelCase {
  return {
    family: 'layer_norm', name, where,
    flops: 8 * rows * D,
    bytes: F32 * (2 * rows * D + 2 * D),
    setup(be) {
      const x = filled(be, [rows, D], 13), w = filled(be, [D], 14), b = filled(be, [D], 15);
      return { run: () => ops.layerNorm(x, w, b, 1e-5), dispose: () => [x, w, b].forEach((t) => t.dispose()) };
    },
  };
}

function softmaxCase(name: string, where: string, rows: number, D: number): KernelCase {
  return {
    family: 'softmax', name, where,
    flops: 5 * rows * D,
    bytes: F32 * 2 * rows * D,
    setup(be) {
      const x = filled(be, [rows, D], 16, -20, 20);
      return { run: () => ops.softmax(x), dispose: () => x.dispose() };
    },
  };
}

function crossNormCase(name: string, where: string, N: number, C: number, h: number, w: number, ch: number, cw: number): KernelCase {
  const nx = N * C * h * w, nc = C * ch * cw;
  return {
    family: 'cross_norm', name, where,
    // pool (1/elem of the control), stats of x and pooled control (3/elem each), normalise + add (4/elem).
    flops: nc + 3 * nx + 3 * C * h * w + 4 * nx,
    bytes: F32 * (nx + nc + nx),
    setup(be) {
      const x = filled(be, [N, C, h, w], 17), c = filled(be, [1, C, ch, cw], 18);
      return { run: () => crossNorm(x, c, { eps: 1e-12, order: 'pool_then_norm', scale: 1 }), dispose: () => [x, c].forEach((t) => t.dispose()) };
    },
  };
}

function gegluCase(name: string, where: string, rows: number, F: number): KernelCase {
  return {
    family: 'geglu', name, where,
    flops: 9 * rows * F,
    bytes: F32 * (rows * 2 * F + rows * F),
    setup(be) {
      const x = filled(be, [rows, 2 * F], 19);
      return { run: () => geglu(x), dispose: () => x.dispose() };
    },
  };
}

function addCase(name: string, where: string, shape: number[]): KernelCase {
  const n = shape.reduce((p, d) => p * d, 1);
  return {
    family: 'elementwise', name, where,
    flops: n,
    bytes: F32 * 3 * n,
    setup(be) {
      const a = filled(be, shape, 20), b = filled(be, shape, 21);
      return { run: () => ops.add(a, b), dispose: () => [a, b].forEach((t) => t.dispose()) };
    },
  };
}

function upsampleCase(name: string, where: string, N: number, C: number, H: number, W: number): KernelCase {
  const out = N * C * 4 * H * W;
  return {
    family: 'upsample', name, where,
    flops: 0,
    bytes: F32 * (N * C * H * W + out),
    setup(be) {
      const x = filled(be, [N, C, H, W], 22);
      return { run: () => ops.upsampleNearest(x, [2 * H, 2 * W]), dispose: () => x.dispose() };
    },
  };
}

/** SD1.5 at 512x512: latent 64x64, CFG batch 2, 77 text tokens; control modules at 512x512, batch 1. */
export function fullCases(): KernelCase[] {
  return [
    linearCase('attn q/k/v/out proj 320', 'down_blocks.0 attn1.to_q: [2*4096, 320] x [320, 320]', 8192, 320, 320),
    linearCase('ff proj 320 -> 2560', 'down_blocks.0 ff.net.0.proj: [2*4096, 320] x [320, 2560]', 8192, 320, 2560),
    linearCase('ff out 5120 -> 1280 @ 8x8', 'mid_block ff.net.2: [2*64, 5120] x [5120, 1280]', 128, 5120, 1280),
    linearCase('cross-attn to_k 768 -> 640', 'down_blocks.1 attn2.to_k: [2*77, 768] x [768, 640]', 154, 768, 640),
    convCase('3x3 320 -> 320 @ 64x64', 'down_blocks.0.resnets.*.conv1/conv2 (batch 2)', 2, 320, 64, 64, 320, 3),
    convCase('3x3 640 -> 640 @ 32x32', 'down_blocks.1.resnets.*.conv2 (batch 2)', 2, 640, 32, 32, 640, 3),
    convCase('3x3 1280 -> 1280 @ 8x8', 'mid_block.resnets.*.conv1 (batch 2)', 2, 1280, 8, 8, 1280, 3),
    convCase('3x3 2560 -> 1280 @ 16x16', 'up_blocks.1.resnets.0.conv1 (batch 2)', 2, 2560, 16, 16, 1280, 3),
    convCase('1x1 960 -> 320 @ 64x64', 'up_blocks.3.resnets.0.conv_shortcut (batch 2)', 2, 960, 64, 64, 320, 1),
    convCase('3x3 128 -> 128 @ 512x512', 'ControlNeXt release down_res.0.conv2 (control batch 1)', 1, 128, 512, 512, 128, 3),
    convCase('3x3 64 -> 64 @ 256x256', 'ControlNeXt light embedding.3 (control batch 1)', 1, 64, 256, 256, 64, 3),
    attentionCase('self-attn 4096 x 4096, 8 x 40', 'down_blocks.0 attn1 (batch 2)', 2, 8, 4096, 4096, 40),
    attentionCase('cross-attn 4096 x 77, 8 x 40', 'down_blocks.0 attn2 (batch 2)', 2, 8, 4096, 77, 40),
    attentionCase('self-attn 256 x 256, 8 x 160', 'down_blocks.2 attn1 @ 16x16 (batch 2)', 2, 8, 256, 256, 160),
    groupNormCase('GN32 + SiLU 320 @ 64x64', 'down_blocks.0 resnets norm1 (batch 2)', 2, 320, 64, 64, 32, true),
    groupNormCase('GN8 + SiLU 128 @ 512x512', 'ControlNeXt release down_res.0.norm2 (batch 1)', 1, 128, 512, 512, 8, true),
    layerNormCase('LN 320', 'transformer norm1 @ 64x64 (batch 2)', 8192, 320),
    softmaxCase('softmax 4096 x 77', 'attention scores as a separate pass would see them', 2 * 8 * 4096, 77),
    crossNormCase('cross-norm 1280 @ 8x8 <- 64x64', 'ControlNeXt release injection after the mid block', 2, 1280, 8, 8, 64, 64),
    crossNormCase('cross-norm 320 @ 32x32 <- 64x64', 'ControlNeXt light injection after down_blocks.0', 2, 320, 32, 32, 64, 64),
    gegluCase('GEGLU 2560 -> 1280', 'down_blocks.0 ff GEGLU (batch 2)', 8192, 1280),
    addCase('residual add 320 @ 64x64', 'resnet residual (batch 2)', [2, 320, 64, 64]),
    upsampleCase('nearest 2x 1280 @ 32x32', 'up_blocks.1.upsamplers (batch 2)', 2, 1280, 32, 32),
  ];
}

/** The same families at shapes a software adapter runs in about a second or less. */
export function smallCases(): KernelCase[] {
  return [
    linearCase('attn proj 320 @ 16x16', '[2*256, 320] x [320, 320]', 512, 320, 320),
    linearCase('ff proj 320 -> 2560 @ 8x8', '[2*64, 320] x [320, 2560]', 128, 320, 2560),
    linearCase('cross-attn to_k 768 -> 320', '[2*77, 768] x [768, 320]', 154, 768, 320),
    convCase('3x3 320 -> 320 @ 16x16', 'batch 2', 2, 320, 16, 16, 320, 3),
    convCase('3x3 1280 -> 1280 @ 4x4', 'batch 2', 2, 1280, 4, 4, 1280, 3),
    convCase('1x1 960 -> 320 @ 16x16', 'batch 2', 2, 960, 16, 16, 320, 1),
    convCase('3x3 128 -> 128 @ 64x64', 'control module at 64 px, batch 1', 1, 128, 64, 64, 128, 3),
    attentionCase('self-attn 256 x 256, 8 x 40', 'batch 2', 2, 8, 256, 256, 40),
    attentionCase('cross-attn 256 x 77, 8 x 40', 'batch 2', 2, 8, 256, 77, 40),
    groupNormCase('GN32 + SiLU 320 @ 16x16', 'batch 2', 2, 320, 16, 16, 32, true),
    layerNormCase('LN 320', '[2*256, 320]', 512, 320),
    softmaxCase('softmax 256 x 77', '2*8*256 rows', 2 * 8 * 256, 77),
    crossNormCase('cross-norm 1280 @ 2x2 <- 8x8', 'release injection at 16 px', 2, 1280, 2, 2, 8, 8),
    gegluCase('GEGLU 2560 -> 1280 @ 8x8', '[2*64, 2560]', 128, 1280),
    addCase('residual add 320 @ 16x16', 'batch 2', [2, 320, 16, 16]),
    upsampleCase('nearest 2x 1280 @ 8x8', 'batch 2', 2, 1280, 8, 8),
  ];
}
