// Tensor = layout (shape, element strides, offset) + dtype + reference-counted storage + backend.
// Movement ops (reshape, permute, slice, expand) make new views over the same storage; contiguous()
// materialises. Every Tensor holds one reference on its storage until dispose().

import type { Backend, Storage } from './backend.js';
import type { DType } from './dtype.js';
import { contiguousStrides, formatShape, isContiguousLayout, normAxis, numel, type Shape } from './shape.js';
import { trackTensor } from './scope.js';

export class Tensor {
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  private disposed = false;
  /** A parameter (or input) that gradients are taken for (autograd). */
  requiresGrad = false;
  /** The accumulated gradient of the last backward() (owned by this tensor; same shape, f32). */
  grad: Tensor | undefined = undefined;

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

  /** Drop this view's reference; the storage is freed with its last view. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (--this.storage.refs === 0) this.backend.free(this.storage);
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
    return this.isContiguous ? this.view(this.shape, this.strides, 0) : this.backend.contiguous(this);
  }

  /** Same elements, new shape (one dim may be -1). Copies only when the layout requires it. */
  reshape(shape: readonly number[]): Tensor {
    const resolved = resolveReshape(this.shape, shape);
    if (this.isContiguous) return this.view(resolved, contiguousStrides(resolved), 0);
    const c = this.backend.contiguous(this);
    const r = c.reshape(resolved);
    c.dispose();
    return r;
  }

  permute(axes: readonly number[]): Tensor {
    if (axes.length !== this.rank || new Set(axes.map((a) => normAxis(a, this.rank))).size !== this.rank) {
      throw new Error(`permute: axes ${formatShape(axes)} are not a permutation of rank ${this.rank}`);
    }
    const ax = axes.map((a) => normAxis(a, this.rank));
    return this.view(ax.map((a) => this.shape[a]!), ax.map((a) => this.strides[a]!), this.offset);
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
    return this.view(shape, this.strides, this.offset + start * this.strides[a]!);
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
    return this.view(shape, strides, this.offset);
  }

  unsqueeze(axis: number): Tensor {
    const a = axis < 0 ? axis + this.rank + 1 : axis;
    const shape = [...this.shape], strides = [...this.strides];
    shape.splice(a, 0, 1);
    strides.splice(a, 0, 0);
    return this.view(shape, strides, this.offset);
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
