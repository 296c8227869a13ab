// AdamW as torch.optim.AdamW (torch 1.13, torch/optim/adamw.py: decoupled weight decay first, then the
// moments, bias corrections as float64 scalars, eps after the bias-corrected sqrt; no amsgrad, not
// maximising), with parameter groups that carry their own hyperparameters, clip_grad_norm_ over every
// group (torch/nn/utils/clip_grad.py, norm_type 2), zero_grad, and the state in f32. The arithmetic is the
// in-place core ops of core_ops/optim.ts: the float64 reference on the CPU backend, one fused WGSL
// dispatch on WebGPU.
//
// Storage layout ("one fused kernel per group"): with `place` given, each group's parameters are copied
// into ONE flat f32 storage [n] and every parameter becomes a view into it at its offset; `place(name,
// view, old)` hands the view to whoever holds the parameter (Module.setParameter, which disposes the old
// tensor). exp_avg and exp_avg_sq are flat [n] storages of the same layout, and the gradients are gathered
// into a flat [n] storage too (one concat per group per step unless `.grad` already is the view into it:
// after a gather, clipGradNorm or zeroGrad({ setToNone: false }) every parameter's `.grad` IS that view, so
// a backward that accumulates into an existing `.grad` in place needs no gather). Then one adamw_step per
// group updates every parameter of the group. A group of one contiguous parameter is its own flat storage.
// Without `place` (or for unnamed Tensor[] groups) each parameter stays where it is and is updated by its
// own adamw_step: same arithmetic, one dispatch per parameter.
//
// Step counts are per update unit (a fused group, or a parameter): torch keeps one per parameter and
// skips parameters whose grad is None; a fused group steps all its parameters together, so a group where
// only some parameters have a gradient is an error (give the others their own group).
// Replacing a parameter tensor behind the optimizer's back (setParameter after construction) leaves the
// optimizer updating the old storage, as replacing a torch Parameter object would: load weights first,
// then build the optimizer, then loadState().

import type { Backend } from '../backend.js';
import { adamwStepOp, clipGradNormOp, concatOp } from '../core_ops/index.js';
import { noGrad } from '../autograd.js';
import { runOp, runOp1 } from '../op_definition.js';
import { persist } from '../scope.js';
import { SafetensorsFile } from '../safetensors.js';
import { encodeSafetensors, type SafetensorsEntry } from '../safetensors_writer.js';
import { formatShape, isContiguousLayout, numel, shapesEqual } from '../shape.js';
import { Tensor } from '../tensor.js';

/** A parameter with the name its state is saved under (a state-dict path). */
export type NamedParameter = readonly [name: string, tensor: Tensor];

export interface AdamWHyperparams {
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay: number;
}

/** torch.optim.AdamW's defaults. */
export const ADAMW_DEFAULTS: Readonly<AdamWHyperparams> = Object.freeze({ lr: 1e-3, betas: [0.9, 0.999] as const, eps: 1e-8, weightDecay: 1e-2 });

/** A parameter group: its parameters and any hyperparameters that differ from the optimizer's. */
export interface AdamWParamGroup extends Partial<AdamWHyperparams> {
  params: readonly NamedParameter[] | readonly Tensor[];
}

export interface AdamWOptions extends Partial<AdamWHyperparams> {
  /**
   * Re-home a named parameter into its group's flat storage: called once per parameter at construction
   * with the view that replaces `old` (e.g. `(name, t) => model.setParameter(name, t)`, which disposes the
   * old tensor). When given, every group is updated by one fused dispatch; when absent, per parameter.
   */
  place?: (name: string, view: Tensor, old: Tensor) => void;
}

/** A group as the optimizer keeps it. Hyperparameters may be changed between steps (lr schedules). */
export interface AdamWGroup extends AdamWHyperparams {
  readonly names: readonly string[];
}

interface Member {
  readonly name: string;
  readonly shape: readonly number[];
  /** Element offset in the unit's flat storages. */
  readonly offset: number;
  /** The parameter as its holder has it (a view into `param` when fused). */
  tensor: Tensor;
}

/** What one adamw_step updates: flat [n] storages and the parameters laid out in them. */
interface UpdateUnit {
  readonly group: number;
  readonly members: Member[];
  readonly size: number;
  param: Tensor;
  expAvg: Tensor;
  expAvgSq: Tensor;
  /** The flat gradient the members' `.grad` views point into, once gathered. */
  grad: Tensor | undefined;
  step: number;
}

/** The magic string in a saved state's metadata. */
export const ADAMW_STATE_FORMAT = 'cnx.adamw.v1';

export class AdamW {
  readonly paramGroups: AdamWGroup[];
  readonly backend: Backend;
  private readonly units: UpdateUnit[] = [];
  private readonly byName = new Map<string, { unit: UpdateUnit; member: Member }>();

  constructor(params: readonly AdamWParamGroup[] | readonly NamedParameter[] | readonly Tensor[], opts: AdamWOptions = {}) {
    const defaults = checkHyperparams('AdamW', {
      lr: opts.lr ?? ADAMW_DEFAULTS.lr, betas: opts.betas ?? ADAMW_DEFAULTS.betas,
      eps: opts.eps ?? ADAMW_DEFAULTS.eps, weightDecay: opts.weightDecay ?? ADAMW_DEFAULTS.weightDecay,
    });
    const specs: readonly AdamWParamGroup[] = params.length > 0 && isGroup(params[0])
      ? (params as readonly AdamWParamGroup[]) : [{ params: params as readonly NamedParameter[] | readonly Tensor[] }];
    if (specs.length === 0 || specs.every((g) => g.params.length === 0)) throw new Error('AdamW: no parameters to optimize');
    const seen = new Set<Tensor>();
    let backend: Backend | undefined;
    // The optimizer's own tensor work (flat storages, views) is never recorded for backward.
    this.paramGroups = noGrad(() => specs.map((spec, g) => {
      const named: NamedParameter[] = spec.params.map((p, i) => (p instanceof Tensor ? [`${g}.${i}`, p] as const : p));
      for (const [name, t] of named) {
        if (this.byName.has(name) || named.filter(([n]) => n === name).length > 1) throw new Error(`AdamW: parameter name '${name}' appears twice`);
        if (seen.has(t)) throw new Error(`AdamW: parameter '${name}' appears in more than one group`);
        seen.add(t);
        if (t.isDisposed) throw new Error(`AdamW: parameter '${name}' is disposed`);
        if (t.dtype !== 'f32') throw new Error(`AdamW: expected f32 parameters (the compute dtype), '${name}' is ${t.dtype}`);
        backend ??= t.backend;
        if (t.backend !== backend) throw new Error(`AdamW: parameters live on different backends (${backend.name}, '${name}' on ${t.backend.name})`);
      }
      const group: AdamWGroup = {
        ...checkHyperparams(`AdamW group ${g}`, {
          lr: spec.lr ?? defaults.lr, betas: spec.betas ?? defaults.betas, eps: spec.eps ?? defaults.eps, weightDecay: spec.weightDecay ?? defaults.weightDecay,
        }),
        names: named.map(([n]) => n),
      };
      const byTensor = spec.params.length > 0 && spec.params[0] instanceof Tensor;
      if (named.length === 0) return group;
      if (opts.place && !byTensor) this.addFusedUnit(g, named, opts.place);
      else for (const p of named) this.addOwnUnit(g, p);
      return group;
    }));
    this.backend = backend!;
  }

  /** Every parameter as its holder now has it (views into the flat storages when fused), in group order. */
  parameters(): NamedParameter[] {
    return this.paramGroups.flatMap((g) => g.names.map((n) => [n, this.byName.get(n)!.member.tensor] as const));
  }

  /**
   * The state of one parameter: its step count and views of its moments (the caller disposes the views).
   * Undefined for a name the optimizer does not have.
   */
  state(name: string): { step: number; expAvg: Tensor; expAvgSq: Tensor } | undefined {
    const e = this.byName.get(name);
    if (!e) return undefined;
    return { step: e.unit.step, expAvg: viewOf(e.unit.expAvg, e.member), expAvgSq: viewOf(e.unit.expAvgSq, e.member) };
  }

  /**
   * One AdamW step of every parameter that has a gradient (torch's optimizer.step()): one in-place
   * adamw_step per fused group (or per parameter). Parameters without a gradient are skipped.
   */
  step(): void {
    noGrad(() => this.stepUnits());
  }

  private stepUnits(): void {
    for (const unit of this.units) {
      const grad = this.flatGrad(unit);
      if (!grad) continue;
      const g = this.paramGroups[unit.group]!;
      unit.step++;
      const outs = runOp(adamwStepOp, [unit.param, grad, unit.expAvg, unit.expAvgSq], {
        step: unit.step, lr: g.lr, beta1: g.betas[0], beta2: g.betas[1], eps: g.eps, weightDecay: g.weightDecay,
      });
      outs.forEach((t) => t.dispose());
    }
  }

  /**
   * torch.nn.utils.clip_grad_norm_(every parameter of every group, maxNorm) (norm_type 2): scales the
   * gradients in place by min(maxNorm / (total + 1e-6), 1) and returns the total norm before clipping, a
   * [1] tensor (the caller disposes it; reading it waits for the device).
   */
  clipGradNorm(maxNorm: number): Tensor {
    if (!(maxNorm > 0)) throw new Error(`clipGradNorm: expected max_norm > 0, found ${maxNorm}`);
    return noGrad(() => this.clipUnits(maxNorm));
  }

  private clipUnits(maxNorm: number): Tensor {
    const grads = this.units.map((u) => this.flatGrad(u)).filter((g): g is Tensor => g !== undefined);
    if (grads.length === 0) return this.backend.zeros([1]);
    const [out, ...scaled] = runOp(clipGradNormOp, grads, { maxNorm });
    scaled.forEach((t) => t.dispose());
    const total = out!.slice(0, 0, 1);
    out!.dispose();
    return total;
  }

  /**
   * Clear the gradients (torch's zero_grad). setToNone (default, torch 2's default): `.grad` becomes
   * undefined. Otherwise (torch 1.13's default) every existing gradient becomes zeros, as views into a fresh
   * flat gradient storage of its update unit.
   */
  zeroGrad({ setToNone = true }: { setToNone?: boolean } = {}): void {
    noGrad(() => this.zeroUnits(setToNone));
  }

  private zeroUnits(setToNone: boolean): void {
    for (const unit of this.units) {
      const had = unit.members.some((m) => m.tensor.grad !== undefined);
      for (const m of unit.members) {
        m.tensor.grad?.dispose();
        m.tensor.grad = undefined;
      }
      unit.grad?.dispose();
      unit.grad = undefined;
      if (setToNone || !had) continue;
      unit.grad = persist(this.backend.zeros([unit.size]));
      for (const m of unit.members) m.tensor.grad = persist(viewOf(unit.grad, m));
    }
  }

  /** Free the moments and flat storages (the parameters' own views stay valid; their holders dispose them). */
  dispose(): void {
    for (const u of this.units) {
      for (const t of [u.param, u.expAvg, u.expAvgSq, u.grad]) t?.dispose();
      u.grad = undefined;
    }
  }

  // ------------------------------------------------------------------ state save / load

  /**
   * The optimizer state as a safetensors file: `<name>.exp_avg` and `<name>.exp_avg_sq` (f32, the
   * parameter's shape) for every parameter, and in the metadata the format tag, every group's
   * hyperparameters and parameter names (`param_groups`, JSON) and every parameter's step count (`steps`,
   * JSON). The parameters themselves are the model's checkpoint, as in torch.
   */
  async saveState(): Promise<Uint8Array> {
    const entries: Record<string, SafetensorsEntry> = {};
    const steps: Record<string, number> = {};
    for (const u of this.units) {
      const [m, v] = [await u.expAvg.data(), await u.expAvgSq.data()];
      for (const member of u.members) {
        const n = numel(member.shape);
        entries[`${member.name}.exp_avg`] = { dtype: 'F32', shape: member.shape, data: m.slice(member.offset, member.offset + n) };
        entries[`${member.name}.exp_avg_sq`] = { dtype: 'F32', shape: member.shape, data: v.slice(member.offset, member.offset + n) };
        steps[member.name] = u.step;
      }
    }
    const groups: SavedGroup[] = this.paramGroups.map((g) => ({ lr: g.lr, betas: [g.betas[0], g.betas[1]], eps: g.eps, weight_decay: g.weightDecay, params: [...g.names] }));
    return encodeSafetensors(entries, { format: ADAMW_STATE_FORMAT, param_groups: JSON.stringify(groups), steps: JSON.stringify(steps) });
  }

  /**
   * Restore a state saved by saveState() for the same parameter groups (same names in the same order):
   * moments, step counts and each group's hyperparameters (as torch's load_state_dict does). Everything is
   * checked before anything changes; errors name the group, parameter or tensor that does not match.
   */
  loadState(source: Uint8Array | SafetensorsFile): void {
    const file = source instanceof SafetensorsFile ? source : SafetensorsFile.fromBytes(source, 'AdamW state');
    const what = 'AdamW.loadState';
    if (file.metadata.format !== ADAMW_STATE_FORMAT) {
      throw new Error(`${what}: expected metadata format '${ADAMW_STATE_FORMAT}', found ${JSON.stringify(file.metadata.format ?? null)}`);
    }
    const groups = parseJson<SavedGroup[]>(what, file.metadata, 'param_groups');
    const steps = parseJson<Record<string, number>>(what, file.metadata, 'steps');
    if (!Array.isArray(groups) || groups.length !== this.paramGroups.length) {
      throw new Error(`${what}: the state has ${Array.isArray(groups) ? groups.length : 'no'} parameter groups, the optimizer ${this.paramGroups.length}`);
    }
    const hyper = groups.map((sg, g) => {
      const names = this.paramGroups[g]!.names;
      const saved = Array.isArray(sg.params) ? sg.params : [];
      const i = names.findIndex((n, k) => saved[k] !== n);
      if (saved.length !== names.length || i >= 0) {
        throw new Error(`${what}: group ${g} has parameters [${names.length}] '${names[i] ?? names[saved.length] ?? ''}'..., ` +
          `the state [${saved.length}] '${saved[i] ?? saved[names.length] ?? ''}'...: not the same parameter groups`);
      }
      return checkHyperparams(`${what}: group ${g}`, { lr: sg.lr, betas: sg.betas, eps: sg.eps, weightDecay: sg.weight_decay });
    });
    const restored = this.units.map((u) => {
      const step = steps[u.members[0]!.name];
      const m = new Float32Array(u.size), v = new Float32Array(u.size);
      for (const member of u.members) {
        if (steps[member.name] !== step || !Number.isInteger(step) || step! < 0) {
          throw new Error(`${what}: parameter '${member.name}' has step ${steps[member.name]}, expected a count >= 0 shared by its update unit (${step})`);
        }
        for (const [key, into] of [['exp_avg', m], ['exp_avg_sq', v]] as const) {
          const name = `${member.name}.${key}`;
          if (!file.has(name)) throw new Error(`${what}: the state has no tensor '${name}'`);
          const t = file.readFloat32(name);
          if (!shapesEqual(t.shape, member.shape)) throw new Error(`${what}: '${name}' is ${formatShape(t.shape)}, the parameter ${formatShape(member.shape)}`);
          into.set(t.data, member.offset);
        }
      }
      return { step: step!, m, v };
    });
    hyper.forEach((h, g) => Object.assign(this.paramGroups[g]!, h));
    this.units.forEach((u, i) => {
      const r = restored[i]!;
      u.expAvg.dispose();
      u.expAvgSq.dispose();
      u.expAvg = persist(this.backend.fromRaw(r.m, [u.size]));
      u.expAvgSq = persist(this.backend.fromRaw(r.v, [u.size]));
      u.step = r.step;
    });
  }

  // ------------------------------------------------------------------ internals

  private addUnit(group: number, members: Member[], param: Tensor): void {
    const size = param.size;
    const unit: UpdateUnit = {
      group, members, size, param: persist(param), grad: undefined, step: 0,
      expAvg: persist(param.backend.zeros([size])), expAvgSq: persist(param.backend.zeros([size])),
    };
    this.units.push(unit);
    for (const member of members) this.byName.set(member.name, { unit, member });
  }

  /** A parameter updated on its own: it is its own flat storage (a [n] view of it). */
  private addOwnUnit(group: number, [name, t]: NamedParameter): void {
    if (!t.isContiguous) {
      throw new Error(`AdamW: parameter '${name}' ${formatShape(t.shape)} is a strided view or has an offset; ` +
        'an unfused update needs it contiguous (pass named parameters and `place` to fuse its group)');
    }
    this.addUnit(group, [{ name, shape: t.shape, offset: 0, tensor: t }], t.reshape([t.size]));
  }

  /** A group in one flat storage: the parameters are copied in and replaced by views (place). */
  private addFusedUnit(group: number, named: readonly NamedParameter[], place: NonNullable<AdamWOptions['place']>): void {
    if (named.length === 1 && named[0]![1].isContiguous) return this.addOwnUnit(group, named[0]!);
    const pieces = named.map(([, t]) => t.reshape([t.size]));
    const flat = runOp1(concatOp, pieces, { axis: 0 });
    pieces.forEach((t) => t.dispose());
    const members: Member[] = [];
    let offset = 0;
    for (const [name, t] of named) {
      const member: Member = { name, shape: t.shape, offset, tensor: t };
      offset += t.size;
      const view = persist(viewOf(flat, member));
      view.requiresGrad = t.requiresGrad;
      view.grad = t.grad;
      t.grad = undefined;
      member.tensor = view;
      members.push(member);
      place(name, view, t);
    }
    this.addUnit(group, members, flat);
  }

  /**
   * The unit's gradient as one flat [n] tensor, or undefined when no member has one. Gathers (one concat)
   * unless every `.grad` already is the view into the unit's flat gradient; after a gather every member's
   * `.grad` is replaced by that view (so clipping in place shows in `.grad`, as in torch).
   */
  private flatGrad(unit: UpdateUnit): Tensor | undefined {
    const grads = unit.members.map((m) => m.tensor.grad);
    if (grads.every((g) => g === undefined)) return undefined;
    unit.members.forEach((m, i) => {
      const g = grads[i];
      if (!g) {
        throw new Error(`AdamW: parameter '${m.name}' has no gradient while others of its fused group do (${unit.members.map((x) => x.name).join(', ')}); ` +
          'a fused group updates all its parameters together: put it in its own group');
      }
      if (g.isDisposed || g.dtype !== 'f32' || !shapesEqual(g.shape, m.shape) || g.backend !== this.backend) {
        throw new Error(`AdamW: the gradient of '${m.name}' must be a live f32 ${formatShape(m.shape)} tensor on ${this.backend.name}, ` +
          `found ${g.isDisposed ? 'a disposed tensor' : `${g.dtype} ${formatShape(g.shape)} on ${g.backend.name}`}`);
      }
    });
    const u = unit.grad;
    if (u && grads.every((g, i) => g!.storage === u.storage && g!.offset === u.offset + unit.members[i]!.offset && isContiguousLayout(g!.shape, g!.strides))) {
      return u;
    }
    let flat: Tensor;
    if (unit.members.length === 1 && grads[0]!.isContiguous) {
      flat = grads[0]!.reshape([unit.size]); // adopt the gradient's storage: no copy
    } else {
      const pieces = grads.map((g) => g!.reshape([g!.size]));
      flat = runOp1(concatOp, pieces, { axis: 0 });
      pieces.forEach((t) => t.dispose());
      for (const m of unit.members) {
        m.tensor.grad!.dispose();
        m.tensor.grad = persist(viewOf(flat, m));
      }
    }
    unit.grad?.dispose();
    unit.grad = persist(flat);
    return flat;
  }
}

/** A group as saveState writes it (torch's param_groups names). */
interface SavedGroup {
  lr: number;
  betas: [number, number];
  eps: number;
  weight_decay: number;
  params: string[];
}

function parseJson<T>(what: string, metadata: Readonly<Record<string, string>>, key: string): T {
  const text = metadata[key];
  if (text === undefined) throw new Error(`${what}: the state's metadata has no '${key}'`);
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(`${what}: metadata '${key}' is not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

function isGroup(x: unknown): x is AdamWParamGroup {
  return typeof x === 'object' && x !== null && !(x instanceof Tensor) && !Array.isArray(x) && 'params' in x;
}

/** A view of a member's elements in a unit's flat storage. */
function viewOf(flat: Tensor, m: { shape: readonly number[]; offset: number }): Tensor {
  return new Tensor(flat.backend, flat.storage, flat.dtype, m.shape, undefined, flat.offset + m.offset);
}

function checkHyperparams(where: string, h: AdamWHyperparams): AdamWHyperparams {
  if (!(h.lr >= 0)) throw new Error(`${where}: expected lr >= 0, found ${h.lr}`);
  if (!(h.eps >= 0)) throw new Error(`${where}: expected eps >= 0, found ${h.eps}`);
  const [b1, b2] = h.betas;
  if (!(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1)) throw new Error(`${where}: expected betas in [0, 1), found (${b1}, ${b2})`);
  if (!(h.weightDecay >= 0)) throw new Error(`${where}: expected weight_decay >= 0, found ${h.weightDecay}`);
  return { lr: h.lr, betas: [b1, b2], eps: h.eps, weightDecay: h.weightDecay };
}
