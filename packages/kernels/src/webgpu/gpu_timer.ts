// GPU execution time of compute passes from timestamp queries (the 'timestamp-query' feature), for the
// benchmark's per-step GPU time (WebgpuBackend.startGpuTimer / stopGpuTimer).
//
// Every compute pass begun while the timer runs asks passWrites() for its `timestampWrites`: a pair of
// queries (beginning and end of the pass) in the current GPUQuerySet. Query results stay in the set
// across submits, so nothing is resolved per submit: only when the set is full (on the encoder of the
// pass that needs a new pair) and when the measurement ends. resolve() records a resolveQuerySet of
// the used queries into a QUERY_RESOLVE buffer and a copy into a MAP_READ buffer; submitted(), after
// the submit of that encoder, maps it and adds sum(end - begin) over the pairs (nanoseconds, as BigInt:
// raw timestamps exceed 2^53). A full set is swapped for a fresh one rather than rewritten after its
// resolve in the same command buffer, and returns to a free list once read.
//
// What is counted: only compute passes, from the start of their first dispatch to the end of their last
// (as the driver timestamps them), summed; gaps between passes (submission, copies, clears, uploads,
// idle GPU) are not. Implementations may quantise timestamps (browsers round to ~0.1 ms unless the
// page is cross-origin isolated), which biases short passes.

/** Queries per set: 1024 passes (an SD1.5 step at 512x512 has a few hundred passes). */
const QUERIES_PER_SET = 2048;

interface Readback {
  querySet: GPUQuerySet;
  resolve: GPUBuffer;
  read: GPUBuffer;
  pairs: number;
}

export class GpuTimer {
  private current: GPUQuerySet | undefined;
  private used = 0;
  private readonly freeSets: GPUQuerySet[] = [];
  /** Resolves recorded on the encoder that is not yet submitted. */
  private recorded: Readback[] = [];
  private readonly pending = new Set<Promise<void>>();
  private totalNs = 0n;
  private passes = 0;
  private failure: Error | undefined;
  constructor(private readonly device: GPUDevice) {}

  /** The timestamp writes of the next compute pass on `encoder` (no pass may be open on it). */
  passWrites(encoder: GPUCommandEncoder): GPUComputePassTimestampWrites {
    if (this.current && this.used + 2 > QUERIES_PER_SET) this.resolve(encoder);
    if (!this.current) {
      this.current = this.freeSets.pop() ?? this.createSet();
      this.used = 0;
    }
    const begin = this.used;
    this.used += 2;
    return { querySet: this.current, beginningOfPassWriteIndex: begin, endOfPassWriteIndex: begin + 1 };
  }

  /** Whether passes were timed that resolve() has not recorded yet. */
  get unresolved(): boolean {
    return this.current !== undefined && this.used > 0;
  }

  /** Record the resolve of the queries used so far on `encoder` (no pass open); submit it, then call submitted(). */
  resolve(encoder: GPUCommandEncoder): void {
    if (!this.unresolved) return;
    const querySet = this.current!;
    const bytes = this.used * 8;
    const resolve = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC, label: 'gpu timer resolve' });
    const read = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'gpu timer readback' });
    encoder.resolveQuerySet(querySet, 0, this.used, resolve, 0);
    encoder.copyBufferToBuffer(resolve, 0, read, 0, bytes);
    this.recorded.push({ querySet, resolve, read, pairs: this.used / 2 });
    this.current = undefined;
    this.used = 0;
  }

  /** The encoder that resolve() recorded on was submitted: read the results back. */
  submitted(): void {
    for (const r of this.recorded) {
      const p = this.readBack(r).finally(() => this.pending.delete(p));
      this.pending.add(p);
    }
    this.recorded = [];
  }

  private async readBack(r: Readback): Promise<void> {
    try {
      await r.read.mapAsync(GPUMapMode.READ);
      const t = new BigInt64Array(r.read.getMappedRange());
      let sum = 0n;
      for (let i = 0; i < r.pairs; i++) {
        const d = t[2 * i + 1]! - t[2 * i]!;
        // Some drivers report end < begin for an empty or reordered pass; such a pass took no measurable time.
        if (d > 0n) sum += d;
      }
      r.read.unmap();
      this.totalNs += sum;
      this.passes += r.pairs;
      this.freeSets.push(r.querySet); // its results were read: reusable
    } catch (e) {
      this.failure ??= new Error(`gpu timer: reading ${r.pairs} timestamp pair(s) back failed: ${e instanceof Error ? e.message : String(e)}`);
      r.querySet.destroy();
    } finally {
      r.resolve.destroy();
      r.read.destroy();
    }
  }

  /**
   * Wait for every submitted resolve and return the summed pass time in ms and the number of timed passes
   * since the last reset(). Callers resolve and submit what they recorded first.
   */
  async total(): Promise<{ ms: number; passes: number }> {
    if (this.recorded.length > 0 || this.unresolved) {
      throw new Error(`gpu timer: ${this.used / 2} pass(es) not resolved and ${this.recorded.length} resolve(s) not submitted; flush before reading the total`);
    }
    while (this.pending.size > 0) await Promise.all([...this.pending]);
    if (this.failure) {
      const e = this.failure;
      this.failure = undefined;
      throw e;
    }
    return { ms: Number(this.totalNs) / 1e6, passes: this.passes };
  }

  /**
   * Start a new measurement: queries not resolved yet (a measurement abandoned by an error) are dropped;
   * results still in flight would count towards it, so callers wait with total() first.
   */
  reset(): void {
    this.used = 0;
    this.totalNs = 0n;
    this.passes = 0;
  }

  destroy(): void {
    this.current?.destroy();
    this.current = undefined;
    for (const s of this.freeSets) s.destroy();
    this.freeSets.length = 0;
    for (const r of this.recorded) { r.querySet.destroy(); r.resolve.destroy(); r.read.destroy(); }
    this.recorded = [];
  }

  private createSet(): GPUQuerySet {
    return this.device.createQuerySet({ type: 'timestamp', count: QUERIES_PER_SET, label: 'gpu timer' });
  }
}
