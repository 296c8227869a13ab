// FLOPs COUNTED from the real model code, at any size and without computing anything: a shape-only
// Backend. Every op returns a tensor of the right shape over a storage that holds no data (read() gives
// zeros), and the matmul-class ops add their FLOPs to a ledger. Running a model forward on it walks the
// exact op sequence the CPU / WebGPU backends run (the same layers, chunking, injection paths), so the
// count follows the code instead of a separate cost model. Conventions as bench/src/flops.ts:
//   matmul     2 * B * M * N * K
//   conv2d     2 * N * O * Ho * Wo * (C/groups) * kh * kw
//   attention  2 * B * H * Lq * Lk * (D + Dv)
// Norms, softmax, elementwise and layout ops are counted as 'other' by output elements (a lower bound,
// for reference only). Memory: live and peak bytes of the (virtual) storages, i.e. what the run would hold.
// Build models with a ShapeRecorder (no weight data), run them on this backend, read flops().
//
// Integration note: when ops become definitions with a check() that gives output shapes, this file
// reduces to "call check(), count by op name".

import { Tensor, type Backend, type Conv2dOptions, type CrossNormOptions, type MatmulOptions, type MemoryStats, type Storage } from '@cnx/tensor';
import type { DType, RawArray } from '@cnx/tensor';

const BYTES: Record<string, number> = { f32: 4, f16: 2, bf16: 2, i32: 4 };

export interface FlopCounts {
  matmul: number;
  conv: number;
  attention: number;
  other: number;
}

export class CountingBackend implements Backend {
  readonly name = 'cpu' as const;
  readonly description = 'shape-only FLOP counter (no computation)';
  private counts: FlopCounts = { matmul: 0, conv: 0, attention: 0, other: 0 };
  private live = 0;
  private peak = 0;
  /** Largest single tensor, in bytes, and its shape. */
  largest = { bytes: 0, shape: [] as number[] };

  /** Matmul-class FLOPs (matmul + conv + attention) since the last reset. */
  flops(): number { return this.counts.matmul + this.counts.conv + this.counts.attention; }
  detail(): FlopCounts { return { ...this.counts }; }
  resetCounts(): void { this.counts = { matmul: 0, conv: 0, attention: 0, other: 0 }; }

  private make(shape: readonly number[], dtype: DType = 'f32'): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    const storage: Storage = { refs: 0, byteLength: n * (BYTES[dtype] ?? 4) };
    this.live += storage.byteLength;
    this.peak = Math.max(this.peak, this.live);
    if (storage.byteLength > this.largest.bytes) this.largest = { bytes: storage.byteLength, shape: [...shape] };
    return new Tensor(this, storage, dtype, shape);
  }

  private other(shape: readonly number[], dtype: DType = 'f32'): Tensor {
    this.counts.other += shape.reduce((a, b) => a * b, 1);
    return this.make(shape, dtype);
  }

  zeros(shape: readonly number[], dtype: DType = 'f32'): Tensor { return this.make(shape, dtype); }
  fromRaw(_data: RawArray, shape: readonly number[], dtype: DType = 'f32'): Tensor { return this.make(shape, dtype); }
  async read(x: Tensor): Promise<Float32Array> { return new Float32Array(x.size); }
  free(storage: Storage): void { this.live -= storage.byteLength; }
  memory(): MemoryStats { return { liveBytes: this.live, peakBytes: this.peak, pooledBytes: 0 }; }
  resetPeak(): void { this.peak = this.live; }
  async sync(): Promise<void> {}
  destroy(): void {}

  contiguous(x: Tensor): Tensor { return this.make(x.shape, x.dtype); }
  cast(x: Tensor, dtype: DType): Tensor { return this.make(x.shape, dtype); }
  concat(xs: readonly Tensor[], axis: number): Tensor {
    const shape = [...xs[0]!.shape];
    shape[axis] = xs.reduce((n, x) => n + x.shape[axis]!, 0);
    return this.make(shape, xs[0]!.dtype);
  }
  unary(_op: string, x: Tensor): Tensor { return this.other(x.shape); }
  affine(x: Tensor): Tensor { return this.other(x.shape); }
  binary(_op: string, a: Tensor): Tensor { return this.other(a.shape); }
  reduce(_op: string, x: Tensor, axes: readonly number[]): Tensor {
    this.counts.other += x.size;
    return this.make(x.shape.map((d, i) => (axes.includes(i) ? 1 : d)));
  }
  softmax(x: Tensor): Tensor { return this.other(x.shape); }

  matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
    const [Ba, r, c] = a.shape as [number, number, number];
    const [Bb, r2, c2] = b.shape as [number, number, number];
    const [M, K] = opts.transA ? [c, r] : [r, c];
    const N = opts.transB ? r2 : c2;
    const B = Math.max(Ba, Bb);
    this.counts.matmul += 2 * B * M * N * K;
    return this.make([B, M, N]);
  }

  conv2d(x: Tensor, w: Tensor, _bias: Tensor | undefined, o: Conv2dOptions): Tensor {
    const [N, , H, W] = x.shape as [number, number, number, number];
    const [O, Cg, kh, kw] = w.shape as [number, number, number, number];
    const Ho = Math.floor((H + o.padding[0] + o.padding[1] - kh) / o.stride[0]) + 1;
    const Wo = Math.floor((W + o.padding[2] + o.padding[3] - kw) / o.stride[1]) + 1;
    this.counts.conv += 2 * N * O * Ho * Wo * Cg * kh * kw;
    return this.make([N, O, Ho, Wo]);
  }

  attention(q: Tensor, k: Tensor, v: Tensor): Tensor {
    const [B, Lq, H, D] = q.shape as [number, number, number, number];
    const Lk = k.shape[1]!, Dv = v.shape[3]!;
    this.counts.attention += 2 * B * H * Lq * Lk * (D + Dv);
    return this.make([B, Lq, H, Dv]);
  }

  groupNorm(x: Tensor): Tensor { return this.other(x.shape); }
  layerNorm(x: Tensor): Tensor { return this.other(x.shape); }
  crossNorm(x: Tensor, _c: Tensor, _o: CrossNormOptions): Tensor { return this.other(x.shape); }
  upsampleNearest(x: Tensor, size: readonly [number, number]): Tensor { return this.make([x.shape[0]!, x.shape[1]!, ...size]); }
  adaptiveAvgPool2d(x: Tensor, size: readonly [number, number]): Tensor { return this.other([x.shape[0]!, x.shape[1]!, ...size]); }
  timestepEmbedding(t: Tensor, dim: number): Tensor { return this.make([t.shape[0]!, dim]); }
  geglu(h: Tensor): Tensor { return this.other([...h.shape.slice(0, -1), h.shape[h.rank - 1]! / 2]); }
}
