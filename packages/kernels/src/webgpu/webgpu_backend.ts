// The WebGPU backend: implements the Backend contract (@cnx/tensor backend.ts) by dispatching the WGSL
// kernel families of this package, and the GpuContext (context.ts) that those families use.
//
// Memory: each storage is one GPUBuffer from a size-class pool (buffer_pool.ts), sized to a multiple of
// 4 bytes (f16/bf16 tensors of odd length). Commands: dispatches are recorded into one command encoder
// (a compute pass kept open across dispatches; WebGPU synchronises storage writes between dispatches)
// and submitted every FLUSH_EVERY dispatches and on read()/sync()/fromRaw(). Pipelines compile
// asynchronously (pipeline_cache.ts): while one is compiling, every command (dispatch, clear, upload,
// copy) is recorded in order in `deferred` instead, and replayed as soon as the compiles are done (at
// the next op once the event loop has run, or by settle() at the next read()/sync()), so no op ever
// blocks the JavaScript thread on a shader compile. Released buffers go back to the pool at once even
// then: the replay keeps the order of every use, so a reused buffer is written only after the recorded
// commands that read it; only destroying a buffer waits for the submit of the commands that use it. fromRaw() submits pending
// work before its queue.writeBuffer, because writeBuffer runs at once on the queue timeline and the
// target may be a recycled buffer that pending commands still read. Uniform blocks come from a small
// pool of uniform buffers that return to the pool when the batch using them is submitted (later queue
// writes are ordered after that submission).
//
// GPU time (opt-in, where the device has 'timestamp-query'): between startGpuTimer() and stopGpuTimer()
// every compute pass gets timestampWrites (gpu_timer.ts) and stopGpuTimer() returns the summed execution
// time of those passes. Copies, clears and uploads run outside compute passes and are not timed. Start
// and stop go through enqueue(), so with deferred commands exactly the passes recorded in between are timed.
// While the timer is off, computePass() only checks one field.
//
// Errors: shader compilation and validation errors are asynchronous in WebGPU; they are collected
// (with the kernel label) and thrown from the next read()/sync().

import {
  DTYPE_BYTES, coreOps, formatShape, gradOps, isContiguousLayout, numel, toFloat32, Tensor,
  type Backend, type DType, type MemoryStats, type OpDefinition, type RawArray, type Shape, type Storage, type TensorMeta,
  type WeightDtype,
} from '@cnx/tensor';
import { BufferPool, sizeClass } from './buffer_pool.js';
import type { DispatchSpec, GpuContext } from './context.js';
import { formatAdapterReport, type AcquiredDevice, type AdapterReport } from './device.js';
import { coreKernels, type WebgpuKernel } from './core_kernels.js';
import { gradKernels } from './grad_kernels.js';
import { GpuTimer } from './gpu_timer.js';
import * as layout from './layout.js';
import { PipelineCache, type CachedPipeline, type CompileStatus } from './pipeline_cache.js';

/** Dispatches recorded before a submit. Small enough to keep the GPU fed, large enough to amortise submits. */
const FLUSH_EVERY = 32;
/** Bind groups kept for reuse; the cache is cleared when it reaches this size. */
const MAX_CACHED_BIND_GROUPS = 8192;

/**
 * The uniform blocks of one batch, packed at aligned offsets into one GPU buffer that is written once per
 * submit. One buffer serves every batch: the next batch's writeBuffer is ordered after this submit.
 */
class UniformArena {
  static readonly CAPACITY = 1 << 18;
  readonly buffer: GPUBuffer;
  private readonly host = new Uint8Array(UniformArena.CAPACITY);
  private used = 0;

  constructor(private readonly device: GPUDevice, private readonly align: number) {
    this.buffer = device.createBuffer({ size: UniformArena.CAPACITY, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'uniform arena' });
  }

  /** Copy `bytes` in (bound as `size` bytes); returns the dynamic offset. Flushes first when full. */
  push(bytes: Uint8Array, size: number, flush: () => void): number {
    if (size > UniformArena.CAPACITY) throw new Error(`webgpu: a uniform block of ${size} bytes exceeds the ${UniformArena.CAPACITY}-byte arena`);
    if (this.used + size > UniformArena.CAPACITY) flush();
    const offset = this.used;
    this.host.set(bytes, offset);
    this.host.fill(0, offset + bytes.byteLength, offset + size);
    this.used = Math.ceil((offset + size) / this.align) * this.align;
    return offset;
  }

  /** Write the batch's blocks to the GPU buffer and start a new batch. */
  upload(): void {
    if (this.used === 0) return;
    this.device.queue.writeBuffer(this.buffer, 0, this.host, 0, this.used);
    this.used = 0;
  }

  destroy(): void {
    this.buffer.destroy();
  }
}

function asBytes(data: ArrayBuffer | ArrayBufferView): Uint8Array {
  return data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

interface GpuStorage extends Storage {
  buffer: GPUBuffer;
}

export interface WebgpuBackendOptions {
  /** Cap of released buffers kept for reuse (buffer_pool.ts DEFAULT_MAX_POOLED_BYTES). */
  maxPooledBytes?: number;
  /** Storage dtype of model weights (@cnx/tensor weight_dtype.ts); default f32. */
  weightDtype?: WeightDtype;
  /** 'f16': f16-operand kernels with f32 accumulation where the device has shader-f16; default f32. */
  compute?: 'f32' | 'f16';
}

export class WebgpuBackend implements Backend, GpuContext {
  readonly name = 'webgpu';
  readonly description: string;
  readonly adapterInfo: AdapterReport;
  readonly device: GPUDevice;
  readonly limits: GPUSupportedLimits;
  readonly features: ReadonlySet<string>;
  readonly weightDtype: WeightDtype;
  /** The compute dtype in effect: 'f16' only when asked for and the device has shader-f16 (f32 inside inFullPrecision). */
  get computeDtype(): 'f32' | 'f16' { return this.compute; }
  private compute: 'f32' | 'f16';
  /** Why f16 compute was asked for but is not in effect (no shader-f16), else undefined. */
  readonly computeNote: string | undefined;

  private readonly pool: BufferPool;
  private readonly pipelines: PipelineCache;
  private readonly uniformFree = new Map<number, GPUBuffer[]>();
  private uniformInFlight: GPUBuffer[] = [];
  private destroyAfterSubmit: GPUBuffer[] = [];
  private readonly arena: UniformArena;
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly bindGroupKeysByBuffer = new Map<number, string[]>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  private encoder: GPUCommandEncoder | undefined;
  private pass: GPUComputePassEncoder | undefined;
  private pendingDispatches = 0;
  /** Commands recorded while a pipeline compiles, in order; undefined when commands run at once. */
  private deferred: (() => void)[] | undefined;
  private compiling = new Set<CachedPipeline>();
  private errors: Error[] = [];
  private destroyed = false;
  /** Created at the first startGpuTimer(); keeps its query sets for later measurements. */
  private timer: GpuTimer | undefined;
  /** The timer while compute passes get timestamp writes (in command order, see enqueue()), else undefined. */
  private timing: GpuTimer | undefined;
  /** Between startGpuTimer() and the end of stopGpuTimer() (in call order). */
  private timerState: 'off' | 'on' | 'stopping' = 'off';
  private timedPasses: number | undefined;

  /** opts: a number is maxPooledBytes (the former signature). */
  constructor(acquired: AcquiredDevice, opts: WebgpuBackendOptions | number = {}) {
    const o: WebgpuBackendOptions = typeof opts === 'number' ? { maxPooledBytes: opts } : opts;
    const maxPooledBytes = o.maxPooledBytes;
    this.device = acquired.device;
    this.adapterInfo = acquired.report;
    this.limits = this.device.limits;
    this.features = new Set(this.device.features);
    this.weightDtype = o.weightDtype ?? 'f32';
    const f16 = o.compute === 'f16' && this.features.has('shader-f16');
    this.compute = f16 ? 'f16' : 'f32';
    this.computeNote = o.compute === 'f16' && !f16
      ? `f16 compute unavailable: the device has no shader-f16 (features: ${[...this.features].sort().join(', ') || 'none'}); computing in f32`
      : undefined;
    const precision = [
      ...(this.weightDtype !== 'f32' ? [`${this.weightDtype} weights`] : []),
      ...(o.compute === 'f16' ? [f16 ? 'f16 compute (f32 accumulation)' : 'f32 compute (no shader-f16)'] : []),
    ];
    this.description = precision.length ? `${acquired.description} {${precision.join(', ')}}` : acquired.description;
    this.pool = new BufferPool(this.device, {
      maxBufferSize: this.limits.maxBufferSize,
      maxStorageBufferBindingSize: this.limits.maxStorageBufferBindingSize,
      ...(maxPooledBytes !== undefined ? { maxPooledBytes } : {}),
    }, (b) => this.forgetBuffer(b));
    this.arena = new UniformArena(this.device, this.limits.minUniformBufferOffsetAlignment);
    this.pipelines = new PipelineCache(this.device);
    this.device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      this.errors.push(new Error(`webgpu: ${ev.error.message}`));
    };
    void this.device.lost.then((info) => {
      if (!this.destroyed) this.errors.push(new Error(`webgpu: device lost (${info.reason}): ${info.message}`));
    });
  }

  /**
   * Shader compiles requested and finished so far (compile_progress.ts reports them: a software adapter
   * compiles a pipeline's first step for minutes).
   */
  get compileStatus(): CompileStatus {
    return this.pipelines.status;
  }

  /** Adapter, backend, features and limits, several lines. */
  get report(): string {
    return formatAdapterReport(this.adapterInfo);
  }

  /**
   * Run `fn` with the f32 kernels whatever the compute dtype (Backend.inFullPrecision; the VAE's
   * force_upcast). Kernels pick their variant when they are called, so the switch covers exactly the ops
   * that `fn` runs; pipelines are cached by their WGSL text, so both variants stay compiled.
   */
  inFullPrecision<T>(fn: () => T): T {
    const prev = this.compute;
    this.compute = 'f32';
    try {
      return fn();
    } finally {
      this.compute = prev;
    }
  }

  // ------------------------------------------------------------------ GpuContext

  empty(shape: Shape, dtype: DType = 'f32'): Tensor {
    this.assertLive();
    const bytes = numel(shape) * DTYPE_BYTES[dtype];
    const buffer = this.pool.acquire(bytes, `${dtype} ${formatShape(shape)}`);
    const storage: GpuStorage = { refs: 0, byteLength: buffer.size, buffer };
    return new Tensor(this, storage, dtype, shape);
  }

  buffer(t: Tensor): GPUBuffer {
    if (t.backend !== this) throw new Error(`webgpu: ${t.toString()} belongs to another backend (${t.backend.name})`);
    return (t.storage as GpuStorage).buffer;
  }

  dispatch(spec: DispatchSpec): void {
    this.assertLive();
    const [x, y = 1, z = 1] = spec.workgroups;
    const maxDim = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxDim || y > maxDim || z > maxDim) {
      throw new Error(`webgpu ${spec.label}: workgroups [${x}, ${y}, ${z}] exceed maxComputeWorkgroupsPerDimension = ${maxDim}`);
    }
    const cached = this.pipelines.get(spec.label, spec.code, spec.entryPoint);
    if (x === 0 || y === 0 || z === 0) return;
    this.replayIfCompiled();
    if (!cached.pipeline && !cached.failed && !this.deferred) {
      this.flush(); // what was recorded so far needs no pending pipeline
      this.deferred = [];
    }
    if (!cached.pipeline && !cached.failed) this.compiling.add(cached);
    if (!this.deferred) return this.record(spec, cached, [x, y, z]);
    // Kernels may reuse the arrays they pass: keep copies until the replay.
    const kept: DispatchSpec = { ...spec, bindings: [...spec.bindings], uniforms: spec.uniforms && asBytes(spec.uniforms).slice() };
    this.deferred.push(() => this.record(kept, cached, [x, y, z]));
  }

  private record(spec: DispatchSpec, cached: CachedPipeline, wg: readonly [number, number, number]): void {
    if (!cached.pipeline) return; // its compile failed: the error is thrown by the next read()/sync()
    if (cached.bindings) this.recordExplicit(spec, cached, wg);
    else this.recordAuto(spec, cached, wg);
    if (++this.pendingDispatches >= FLUSH_EVERY) this.flush();
  }

  /** Run a command now, or record it after the deferred ones (see the header). */
  private enqueue(command: () => void): void {
    this.replayIfCompiled();
    if (this.deferred) this.deferred.push(command);
    else command();
  }

  /** Replay the deferred commands if every compile they wait for has finished. */
  private replayIfCompiled(): void {
    if (!this.deferred) return;
    for (const c of this.compiling) if (!c.pipeline && !c.failed) return;
    this.compiling.clear();
    const commands = this.deferred;
    this.deferred = undefined;
    for (const command of commands) command();
  }

  /** Wait for pending compiles and replay the commands recorded meanwhile. */
  private async settle(): Promise<void> {
    while (this.deferred) {
      await Promise.all([...this.compiling].map((c) => c.ready));
      this.replayIfCompiled();
    }
  }

  /**
   * Explicit layout (pipeline_cache.ts): the uniforms go into the batch's uniform arena at a dynamic
   * offset, and the bind group is cached by (pipeline, buffers, uniform size) when every binding is a
   * tensor of this backend (their buffers are pool-owned, so the cache learns when one is destroyed).
   */
  private recordExplicit(spec: DispatchSpec, cached: CachedPipeline, wg: readonly [number, number, number]): void {
    const kinds = cached.bindings!;
    const uniformAt = kinds.indexOf('uniform');
    const storageCount = kinds.length - (uniformAt >= 0 ? 1 : 0);
    if (spec.bindings.length !== storageCount || (uniformAt >= 0) !== (spec.uniforms !== undefined) || (uniformAt >= 0 && uniformAt !== storageCount)) {
      throw new Error(`webgpu ${spec.label}: the shader declares ${storageCount} storage binding(s)${uniformAt >= 0 ? ` and a uniform block at binding ${uniformAt}` : ''}; ` +
        `the dispatch passes ${spec.bindings.length} binding(s)${spec.uniforms ? ' and uniforms' : ''}`);
    }
    let offsets: number[] | undefined;
    let uniformSize = 0;
    if (spec.uniforms) {
      const bytes = asBytes(spec.uniforms);
      // Bind at least 256 bytes: kernels may pass fewer bytes than their WGSL struct holds (the
      // former one-buffer-per-dispatch scheme always bound >= 256).
      uniformSize = Math.max(256, Math.ceil(bytes.byteLength / 16) * 16);
      offsets = [this.arena.push(bytes, uniformSize, () => this.flush())];
    }
    let key: string | undefined = `${cached.id}|${uniformSize}`;
    const buffers: GPUBuffer[] = [];
    for (const b of spec.bindings) {
      if (b instanceof Tensor) {
        const buf = this.buffer(b);
        buffers.push(buf);
        if (key !== undefined) key += `|${this.bufferId(buf)}`;
      } else {
        buffers.push(b);
        key = undefined; // foreign buffers: lifetime unknown, never cached
      }
    }
    let bindGroup = key !== undefined ? this.bindGroups.get(key) : undefined;
    if (!bindGroup) {
      const entries: GPUBindGroupEntry[] = buffers.map((buffer, binding) => ({ binding, resource: { buffer } }));
      if (spec.uniforms) entries.push({ binding: uniformAt, resource: { buffer: this.arena.buffer, offset: 0, size: uniformSize } });
      bindGroup = this.device.createBindGroup({ label: spec.label, layout: cached.bindGroupLayout!, entries });
      if (key !== undefined) this.cacheBindGroup(key, bindGroup, buffers);
    }
    const pass = this.computePass();
    pass.setPipeline(cached.pipeline!);
    if (offsets) pass.setBindGroup(0, bindGroup, offsets);
    else pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(wg[0], wg[1], wg[2]);
  }

  /** Layout 'auto' (declarations that did not parse): one uniform buffer per dispatch, no caching. */
  private recordAuto(spec: DispatchSpec, cached: CachedPipeline, wg: readonly [number, number, number]): void {
    const entries: GPUBindGroupEntry[] = spec.bindings.map((b, i) => ({
      binding: i,
      resource: { buffer: b instanceof Tensor ? this.buffer(b) : b },
    }));
    if (spec.uniforms) entries.push({ binding: entries.length, resource: { buffer: this.uniformBuffer(spec.uniforms) } });
    const bindGroup = this.device.createBindGroup({ label: spec.label, layout: cached.bindGroupLayout!, entries });
    const pass = this.computePass();
    pass.setPipeline(cached.pipeline!);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(wg[0], wg[1], wg[2]);
  }

  private bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) this.bufferIds.set(b, (id = this.nextBufferId++));
    return id;
  }

  private cacheBindGroup(key: string, bindGroup: GPUBindGroup, buffers: readonly GPUBuffer[]): void {
    if (this.bindGroups.size >= MAX_CACHED_BIND_GROUPS) {
      this.bindGroups.clear();
      this.bindGroupKeysByBuffer.clear();
    }
    this.bindGroups.set(key, bindGroup);
    for (const b of buffers) {
      const id = this.bufferId(b);
      let keys = this.bindGroupKeysByBuffer.get(id);
      if (!keys) this.bindGroupKeysByBuffer.set(id, (keys = []));
      keys.push(key);
    }
  }

  /** Drop cached bind groups that use a buffer about to be destroyed. */
  private forgetBuffer(b: GPUBuffer): void {
    const id = this.bufferIds.get(b);
    if (id === undefined) return;
    for (const key of this.bindGroupKeysByBuffer.get(id) ?? []) this.bindGroups.delete(key);
    this.bindGroupKeysByBuffer.delete(id);
  }

  private uniformBuffer(data: ArrayBuffer | ArrayBufferView): GPUBuffer {
    const bytes = asBytes(data);
    const size = sizeClass(Math.max(16, Math.ceil(bytes.byteLength / 16) * 16));
    const buf = this.uniformFree.get(size)?.pop()
      ?? this.device.createBuffer({ size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'uniforms' });
    this.device.queue.writeBuffer(buf, 0, (bytes.byteLength % 4 ? padTo4(bytes) : bytes) as Uint8Array<ArrayBuffer>);
    this.uniformInFlight.push(buf);
    return buf;
  }

  private commandEncoder(): GPUCommandEncoder {
    this.encoder ??= this.device.createCommandEncoder({ label: 'cnx batch' });
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) {
      const enc = this.commandEncoder();
      this.pass = this.timing ? enc.beginComputePass({ timestampWrites: this.timing.passWrites(enc) }) : enc.beginComputePass();
    }
    return this.pass;
  }

  /** End the open compute pass, if any (the next dispatch begins a new one). */
  private endPass(): void {
    this.pass?.end();
    this.pass = undefined;
  }

  /** The encoder with no compute pass open (for copies and clears). */
  private copyEncoder(): GPUCommandEncoder {
    this.endPass();
    return this.commandEncoder();
  }

  /** Submit everything recorded so far. */
  flush(): void {
    if (!this.encoder) return;
    const enc = this.copyEncoder();
    this.arena.upload(); // queue.writeBuffer lands before the submit that reads it
    this.device.queue.submit([enc.finish()]);
    this.encoder = undefined;
    this.pendingDispatches = 0;
    this.timer?.submitted(); // read back any query resolves that this submit carried
    // Later writeBuffer calls into these are ordered after this submission: reuse them now.
    for (const b of this.uniformInFlight) {
      let list = this.uniformFree.get(b.size);
      if (!list) this.uniformFree.set(b.size, (list = []));
      list.push(b);
    }
    this.uniformInFlight = [];
    for (const b of this.destroyAfterSubmit) { this.forgetBuffer(b); b.destroy(); } // submitted work keeps its own reference
    this.destroyAfterSubmit = [];
  }

  private throwErrors(): void {
    const errs = [...this.pipelines.takeErrors(), ...this.errors];
    this.errors = [];
    if (errs.length === 1) throw errs[0]!;
    if (errs.length > 1) throw new Error(`webgpu: ${errs.length} errors:\n${errs.map((e) => e.message).join('\n---\n')}`);
  }

  private assertLive(): void {
    if (this.destroyed) throw new Error('webgpu backend used after destroy()');
  }

  // ------------------------------------------------------------------ memory

  zeros(shape: Shape, dtype: DType = 'f32'): Tensor {
    const t = this.empty(shape, dtype);
    const buffer = this.buffer(t);
    this.enqueue(() => this.copyEncoder().clearBuffer(buffer));
    return t;
  }

  fromRaw(data: RawArray, shape: Shape, dtype: DType = 'f32'): Tensor {
    if (data.length !== numel(shape)) throw new Error(`fromRaw: ${data.length} elements do not fill shape ${formatShape(shape)}`);
    const expected = dtype === 'f32' ? Float32Array : dtype === 'i32' ? Int32Array : Uint16Array;
    if (!(data instanceof expected)) throw new Error(`fromRaw: ${dtype} data must be a ${expected.name}, got ${data.constructor.name}`);
    const t = this.empty(shape, dtype);
    const buffer = this.buffer(t);
    const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (view.byteLength === 0) return t;
    // The caller may reuse `data` before a deferred upload runs: copy it then.
    const bytes = view.byteLength % 4 ? padTo4(view) : this.deferred ? view.slice() : view;
    this.enqueue(() => {
      this.flush(); // the buffer may be recycled: pending commands must read its old contents first
      this.device.queue.writeBuffer(buffer, 0, bytes as Uint8Array<ArrayBuffer>);
    });
    return t;
  }

  async read(x: Tensor): Promise<Float32Array> {
    this.assertLive();
    const eb = DTYPE_BYTES[x.dtype];
    const dense = isContiguousLayout(x.shape, x.strides);
    const src = dense ? x : this.contiguous(x);
    try {
      const n = src.size;
      const begin = (dense ? x.offset : 0) * eb;
      const start = Math.floor(begin / 4) * 4;
      const end = Math.ceil((begin + n * eb) / 4) * 4;
      const staging = this.device.createBuffer({ size: Math.max(4, end - start), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'readback' });
      try {
        const from = this.buffer(src);
        if (end > start) this.enqueue(() => this.copyEncoder().copyBufferToBuffer(from, start, staging, 0, end - start));
        await this.settle();
        this.flush();
        await staging.mapAsync(GPUMapMode.READ);
        this.throwErrors();
        const bytes = new Uint8Array(staging.getMappedRange()).slice(begin - start, begin - start + n * eb);
        staging.unmap();
        const raw: RawArray = x.dtype === 'f32' ? new Float32Array(bytes.buffer, 0, n)
          : x.dtype === 'i32' ? new Int32Array(bytes.buffer, 0, n) : new Uint16Array(bytes.buffer, 0, n);
        return toFloat32(raw, x.dtype);
      } finally {
        staging.destroy();
      }
    } finally {
      if (src !== x) src.dispose();
    }
  }

  free(storage: Storage): void {
    if (this.destroyed) return;
    const buffer = (storage as GpuStorage).buffer;
    // Not pooled (pool full): destroy it once the commands recorded so far, which may use it, are
    // submitted; while deferring, queue that after the recorded commands (a replay may submit midway).
    if (!this.pool.release(buffer)) {
      if (this.deferred) this.deferred.push(() => this.destroyAfterSubmit.push(buffer));
      else if (this.encoder) this.destroyAfterSubmit.push(buffer);
      else { this.forgetBuffer(buffer); buffer.destroy(); }
    }
  }

  memory(): MemoryStats {
    return this.pool.memory();
  }

  resetPeak(): void {
    this.pool.resetPeak();
  }

  async sync(): Promise<void> {
    this.assertLive();
    await this.settle();
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.throwErrors();
  }

  // ------------------------------------------------------------------ GPU time

  /** Whether startGpuTimer() can measure: the device has the 'timestamp-query' feature. */
  get hasGpuTimer(): boolean {
    return this.features.has('timestamp-query');
  }

  /**
   * Time the compute passes of the commands issued from now until stopGpuTimer(). Returns false (and
   * times nothing) where the device lacks 'timestamp-query'.
   */
  startGpuTimer(): boolean {
    this.assertLive();
    if (!this.hasGpuTimer) return false;
    if (this.timerState !== 'off') throw new Error(`webgpu startGpuTimer: the timer is ${this.timerState === 'on' ? 'already running' : 'still stopping'}; await stopGpuTimer() first`);
    this.timerState = 'on';
    this.enqueue(() => {
      this.endPass(); // the open pass began untimed: later dispatches go to a timed one
      this.timer ??= new GpuTimer(this.device);
      this.timer.reset();
      this.timing = this.timer;
    });
    return true;
  }

  /**
   * Stop the timer; the summed GPU execution time in ms of the compute passes since startGpuTimer(),
   * once they have run. undefined when the timer was not started (startGpuTimer() returned false).
   */
  async stopGpuTimer(): Promise<number | undefined> {
    this.assertLive();
    if (this.timerState !== 'on') return undefined;
    this.timerState = 'stopping';
    try {
      this.enqueue(() => {
        this.endPass();
        this.timing = undefined;
      });
      await this.settle();
      const timer = this.timer!;
      if (timer.unresolved) timer.resolve(this.copyEncoder());
      this.flush();
      const { ms, passes } = await timer.total();
      this.timedPasses = passes;
      this.throwErrors();
      return ms;
    } finally {
      this.timerState = 'off';
    }
  }

  /** How many compute passes the last completed measurement timed (undefined before the first). */
  get gpuTimerPasses(): number | undefined {
    return this.timedPasses;
  }

  /** Destroy pooled (unused) buffers, e.g. between benchmark configurations. */
  trimPool(): void {
    this.flush();
    if (this.deferred) return; // deferred commands may still use pooled buffers; trim after the next sync()
    this.pool.trim();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.flush();
    this.destroyed = true;
    this.timer?.destroy();
    this.pool.trim();
    for (const list of this.uniformFree.values()) for (const b of list) b.destroy();
    this.uniformFree.clear();
    this.arena.destroy();
    this.bindGroups.clear();
    this.device.destroy(); // a live device keeps the Node process alive
    // Dawn's Node binding holds a device strongly while it has an uncaptured-error handler, and the
    // handler (a closure over this backend) kept the whole backend reachable: its pipeline cache,
    // bind groups and SwiftShader's compiled code, ~30-60 MB per create/destroy cycle
    // (test/webgpu_lifecycle.test.ts). Dropping the handler lets the GC free all of it.
    this.device.onuncapturederror = null;
  }

  // ------------------------------------------------------------------ layout, type and ops

  contiguous(x: Tensor): Tensor { return layout.contiguous(this, x); }
  cast(x: Tensor, dtype: DType): Tensor { return layout.cast(this, x, dtype); }

  /**
   * A core op runs its entry of core_kernels.ts, a gradient op its entry of grad_kernels.ts; any other op
   * its definition's `kernels.webgpu`.
   */
  run<P>(op: OpDefinition<P>, inputs: readonly (Tensor | undefined)[], params: P, _outputs: readonly TensorMeta[]): Tensor[] {
    const def = op as OpDefinition<unknown>;
    const table = (coreOps as Readonly<Record<string, OpDefinition<unknown>>>)[op.name] === def ? coreKernels
      : (gradOps as Readonly<Record<string, OpDefinition<unknown>>>)[op.name] === def ? gradKernels : undefined;
    const kernel = (table as Readonly<Record<string, WebgpuKernel<P>>> | undefined)?.[op.name] ?? op.kernels?.webgpu;
    if (!kernel) throw new Error(`webgpu: op '${op.name}' has no WebGPU kernel (its definition has no kernels.webgpu entry)`);
    return kernel(this, inputs, params);
  }
}

function padTo4(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
  out.set(bytes);
  return out;
}
