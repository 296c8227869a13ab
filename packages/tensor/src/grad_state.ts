// The global state of autograd (autograd.ts) that the hot paths read: runOp (op_definition.ts) and the
// view methods of Tensor check ONE boolean, `gradState.recording`, before doing anything autograd-related.
// It is true only while gradients are enabled (the default; noGrad() turns them off) AND at least one live
// tensor requires a gradient, so inference code that never sets requiresGrad pays a single field read per
// op, as before autograd existed. This file imports nothing, so tensor.ts and op_definition.ts can read it
// without an import cycle through the tape.

export interface GradState {
  /** Gradients enabled (torch.is_grad_enabled()); noGrad / enableGrad / setGradEnabled change it. */
  enabled: boolean;
  /** Live (not disposed) tensors with requiresGrad = true. */
  liveRequiringGrad: number;
  /** enabled && liveRequiringGrad > 0: the one check of the hot paths. */
  recording: boolean;
  /** > 0 while checkpoint() runs its forward without recording (see autograd.ts checkpoint). */
  probing: number;
  /** Set by the recorders while probing when an op saw an input that requires a gradient. */
  probeSawGrad: boolean;
}

export const gradState: GradState = { enabled: true, liveRequiringGrad: 0, recording: false, probing: 0, probeSawGrad: false };

function update(): void {
  gradState.recording = gradState.enabled && gradState.liveRequiringGrad > 0;
}

/** Called by Tensor when a live tensor starts (+1) or stops (-1) requiring a gradient. */
export function countRequiresGrad(delta: 1 | -1): void {
  gradState.liveRequiringGrad += delta;
  update();
}

/** Turn gradient recording on or off; returns the previous setting (torch.set_grad_enabled). */
export function setGradEnabled(on: boolean): boolean {
  const prev = gradState.enabled;
  gradState.enabled = on;
  update();
  return prev;
}

/** Whether ops are recorded for backward when their inputs require gradients. */
export function isGradEnabled(): boolean {
  return gradState.enabled;
}
