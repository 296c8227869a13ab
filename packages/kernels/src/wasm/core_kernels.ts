// The fast CPU backend's implementations of the core ops (@cnx/tensor core_ops/), as a table typed by
// CoreOpParams like the WebGPU one (webgpu/core_kernels.ts), except that it is partial on purpose: a core
// op without an entry here (reduce, adaptive_avg_pool2d) runs its definition's float64 CPU reference on
// the tensors in wasm memory (WasmBackend.reference). Entries adapt (inputs, params) to WasmBackend's
// kernel entry points (wasm_backend.ts -> wasm_ops.ts -> the WebAssembly kernels).

import type { CoreOpName, CoreOpParams, OpKernel, Tensor } from '@cnx/tensor';
import type { WasmBackend } from './wasm_backend.js';

export const wasmCoreKernels: { readonly [K in CoreOpName]?: OpKernel<CoreOpParams[K], WasmBackend> } = {
  unary: (be, [x], p) => [be.unary(p.op, x!)],
  affine: (be, [x], p) => [be.affine(x!, p.mul, p.add)],
  binary: (be, [a, b], p) => [be.binary(p.op, a!, b!)],
  softmax: (be, [x]) => [be.softmax(x!)],
  matmul: (be, [a, b, bias, residual], p) => [be.matmul(a!, b!, bias, residual, p)],
  conv2d: (be, [x, w, bias, residual], p) => [be.conv2d(x!, w!, bias, residual, p)],
  attention: (be, [q, k, v], p) => be.attention(q!, k!, v!, p),
  group_norm: (be, [x, w, b], p) => be.groupNorm(x!, w, b, p),
  layer_norm: (be, [x, w, b], p) => be.layerNorm(x!, w, b, p),
  upsample_nearest: (be, [x], p) => [be.upsampleNearest(x!, p.size)],
  concat: (be, xs, p) => [be.concat(xs as Tensor[], p.axis)],
};
