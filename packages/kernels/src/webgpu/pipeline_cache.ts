// Compute pipelines cached by their WGSL source text (+ entry point): a kernel family's wgsl(params)
// function is pure, so equal text means an equal pipeline (DESIGN.md "Kernels (WGSL)").
//
// Layouts: the group-0 bindings are read from the WGSL declarations (`@group(0) @binding(i) var<storage,
// read>` / `var<storage, read_write>` / `var<uniform>`) to build an explicit bind group layout in which
// the uniform block has a dynamic offset. That lets the backend pack the uniforms of a whole batch into
// one buffer (one writeBuffer per submit instead of one per dispatch) and reuse bind groups across
// dispatches (a sampling loop binds the same pooled buffers every step). Shaders whose declarations do
// not parse into bindings 0..n-1 of group 0 fall back to layout 'auto'.
//
// Pipelines are created with createComputePipelineAsync: a shader compile can take seconds (SwiftShader
// compiles on the calling thread when asked synchronously: 35 s of blocked event loop for the first
// sd15_unet forward), and the async form compiles off the JavaScript thread. A cached entry is usable
// once `pipeline` is set; until then the backend records commands and replays them when `ready`
// settles (webgpu_backend.ts). Compilation errors are kept, with the kernel label and the numbered
// source, for the backend to throw at its next sync()/read().

export type BindingKind = 'read-only-storage' | 'storage' | 'uniform';

export interface CachedPipeline {
  /** Small unique number (bind group cache keys). */
  id: number;
  /** Set once compiled; undefined while compiling and after a failed compile. */
  pipeline: GPUComputePipeline | undefined;
  /** Set once compiled (explicit layouts: at once). */
  bindGroupLayout: GPUBindGroupLayout | undefined;
  /** Binding kinds by index when the layout is explicit; undefined for layout 'auto'. */
  bindings: BindingKind[] | undefined;
  /** The compile failed (its error is kept for takeErrors()). */
  failed: boolean;
  /** Settles (never rejects) when the compile has finished or failed. */
  ready: Promise<void>;
}

const DECL = /@(group|binding)\((\d+)\)\s*@(group|binding)\((\d+)\)\s*var\s*<\s*(storage|uniform)\s*(?:,\s*(read_write|read)\s*)?>/g;

/** Group-0 binding kinds declared in WGSL source, or undefined when they are not exactly 0..n-1 of group 0. */
export function parseBindings(code: string): BindingKind[] | undefined {
  const kinds: BindingKind[] = [];
  for (const m of code.matchAll(DECL)) {
    const [, a, av, b, bv, space, access] = m;
    if (a === b) return undefined;
    const group = Number(a === 'group' ? av : bv), binding = Number(a === 'binding' ? av : bv);
    if (group !== 0 || kinds[binding] !== undefined) return undefined;
    kinds[binding] = space === 'uniform' ? 'uniform' : access === 'read_write' ? 'storage' : 'read-only-storage';
  }
  for (let i = 0; i < kinds.length; i++) if (kinds[i] === undefined) return undefined;
  // One uniform block at most (it gets the dynamic offset).
  if (kinds.filter((k) => k === 'uniform').length > 1) return undefined;
  return kinds;
}

/** Compiles requested so far and how many have finished (compiled or failed): progress on slow adapters. */
export interface CompileStatus {
  requested: number;
  settled: number;
}

export class PipelineCache {
  /** entry point -> WGSL source -> pipeline. The source string itself is the key (V8 caches its hash). */
  private readonly pipelines = new Map<string, Map<string, CachedPipeline>>();
  private count = 0;
  private settled = 0;
  private errors: Error[] = [];
  private nextId = 1;

  constructor(private readonly device: GPUDevice) {}

  get size(): number {
    return this.count;
  }

  get status(): CompileStatus {
    return { requested: this.count, settled: this.settled };
  }

  get(label: string, code: string, entryPoint = 'main'): CachedPipeline {
    let byCode = this.pipelines.get(entryPoint);
    if (!byCode) this.pipelines.set(entryPoint, (byCode = new Map()));
    let cached = byCode.get(code);
    if (cached) return cached;
    const module = this.device.createShaderModule({ label, code });
    const bindings = parseBindings(code);
    let layout: GPUPipelineLayout | 'auto' = 'auto';
    let bindGroupLayout: GPUBindGroupLayout | undefined;
    if (bindings) {
      bindGroupLayout = this.device.createBindGroupLayout({
        label,
        entries: bindings.map((type, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type, hasDynamicOffset: type === 'uniform' },
        })),
      });
      layout = this.device.createPipelineLayout({ label, bindGroupLayouts: [bindGroupLayout] });
    }
    const entry: CachedPipeline = { id: this.nextId++, pipeline: undefined, bindGroupLayout, bindings, failed: false, ready: Promise.resolve() };
    entry.ready = this.device.createComputePipelineAsync({ label, layout, compute: { module, entryPoint } }).then(
      (pipeline) => {
        this.settled++;
        entry.pipeline = pipeline;
        entry.bindGroupLayout ??= pipeline.getBindGroupLayout(0);
      },
      (err: unknown) => {
        this.settled++;
        entry.failed = true;
        const numbered = code.split('\n').map((l, i) => `${String(i + 1).padStart(4)}: ${l}`).join('\n');
        const msg = err instanceof Error ? err.message : String(err);
        this.errors.push(new Error(`webgpu pipeline '${label}' (entry ${entryPoint}): ${msg}\n${numbered}`));
      },
    );
    cached = entry;
    byCode.set(code, cached);
    this.count++;
    return cached;
  }

  /** Errors recorded since the last call (compilation failures), oldest first. */
  takeErrors(): Error[] {
    const e = this.errors;
    this.errors = [];
    return e;
  }
}

/**
 * Memoise a pure `wgsl(params)` generator by a short key of its params, so that a hot dispatch path
 * neither rebuilds the source text nor re-hashes a new string (the same string object comes back).
 */
export function memoizeSource<P>(gen: (p: P) => string, keyOf: (p: P) => string): (p: P) => string {
  const memo = new Map<string, string>();
  return (p: P): string => {
    const key = keyOf(p);
    let code = memo.get(key);
    if (code === undefined) memo.set(key, (code = gen(p)));
    return code;
  };
}
