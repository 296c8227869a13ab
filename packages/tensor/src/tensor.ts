// Tensor = layout (shape, element strides, offset) + dtype + reference-counted storage + backend.
// Movement ops (reshape, permute, slice, expand) make new views over the same storage; contiguous()
// materialises. Every Tensor holds one reference on its storage until dispose().
//
// Autograd (autograd.ts): a tensor that requires a gradient and was produced by a recorded op or view
// carries `gradFn`, its place on the tape; the view methods record themselves while gradients are
// recorded (one boolean check otherwise). dispose() drops the tensor's reference on its tape node, so a
// graph nobody can run backward through any more is freed without a backward().

import type { Backend, Storage } from './backend.js';
import type { DType } from './dtype.js';
import { recordView, releaseGradFn, type GradFn } from './autograd.js';
import { countRequiresGrad, gradState } from './grad_state.js';
import { contiguousStrides, formatShape, isContiguousLayout, normAxis, numel, type Shape } from './shape.js';
import { trackTensor } from './scope.js';
import { padSlice, sumToShape } from './view_backward.js';

export class Tensor {
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  private disposed = false;
  private requires = false;
  /** The accumulated gradient of backward() calls since it was last cleared (owned by this tensor; same shape, f32). */
  grad: Tensor | undefined = undefined;
  /**
   * Autograd: the tape node that produced this tensor and which of its outputs it is (undefined for
   * leaves and for tensors made without recording). Set by the tape only.
   */
  gradFn: GradFn | undefined = undefined;

  constructor(
    readonly backend: Backend,
    readonly storage: Storage,
    readonly dtype: DType,
    shape: Shape,
    strides?: readonly number[],
    readonly offset = 0,
  ) {
    this.shape = Object.freeze([...shape]);
    this.strides = Object.freeze(strides ? [...strides] : contiguousStrides(shape));
    storage.refs++;
    trackTensor(this);
  }

  get rank(): number { return this.shape.length; }
  get size(): number { return numel(this.shape); }
  get isDisposed(): boolean { return this.disposed; }
  get isContiguous(): boolean { return this.offset === 0 && isContiguousLayout(this.shape, this.strides); }

  /**
   * A parameter (or input) that gradients are taken for: ops recorded while gradients are enabled
   * (autograd.ts) track it, and backward() accumulates into `.grad` when it is a leaf (no gradFn).
   * Outputs of recorded ops require gradients too; only leaves may be switched off.
   */
  get requiresGrad(): boolean { return this.requires; }
  set requiresGrad(on: boolean) {
    if (on === this.requires) return;
    if (!on && this.gradFn) throw new Error(`requiresGrad: ${this.toString()} is the output of a recorded op; only leaves can stop requiring a gradient (use detach())`);
    this.requires = on;
    if (!this.disposed) countRequiresGrad(on ? 1 : -1);
  }

  /** Drop this view's reference (and its `.grad`); the storage is freed with its last view. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.requires) countRequiresGrad(-1);
    if (this.gradFn) releaseGradFn(this.gradFn);
    if (this.grad) {
      this.grad.dispose();
      this.grad = undefined;
    }
    if (--this.storage.refs === 0) this.backend.free(this.storage);
  }

  /**
   * A new view of the same elements that is not part of any autograd graph and does not require a
   * gradient (torch detach): what flows through it is a constant for backward.
   */
  detach(): Tensor {
    return this.view(this.shape, this.strides, this.offset);
  }

  private assertLive(): void {
    if (this.disposed) throw new Error(`tensor ${formatShape(this.shape)} used after dispose()`);
  }

  private view(shape: Shape, strides: readonly number[], offset: number): Tensor {
    this.assertLive();
    return new Tensor(this.backend, this.storage, this.dtype, shape, strides, offset);
  }

  /** A row-major copy, or a new view of the same storage when already contiguous. */
  contiguous(): Tensor {
    this.assertLive();
    const r = this.isContiguous ? this.view(this.shape, this.strides, 0) : this.backend.contiguous(this);
    if (gradState.recording && this.requires) recordView('contiguous', this, r, (g) => g);
    return r;
  }

  /** Same elements, new shape (one dim may be -1). Copies only when the layout requires it. */
  reshape(shape: readonly number[]): Tensor {
    const resolved = resolveReshape(this.shape, shape);
    let r: Tensor;
    if (this.isContiguous) r = this.view(resolved, contiguousStrides(resolved), 0);
    else {
      const c = this.backend.contiguous(this);
      r = c.view(resolved, contiguousStrides(resolved), 0);
      c.dispose();
    }
    if (gradState.recording && this.requires) {
      const from = this.shape;
      recordView('reshape', this, r, (g) => g.reshape(from));
    }
    return r;
  }

  permute(axes: readonly number[]): Tensor {
    if (axes.length !== this.rank || new Set(axes.map((a) => normAxis(a, this.rank))).size !== this.rank) {
      throw new Error(`permute: axes ${formatShape(axes)} are not a permutation of rank ${this.rank}`);
    }
    const ax = axes.map((a) => normAxis(a, this.rank));
    const r = this.view(ax.map((a) => this.shape[a]!), ax.map((a) => this.strides[a]!), this.offset);
    if (gradState.recording && this.requires) {
      const inverse = new Array<number>(ax.length);
      ax.forEach((a, i) => { inverse[a] = i; });
      recordView('permute', this, r, (g) => g.permute(inverse));
    }
    return r;
  }

  transpose(a: number, b: number): Tensor {
    const axes = this.shape.map((_, i) => i);
    const i = normAxis(a, this.rank), j = normAxis(b, this.rank);
    [axes[i], axes[j]] = [axes[j]!, axes[i]!];
    return this.permute(axes);
  }

  /** Elements start <= i < end along `axis` (no copy). */
  slice(axis: number, start: number, end: number): Tensor {
    const a = normAxis(axis, this.rank);
    const n = this.shape[a]!;
    if (start < 0 || end > n || start > end) {
      throw new Error(`slice: [${start}, ${end}) out of range for dim ${a} of size ${n} in ${formatShape(this.shape)}`);
    }
    const shape = [...this.shape];
    shape[a] = end - start;
    const r = this.view(shape, this.strides, this.offset + start * this.strides[a]!);
    if (gradState.recording && this.requires) {
      const full = this.shape;
      recordView('slice', this, r, (g) => padSlice(g, full, a, start));
    }
    return r;
  }

  /** Split into `n` equal views along `axis` (torch.chunk with equal parts). */
  chunk(n: number, axis: number): Tensor[] {
    const a = normAxis(axis, this.rank);
    const size = this.shape[a]!;
    if (size % n !== 0) throw new Error(`chunk: dim ${a} of size ${size} does not split into ${n} equal parts`);
    const step = size / n;
    return Array.from({ length: n }, (_, i) => this.slice(a, i * step, (i + 1) * step));
  }

  /** Broadcast size-1 dims (and new leading dims) to `shape` with stride 0 (no copy). */
  expand(shape: readonly number[]): Tensor {
    if (shape.length < this.rank) throw new Error(`expand: ${formatShape(this.shape)} cannot expand to ${formatShape(shape)}`);
    const lead = shape.length - this.rank;
    const strides = shape.map((d, i) => {
      if (i < lead) return 0;
      const own = this.shape[i - lead]!;
      if (own === d) return this.strides[i - lead]!;
      if (own === 1) return 0;
      throw new Error(`expand: ${formatShape(this.shape)} cannot expand to ${formatShape(shape)}`);
    });
    const r = this.view(shape, strides, this.offset);
    if (gradState.recording && this.requires) {
      const from = this.shape;
      recordView('expand', this, r, (g) => sumToShape(g, from));
    }
    return r;
  }

  unsqueeze(axis: number): Tensor {
    const a = axis < 0 ? axis + this.rank + 1 : axis;
    const shape = [...this.shape], strides = [...this.strides];
    shape.splice(a, 0, 1);
    strides.splice(a, 0, 0);
    const r = this.view(shape, strides, this.offset);
    if (gradState.recording && this.requires) {
      const from = this.shape;
      recordView('unsqueeze', this, r, (g) => g.reshape(from));
    }
    return r;
  }

  /** Values as f32, row-major. */
  data(): Promise<Float32Array> {
    this.assertLive();
    return this.backend.read(this);
  }

  toString(): string {
    return `Tensor(${formatShape(this.shape)}, ${this.dtype}, ${this.backend.name})`;
  }
}

function resolveReshape(from: Shape, to: readonly number[]): number[] {
  const n = numel(from);
  const inferred = to.indexOf(-1);
  if (inferred !== to.lastIndexOf(-1)) throw new Error(`reshape: more than one -1 in ${formatShape(to)}`);
  const known = to.reduce((p, d) => (d === -1 ? p : p * d), 1);
  const out = [...to];
  if (inferred >= 0) {
    if (known === 0 || n % known !== 0) throw new Error(`reshape: cannot reshape ${formatShape(from)} to ${formatShape(to)}`);
    out[inferred] = n / known;
  }
  if (numel(out) !== n) throw new Error(`reshape: cannot reshape ${formatShape(from)} (${n} elements) to ${formatShape(to)}`);
  return out;
}
