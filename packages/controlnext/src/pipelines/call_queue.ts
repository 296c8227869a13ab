// One-at-a-time execution of a pipeline's calls (issue 17 item 2: two generate() calls at once on one
// pipeline corrupted each other; the scheduler's timesteps and multistep history, and on WebGPU the
// buffers bound in one synchronisation scope, belong to one call at a time). Calls made while one runs
// wait their turn, in call order, and each gets its own result or error; a failed call does not stop
// the ones queued after it. Anything that mutates shared model state per call (a training step) can
// go through the same queue.
//
// A call made from inside a running call of the same queue (a step callback calling generate() on its
// own pipeline) would wait for itself forever: that is detected where it can be (synchronously inside
// the running call's callbacks, see `enter`) and refused with an error instead.

export class CallQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;
  private closed: string | undefined;
  /** Set while the running call executes user code that must not re-enter the queue. */
  private inCallback = false;

  /** Calls running or waiting. */
  get size(): number {
    return this.pending;
  }

  /** Run `fn` after every call queued before it has settled. */
  run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed !== undefined) return Promise.reject(new Error(`${what}: ${this.closed}`));
    if (this.inCallback) {
      return Promise.reject(new Error(`${what}: called from inside a callback of a running call on the same pipeline, which would wait for itself; call it after the running call returns`));
    }
    this.pending++;
    const result = this.tail.then(fn);
    this.tail = result.then(() => { this.pending--; }, () => { this.pending--; });
    return result;
  }

  /** Run a user callback of the running call; a queue call made synchronously inside it is refused. */
  async callback<T>(fn: () => T | Promise<T>): Promise<Awaited<T>> {
    this.inCallback = true;
    try {
      const r = fn(); // its synchronous part, where a nested run() would be detected
      this.inCallback = false;
      return await r;
    } finally {
      this.inCallback = false;
    }
  }

  /**
   * Refuse calls made from now on (`why` completes their error); the calls made before still run, in
   * order, and `then` runs once they have all settled (at once when the queue is idle).
   */
  close(why: string, then: () => void): void {
    this.closed = why;
    if (this.pending === 0) then();
    else void this.tail.then(then);
  }
}
