// A best-fit allocator over the WebAssembly memory that the fast CPU kernels address: tensors live
// in it (so kernels read weights and activations in place, with no copy per op) and kernels take
// their scratch (packed panels, GEMM tiles) from it for the duration of one op.
//
// Blocks are 64-byte aligned (a cache line; v128 loads never straddle one). Free blocks are kept in
// an address-sorted list and coalesced with their neighbours; allocation takes the smallest free block
// that fits, else extends the top, growing the memory by whole 64 KiB pages up to its maximum. The
// list stays short in practice (a UNet step keeps a few hundred blocks live), so linear scans are fine.

export const HEAP_ALIGN = 64;
const PAGE = 65536;

interface Block { ptr: number; size: number }

export class WasmHeap {
  /** Address-sorted free blocks below `top`. */
  private free: Block[] = [];
  private top: number;
  private live = 0;

  /**
   * @param memory the module's memory; grown on demand
   * @param base first byte the heap may use (below it: the pool's control block and argument slots)
   * @param maxBytes the memory's maximum size in bytes
   */
  constructor(private readonly memory: WebAssembly.Memory, base: number, private readonly maxBytes: number) {
    this.top = align(base);
  }

  get liveBytes(): number { return this.live; }
  /** Bytes from the heap base to the highest block ever handed out that is still reserved. */
  get topBytes(): number { return this.top; }
  get capacityBytes(): number { return this.maxBytes; }

  /** Bytes that `alloc` could still hand out without exceeding the maximum (ignoring fragmentation). */
  available(): number {
    return this.maxBytes - this.top + this.free.reduce((s, b) => s + b.size, 0);
  }

  /** A 64-byte aligned block of at least `bytes` bytes, or -1 when the memory cannot hold it. */
  tryAlloc(bytes: number): number {
    const size = blockSize(bytes);
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const b = this.free[i]!;
      if (b.size >= size && (best < 0 || b.size < this.free[best]!.size)) {
        best = i;
        if (b.size === size) break;
      }
    }
    if (best >= 0) {
      const b = this.free[best]!;
      const ptr = b.ptr;
      if (b.size === size) this.free.splice(best, 1);
      else { b.ptr += size; b.size -= size; }
      this.live += size;
      return ptr;
    }
    // Extend the top; a free block ending at the top is merged into the extension.
    const last = this.free[this.free.length - 1];
    const start = last && last.ptr + last.size === this.top ? last.ptr : this.top;
    const end = start + size;
    if (end > this.maxBytes) return -1;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      try {
        this.memory.grow(Math.ceil((end - have) / PAGE));
      } catch {
        return -1;
      }
    }
    if (start !== this.top) this.free.pop();
    this.top = end;
    this.live += size;
    return start;
  }

  alloc(bytes: number, what: string): number {
    const p = this.tryAlloc(bytes);
    if (p < 0) {
      throw new Error(`wasm heap: cannot allocate ${what} (${fmt(bytes)}); ${fmt(this.live)} live, ` +
        `${fmt(this.available())} free of ${fmt(this.maxBytes)} (WebAssembly memory maximum)`);
    }
    return p;
  }

  release(ptr: number, bytes: number): void {
    const size = blockSize(bytes);
    this.live -= size;
    // Insert sorted by address, then coalesce with the neighbours.
    let lo = 0, hi = this.free.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.free[mid]!.ptr < ptr) lo = mid + 1; else hi = mid;
    }
    this.free.splice(lo, 0, { ptr, size });
    const next = this.free[lo + 1];
    const cur = this.free[lo]!;
    if (next && cur.ptr + cur.size === next.ptr) { cur.size += next.size; this.free.splice(lo + 1, 1); }
    const prev = this.free[lo - 1];
    if (prev && prev.ptr + prev.size === cur.ptr) { prev.size += cur.size; this.free.splice(lo, 1); }
    // A free block at the top lowers the top.
    const last = this.free[this.free.length - 1];
    if (last && last.ptr + last.size === this.top) { this.top = last.ptr; this.free.pop(); }
  }
}

/**
 * Bytes reserved for a request: 64 bytes of slack past the end, so a kernel may read a few v128 past
 * any element of a block (vector loads in scalar tails, the conv packer's masked row loads) without
 * leaving the memory.
 */
function blockSize(bytes: number): number {
  return align(bytes + 64);
}

function align(n: number): number {
  return Math.ceil(n / HEAP_ALIGN) * HEAP_ALIGN;
}

function fmt(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
