// Gradient checkpointing for the UNet family (diffusers' enable_gradient_checkpointing: every resnet and
// attention of the down, mid and up blocks runs under torch.utils.checkpoint). Here: the forward of every
// ResnetBlock2D and Transformer2DModel found in a module tree is wrapped with @cnx/tensor checkpoint(),
// so a training step keeps only the block inputs between forward and backward and recomputes each block's
// activations during its own backward (what lets a UNet training step at 64x64 latents fit in memory).
// It only changes anything while gradients are recorded; inference and traced runs (golden intermediates)
// take the plain forward. Wrapping is per instance (an own `forward` property), undone by the returned
// function; no model file changes.

import { checkpoint, type Tensor, type Trace } from '@cnx/tensor';
import { Module } from './module.js';
import { ResnetBlock2D } from './resnet.js';
import { Transformer2DModel } from './transformer_2d.js';

type Forward = (x: Tensor, second?: Tensor, trace?: Trace) => Tensor;

function wrap(block: ResnetBlock2D | Transformer2DModel): () => void {
  const original = block.forward as Forward;
  const own = Object.prototype.hasOwnProperty.call(block, 'forward');
  const wrapped: Forward = (x, second, trace) => {
    if (trace) return original.call(block, x, second, trace);
    return checkpoint((a: Tensor, b?: Tensor) => original.call(block, a, b), [x, second]);
  };
  (block as { forward: Forward }).forward = wrapped;
  return () => {
    if (own) (block as { forward: Forward }).forward = original;
    else delete (block as { forward?: Forward }).forward;
  };
}

function visit(value: unknown, out: (ResnetBlock2D | Transformer2DModel)[], seen: Set<unknown>): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (value instanceof ResnetBlock2D || value instanceof Transformer2DModel) {
    out.push(value);
    return; // a block is checkpointed as a whole (nothing inside it is wrapped again)
  }
  if (Array.isArray(value)) value.forEach((v) => visit(v, out, seen));
  else if (value instanceof Module) Object.values(value).forEach((v) => visit(v, out, seen));
}

/**
 * Checkpoint every ResnetBlock2D and Transformer2DModel under `model` (a UNet, a control module, any
 * Module). Returns a function that restores the plain forwards.
 */
export function enableGradientCheckpointing(model: Module): () => void {
  const blocks: (ResnetBlock2D | Transformer2DModel)[] = [];
  visit(model, blocks, new Set());
  const undo = blocks.map(wrap);
  return () => undo.forEach((u) => u());
}
