// Compute pipelines cached by their WGSL source text (+ entry point): a kernel family's wgsl(params)
// function is pure, so equal text means an equal pipeline (DESIGN.md "Kernels (WGSL)").
//
// Pipeline creation is synchronous (createComputePipeline) so that dispatch() stays synchronous; shader
// compilation errors are caught with an error scope and kept, with the kernel label and the numbered
// source, for the backend to throw at its next sync()/read().

export class PipelineCache {
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private errors: Error[] = [];

  constructor(private readonly device: GPUDevice) {}

  get size(): number {
    return this.pipelines.size;
  }

  get(label: string, code: string, entryPoint = 'main'): GPUComputePipeline {
    const key = `${entryPoint}\n${code}`;
    let pipeline = this.pipelines.get(key);
    if (pipeline) return pipeline;
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ label, code });
    pipeline = this.device.createComputePipeline({ label, layout: 'auto', compute: { module, entryPoint } });
    void this.device.popErrorScope().then((err) => {
      if (!err) return;
      const numbered = code.split('\n').map((l, i) => `${String(i + 1).padStart(4)}: ${l}`).join('\n');
      this.errors.push(new Error(`webgpu pipeline '${label}' (entry ${entryPoint}): ${err.message}\n${numbered}`));
    });
    this.pipelines.set(key, pipeline);
    return pipeline;
  }

  /** Errors recorded since the last call (compilation failures), oldest first. */
  takeErrors(): Error[] {
    const e = this.errors;
    this.errors = [];
    return e;
  }
}
