export * from './dtype.js';
export * from './shape.js';
export type * from './backend.js';
export { Tensor } from './tensor.js';
export { scope, scopeAsync, keep, persist, untracked } from './scope.js';
export {
  backward, checkpoint, enableGrad, isGradEnabled, noGrad, recordFunction, setGradEnabled, zeroGrad,
  type GradFn, type RecordFunctionOptions, type TapeNode,
} from './autograd.js';
export * from './op_definition.js';
export * from './core_ops/index.js';
export * from './grad_ops/index.js';
export * as ops from './ops.js';
export { CpuBackend, stridedOffsets, type CpuBackendOptions, type CpuStorage } from './cpu/cpu_backend.js';
export * from './weight_dtype.js';
export { erf } from './cpu/erf.js';
export * from './safetensors.js';
export * from './safetensors_writer.js';
export * from './trace.js';
export * from './weights.js';
export { nodeFs, nodePath } from './node_fs.js';
export * from './model_folder_files.js';
// Float64 CPU references of the backward ops, saved-statistics forwards and the optimizer (autograd issue).
export * from './cpu/norm.js';
export * from './cpu/norm_backward.js';
export * from './cpu/conv2d_backward.js';
export * from './cpu/elementwise_backward.js';
export * from './cpu/resample_backward.js';
export * from './cpu/adamw.js';
// Float64 CPU references of backward ops (autograd issue; the lead wires them into op definitions).
export type { HostArray } from './cpu/host_array.js';
export {
  attentionDims, attentionForwardF64, attentionForwardWithLse, attentionBackwardF64, attentionBackward,
  type AttentionReferenceOptions, type AttentionDims, type AttentionGrads,
} from './cpu/attention_backward.js';
// The optimizer (AdamW with parameter groups, clip_grad_norm_, state save/load) on the in-place core ops.
export * from './optim/adamw.js';
