// Module: the base of every model class. The module tree IS the checkpoint key tree (DESIGN.md, "Models
// and weights"): a Tensor field is a parameter named by the field, a Module field a sub-tree, and an array
// of Modules a torch nn.ModuleList / nn.Sequential whose index is the next key segment. So the parameter
// `down_blocks.0.resnets.1.conv1.weight` is `unet.down_blocks[0].resnets[1].conv1.weight`, and the
// walk below yields exactly the torch state-dict names.

import { Tensor, type Backend, type WeightSource } from '@cnx/tensor';
import type { HookEpilogue } from './hooks.js';

export abstract class Module {
  /** Every parameter as [state-dict path, tensor], depth first in field order. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [name, value] of Object.entries(this)) collectParameters(value, prefix + name, out);
    return out;
  }

  /** The parameter at a state-dict path; errors name the path and the first segment not found. */
  getParameter(path: string): Tensor {
    const { owner, field } = this.resolve(path);
    const t = owner[field];
    if (!(t instanceof Tensor)) throw new Error(`getParameter: '${path}' is not a parameter (found ${describe(t)})`);
    return t;
  }

  /**
   * Replace the parameter at `path` and dispose the old tensor (LoRA merge, ControlNeXt partial UNet
   * weights). The new tensor must have the old one's shape: a checkpoint for another configuration is
   * an error, not a silent reshape. An f32 tensor replacing a 16-bit parameter is rounded to the
   * parameter's dtype (the model's weight storage, @cnx/tensor weight_dtype.ts).
   */
  setParameter(path: string, t: Tensor): void {
    const { owner, field } = this.resolve(path);
    const old = owner[field];
    if (!(old instanceof Tensor)) throw new Error(`setParameter: '${path}' is not a parameter (found ${describe(old)})`);
    if (old.shape.length !== t.shape.length || old.shape.some((d, i) => d !== t.shape[i])) {
      throw new Error(`setParameter: '${path}' has shape [${old.shape.join(', ')}], the new tensor has [${t.shape.join(', ')}]`);
    }
    if (old === t) return;
    // A parameter keeps its storage dtype (16-bit weights stay 16-bit after a LoRA merge or a partial
    // UNet replacement computed in f32).
    const stored = t.dtype !== old.dtype && (old.dtype === 'f16' || old.dtype === 'bf16') && t.dtype === 'f32' ? t.backend.cast(t, old.dtype) : t;
    if (stored !== t) t.dispose();
    old.dispose();
    owner[field] = stored;
  }

  /**
   * Make the parameter at `path` f32: a 16-bit one (f16 weight storage) is replaced by its exact f32
   * widening, an f32 one is left as it is. For parameters that are trained: the optimizer keeps f32 master
   * weights (AdamW refuses 16-bit ones), while the frozen rest of the model stays 16-bit, as in diffusers'
   * mixed-precision training. Returns the parameter.
   */
  widenParameter(path: string): Tensor {
    const { owner, field } = this.resolve(path);
    const old = owner[field];
    if (!(old instanceof Tensor)) throw new Error(`widenParameter: '${path}' is not a parameter (found ${describe(old)})`);
    if (old.dtype === 'f32') return old;
    const wide = old.backend.cast(old, 'f32');
    old.dispose();
    owner[field] = wide;
    return wide;
  }

  /**
   * The sub-module at a state-dict module path ('down_blocks.1.resnets.0'; '' = this module); errors name
   * the first segment not found and the children that exist there.
   */
  getModule(path: string): Module {
    if (path === '') return this;
    let node: unknown = this;
    const segs = path.split('.');
    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i]!;
      const next: unknown = Array.isArray(node) ? node[Number(seg)] : node instanceof Module ? (node as unknown as Record<string, unknown>)[seg] : undefined;
      if (!(next instanceof Module) && !(Array.isArray(next) && i < segs.length - 1)) {
        const where = segs.slice(0, i).join('.');
        throw new Error(`no module at '${segs.slice(0, i + 1).join('.')}' (found ${describe(next)}; children of '${where || '<root>'}': ${childNames(node).join(', ') || 'none'})`);
      }
      node = next;
    }
    return node as Module;
  }

  /**
   * For forward hooks (hooks.ts): when this module's forward fuses an epilogue that its caller asked for
   * through the arguments (a residual add, an activation), return the arguments without it and the
   * epilogue, so that a hook sees the module's own output. undefined: nothing fused (the default).
   */
  hookEpilogue(_args: readonly unknown[]): HookEpilogue | undefined {
    return undefined;
  }

  /** Total number of parameter elements. */
  numParameters(): number {
    return this.namedParameters().reduce((n, [, t]) => n + t.size, 0);
  }

  /** Dispose every parameter (the module is unusable afterwards). */
  dispose(): void {
    for (const [, t] of this.namedParameters()) t.dispose();
  }

  private resolve(path: string): { owner: Record<string, unknown>; field: string } {
    const segs = path.split('.');
    let node: unknown = this;
    for (let i = 0; i < segs.length - 1; i++) {
      const seg = segs[i]!;
      const next: unknown = Array.isArray(node) ? node[Number(seg)] : node instanceof Module ? (node as unknown as Record<string, unknown>)[seg] : undefined;
      if (!(next instanceof Module) && !Array.isArray(next)) {
        throw new Error(`no module at '${segs.slice(0, i + 1).join('.')}' (resolving parameter '${path}'; found ${describe(next)})`);
      }
      node = next;
    }
    if (!(node instanceof Module)) throw new Error(`'${path}': the parent of a parameter must be a module, found ${describe(node)}`);
    return { owner: node as unknown as Record<string, unknown>, field: segs[segs.length - 1]! };
  }
}

function collectParameters(value: unknown, path: string, out: [string, Tensor][]): void {
  if (value instanceof Tensor) out.push([path, value]);
  else if (value instanceof Module) out.push(...value.namedParameters(path + '.'));
  else if (Array.isArray(value)) value.forEach((v, i) => { if (v instanceof Module) out.push(...v.namedParameters(`${path}.${i}.`)); });
}

/** Names of the sub-modules (and module lists) of a module or list, for error messages. */
function childNames(node: unknown): string[] {
  if (Array.isArray(node)) return node.map((_, i) => String(i));
  if (!(node instanceof Module)) return [];
  return Object.entries(node).filter(([, v]) => v instanceof Module || (Array.isArray(v) && v.some((x) => x instanceof Module))).map(([k]) => k);
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v instanceof Tensor) return `a tensor [${v.shape.join(', ')}]`;
  if (v instanceof Module) return `module ${v.constructor.name}`;
  if (Array.isArray(v)) return `a list of ${v.length}`;
  return typeof v;
}

/** How loadParameter may store a parameter. */
export interface LoadParameterOptions {
  /**
   * The op that reads this parameter widens 16-bit storage on load (matmul's b, conv2d's weight, the
   * norms' weight and bias: @cnx/tensor weight_dtype.ts). Then, on a backend whose weightDtype is 'f16',
   * the parameter is stored in 16 bits: an f16/bf16 checkpoint tensor as it is, an f32 one rounded to
   * f16 once. Without it (or with weightDtype 'f32') the parameter is f32.
   */
  half?: boolean;
}

/**
 * A parameter from a weight source in its storage dtype: f32 (the compute dtype, DESIGN.md "Tensor
 * core"; f16/bf16 checkpoint tensors are widened once at load), or 16-bit where `opts.half` allows it and
 * the backend stores weights in f16 (see LoadParameterOptions). Any other dtype (i32 from a source that
 * does not check) is refused: integers are never weights. (WeightStore already refuses I64/I32/U8/BOOL
 * file tensors, naming the file.)
 */
export function loadParameter(ws: WeightSource, name: string, shape: readonly number[], backend: Backend, opts: LoadParameterOptions = {}): Tensor {
  const t = ws.get(name, shape, backend);
  if (t.dtype !== 'f32' && t.dtype !== 'f16' && t.dtype !== 'bf16') {
    t.dispose();
    throw new Error(`loadParameter: '${name}' has dtype ${t.dtype}, expected f32 (or f16/bf16, widened to f32)`);
  }
  const keep16 = opts.half === true && backend.weightDtype === 'f16';
  const want = keep16 ? (t.dtype === 'f16' || t.dtype === 'bf16' ? t.dtype : 'f16') : 'f32';
  if (t.dtype === want) return t;
  const f = backend.cast(t, want);
  t.dispose();
  return f;
}
