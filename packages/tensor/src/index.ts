export * from './dtype.js';
export * from './shape.js';
export type * from './backend.js';
export { Tensor } from './tensor.js';
export { scope, scopeAsync, keep } from './scope.js';
export * as ops from './ops.js';
export { CpuBackend, stridedOffsets, poolBins, applyUnary } from './cpu/cpu_backend.js';
export { erf } from './cpu/erf.js';
export * from './safetensors.js';
export * from './safetensors_writer.js';
export * from './trace.js';
export * from './weights.js';
// Float64 CPU references of backward ops (autograd issue; the lead wires them into op definitions).
export type { HostArray } from './cpu/host_array.js';
export {
  attentionDims, attentionForwardF64, attentionForwardWithLse, attentionBackwardF64, attentionBackward,
  type AttentionReferenceOptions, type AttentionDims, type AttentionGrads,
} from './cpu/attention_backward.js';
export {
  crossNormForwardF64, crossNormForward, crossNormBackwardF64, crossNormBackward,
  type CrossNormReferenceParams, type CrossNormGrads,
} from './cpu/cross_norm_backward.js';
export { gegluForwardF64, gegluBackwardF64, gegluBackward, geluErfDerivative } from './cpu/geglu_backward.js';
