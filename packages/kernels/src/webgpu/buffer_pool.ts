// Size-class pool of GPU storage buffers. Sizes are rounded up to classes of 1/4 steps between powers of
// two (1.00, 1.25, 1.50, 1.75 x 2^k; at most 25 % waste), so that a sampling loop that allocates the same
// activation shapes every step reuses the same buffers and memory stays flat (DESIGN.md "Tensor core").
//
// Reuse is safe without waiting for the GPU: every command that touches pooled buffers goes through the
// one queue, in order (the backend flushes its pending commands before any queue.writeBuffer into a
// recycled buffer), so a later user of a recycled buffer is ordered after the earlier one.

const MIN_CLASS = 256;

export interface PoolStats {
  /** Bytes of buffers handed out and not yet released. */
  liveBytes: number;
  peakBytes: number;
  /** Bytes of released buffers kept for reuse. */
  pooledBytes: number;
}

export interface BufferLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  /** Most bytes kept in the free lists; a release past it is not pooled (the caller destroys the buffer). */
  maxPooledBytes?: number;
}

/** Default cap of pooled (free) bytes: enough for the working set of an SD1.5 step at 512x512. */
export const DEFAULT_MAX_POOLED_BYTES = 4 * 2 ** 30;

/** The size class of a request in bytes: a multiple of 4, >= MIN_CLASS, quarter steps between powers of two. */
export function sizeClass(bytes: number): number {
  if (bytes <= MIN_CLASS) return MIN_CLASS;
  const p = 2 ** Math.floor(Math.log2(bytes));
  const step = p / 4;
  return Math.ceil(bytes / step) * step;
}

export class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  private stats: PoolStats = { liveBytes: 0, peakBytes: 0, pooledBytes: 0 };

  constructor(
    private readonly device: GPUDevice,
    private readonly limits: BufferLimits,
    /** Called before the pool destroys a buffer (the backend drops bind groups that use it). */
    private readonly onDestroy: (b: GPUBuffer) => void = () => {},
    private readonly usage: number = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  ) {}

  /** A buffer of at least `bytes` bytes (rounded to a multiple of 4). */
  acquire(bytes: number, what = 'tensor'): GPUBuffer {
    const need = Math.max(4, Math.ceil(bytes / 4) * 4);
    const { maxBufferSize, maxStorageBufferBindingSize } = this.limits;
    if (need > maxStorageBufferBindingSize || need > maxBufferSize) {
      const [name, limit] = need > maxStorageBufferBindingSize
        ? ['maxStorageBufferBindingSize', maxStorageBufferBindingSize] : ['maxBufferSize', maxBufferSize];
      throw new Error(`webgpu: ${what} needs a buffer of ${need} bytes, over the device's ${name} = ${limit} bytes`);
    }
    // The class may round past a limit that the request itself fits under: then allocate the exact size.
    let size = sizeClass(need);
    if (size > maxStorageBufferBindingSize || size > maxBufferSize) size = need;
    const list = this.free.get(size);
    const reused = list?.pop();
    if (reused) this.stats.pooledBytes -= size;
    const buffer = reused ?? this.device.createBuffer({ size, usage: this.usage, label: what });
    this.stats.liveBytes += size;
    this.stats.peakBytes = Math.max(this.stats.peakBytes, this.stats.liveBytes);
    return buffer;
  }

  /**
   * Return a buffer from acquire() for reuse. Returns false when the pool is full: the buffer was not
   * kept and the caller must destroy it (after submitting any recorded commands that use it).
   */
  release(buffer: GPUBuffer): boolean {
    const size = buffer.size;
    this.stats.liveBytes -= size;
    if (this.stats.pooledBytes + size > (this.limits.maxPooledBytes ?? DEFAULT_MAX_POOLED_BYTES)) return false;
    this.stats.pooledBytes += size;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buffer);
    return true;
  }

  /** Destroy every pooled (released) buffer. Callers must have submitted commands that use them. */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) { this.onDestroy(b); b.destroy(); }
    this.free.clear();
    this.stats.pooledBytes = 0;
  }

  memory(): PoolStats {
    return { ...this.stats };
  }

  resetPeak(): void {
    this.stats.peakBytes = this.stats.liveBytes;
  }
}
