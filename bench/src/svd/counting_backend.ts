// FLOPs COUNTED from the real model code, at any size and without computing anything: a shape-only
// Backend. Every op returns a tensor of the right shape over a storage that holds no data (read() gives
// zeros), and the matmul-class ops add their FLOPs to a ledger. Running a model forward on it walks the
// exact op sequence the CPU / WebGPU backends run (the same layers, chunking, injection paths), so the
// count follows the code instead of a separate cost model. Conventions as bench/src/flops.ts:
//   matmul     2 * B * M * N * K
//   conv2d     2 * N * O * Ho * Wo * (C/groups) * kh * kw
//   attention  2 * B * H * Lq * Lk * (D + Dv)
// Every other op (norms, softmax, elementwise, extension ops) is counted as 'other' by output elements (for
// reference only). Memory: live and peak bytes of the (virtual) storages, i.e. what the run would hold.
// Ops are definitions (@cnx/tensor op_definition.ts): runOp has checked the inputs and computed the output
// shapes before it calls run(), so this backend only counts by op name and allocates nothing real.
// Build models with a ShapeRecorder (no weight data), run them on this backend, read flops().

import { Tensor, type Backend, type DType, type MemoryStats, type OpDefinition, type RawArray, type Storage, type TensorMeta } from '@cnx/tensor';

const BYTES: Record<string, number> = { f32: 4, f16: 2, bf16: 2, i32: 4 };

export interface FlopCounts {
  matmul: number;
  conv: number;
  attention: number;
  other: number;
}

const dims = (t: Tensor | undefined) => (t ? t.shape : []) as readonly number[];

export class CountingBackend implements Backend {
  readonly name = 'count';
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

  /** The definition has checked the inputs and given the output metas: count, and return empty outputs. */
  run<P>(op: OpDefinition<P>, inputs: readonly (Tensor | undefined)[], params: P, outputs: readonly TensorMeta[]): Tensor[] {
    const p = params as Record<string, unknown>;
    switch (op.name) {
      case 'matmul': {
        const [Ba, r0, c0] = dims(inputs[0]) as [number, number, number];
        const [Bb, r1, c1] = dims(inputs[1]) as [number, number, number];
        const M = p['transA'] ? c0 : r0, K = p['transA'] ? r0 : c0, N = p['transB'] ? r1 : c1;
        this.counts.matmul += 2 * Math.max(Ba, Bb) * M * N * K;
        break;
      }
      case 'conv2d': {
        const [O, Cg, kh, kw] = dims(inputs[1]) as [number, number, number, number];
        const [N, , Ho, Wo] = outputs[0]!.shape as [number, number, number, number];
        this.counts.conv += 2 * N * O * Ho * Wo * Cg * kh * kw;
        break;
      }
      case 'attention': {
        const [B, Lq, H, D] = dims(inputs[0]) as [number, number, number, number];
        const Lk = dims(inputs[1])[1]!, Dv = dims(inputs[2])[3]!;
        this.counts.attention += 2 * B * H * Lq * Lk * (D + Dv);
        break;
      }
      default:
        this.counts.other += outputs.reduce((n, o) => n + o.shape.reduce((a, b) => a * b, 1), 0);
    }
    return outputs.map((o) => this.make(o.shape, o.dtype));
  }
}
