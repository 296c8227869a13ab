// A golden case folder: case.json + io.safetensors + model folders (see golden/README.md).

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile, type Backend, type Tensor } from '@cnx/tensor';

export interface ToleranceSpec {
  max_abs: number;
  rel_l2: number;
  fp32_vs_fp64_max_abs?: number;
  fp32_vs_fp64_rel_l2?: number;
}

export interface CaseJson {
  case: string;
  runner: string;
  description?: string;
  call?: string;
  args: Record<string, any>;
  config: Record<string, any>;
  models?: Record<string, { path: string; kind?: string; class?: string; weights?: string }>;
  inputs: Record<string, number[]>;
  outputs: Record<string, number[]>;
  intermediates?: Record<string, number[]>;
  tolerance: Record<string, ToleranceSpec>;
  io_file?: string;
}

export class GoldenCase {
  readonly json: CaseJson;
  readonly io: SafetensorsFile;

  /**
   * Names listed as outputs that the runner consumed as inputs instead (a scheduler's per-step noise,
   * replayed because torch's generator is not reproduced), with what it verified about them. They are
   * reported as replayed, never as a passed comparison of the case's tensor with itself.
   */
  readonly replayed = new Map<string, string>();

  constructor(readonly dir: string) {
    const cj = join(dir, 'case.json');
    if (!existsSync(cj)) throw new Error(`${dir}: not a golden case folder (no case.json)`);
    this.json = JSON.parse(readFileSync(cj, 'utf8')) as CaseJson;
    if (typeof this.json.runner !== 'string') throw new Error(`${cj}: missing "runner"`);
    this.io = SafetensorsFile.open(join(dir, this.json.io_file ?? 'io.safetensors'));
  }

  get name(): string { return this.json.case; }
  get args(): Record<string, any> { return this.json.args ?? {}; }
  get config(): Record<string, any> { return this.json.config ?? {}; }

  /** An io tensor by name, as f32 on `backend`; errors name the case and the tensor. */
  input(name: string, backend: Backend): Tensor {
    if (!this.io.has(name)) throw new Error(`${this.name}: io.safetensors has no tensor '${name}'`);
    const { shape, data } = this.io.readFloat32(name);
    return backend.fromRaw(data, shape);
  }

  /** A timestep io tensor as [B]: a 0-dim one (case args.timestep_scalar) becomes [1], broadcast by the models. */
  timestepInput(name: string, backend: Backend): Tensor {
    const t = this.input(name, backend);
    if (t.rank === 1) return t;
    const r = t.reshape([-1]);
    t.dispose();
    return r;
  }

  /** Reference values of an io tensor. */
  expected(name: string): { shape: number[]; data: Float32Array } {
    return this.io.readFloat32(name);
  }

  /** Absolute path of a model folder named in case.json `models` (or a relative path). */
  modelDir(key: string): string {
    const m = this.json.models?.[key];
    return join(this.dir, m?.path ?? key);
  }

  /** Every tensor name the runner must produce: outputs then intermediates. */
  checkedNames(): string[] {
    return [...Object.keys(this.json.outputs), ...Object.keys(this.json.intermediates ?? {})];
  }

  close(): void { this.io.close(); }
}

/** What a runner produces: reference names -> values (f32, row-major). */
export type Produced = Map<string, Float32Array | Tensor>;

/**
 * A quantity a runner derives from the case's references and checks itself, because the stored tensors'
 * own tolerances cannot resolve it: an optimizer's per-step parameter UPDATES (param after minus param
 * before) are ~lr, far below the max_abs that the parameters themselves are checked with. `tol` comes
 * from the case where it has an entry, else from the runner's documented error model; `atol`, when given,
 * is that model's bound per element and replaces tol.max_abs in the pass rule (tol.max_abs is then its
 * maximum, for the report). NaN never passes.
 */
export interface DerivedCheck {
  name: string;
  got: Float32Array;
  ref: Float32Array;
  /** For messages: the shape of got / ref. */
  shape: readonly number[];
  tol: ToleranceSpec;
  atol?: Float32Array;
}

/** A runner's result when it adds derived checks to the case's outputs. */
export interface RunnerOutput {
  produced: Produced;
  derived: DerivedCheck[];
}

/** A runner computes a case on a backend and returns the values it produced, keyed by io name. */
export type Runner = (c: GoldenCase, backend: Backend) => Promise<Produced | RunnerOutput>;
