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
   * an error, not a silent reshape.
   */
  setParameter(path: string, t: Tensor): void {
    const { owner, field } = this.resolve(path);
    const old = owner[field];
    if (!(old instanceof Tensor)) throw new Error(`setParameter: '${path}' is not a parameter (found ${describe(old)})`);
    if (old.shape.length !== t.shape.length || old.shape.some((d, i) => d !== t.shape[i])) {
      throw new Error(`setParameter: '${path}' has shape [${old.shape.join(', ')}], the new tensor has [${t.shape.join(', ')}]`);
    }
    if (old !== t) old.dispose();
    owner[field] = t;
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

/**
 * A parameter from a weight source as f32 (compute dtype, DESIGN.md "Tensor core"): the ops take f32,
 * so f16/bf16 checkpoint tensors are widened once at load time, unless the source is a
 * HalfPrecisionWeights view (16-bit storage of matrix and convolution weights, widened by the layers at
 * use); that is the only conversion. Any other dtype (i32 from a source that does not check) is refused:
 * integers are never weights. (WeightStore already refuses I64/I32/U8/BOOL file tensors, naming the file.)
 */
export function loadParameter(ws: WeightSource, name: string, shape: readonly number[], backend: Backend): Tensor {
  const t = ws.get(name, shape, backend);
  if (t.dtype === 'f32') return t;
  if (t.dtype !== 'f16' && t.dtype !== 'bf16') {
    t.dispose();
    throw new Error(`loadParameter: '${name}' has dtype ${t.dtype}, expected f32 (or f16/bf16, widened to f32)`);
  }
  if (ws instanceof HalfPrecisionWeights) return t;
  const f = backend.cast(t, 'f32');
  t.dispose();
  return f;
}

/**
 * 16-bit weight STORAGE (DESIGN.md: f16/bf16 for storage, f32 for compute): weights of rank >= 2 (Linear
 * and convolution kernels, 99+ % of a UNet's parameters) are kept as f16 (or bf16) tensors, converted from
 * the file's dtype when it differs (f32 -> f16 rounds to nearest even); norms, biases and scalars stay f32.
 * Linear / Conv2d (layers/) widen such a weight to f32 for the op that uses it and free the copy
 * right after, so a forward holds one widened weight at a time. What it is for: the 1.5 B-parameter SVD
 * UNet takes 3 GB this way instead of 6 GB. Open the WeightStore with keepDtype so that f16 files are not
 * widened on the way in.
 */
export class HalfPrecisionWeights implements WeightSource {
  constructor(private readonly ws: WeightSource, readonly dtype: 'f16' | 'bf16' = 'f16') {}

  get(path: string, shape: readonly number[], backend: Backend): Tensor {
    const t = this.ws.get(path, shape, backend);
    const want = shape.length >= 2 ? this.dtype : 'f32';
    if (t.dtype === want) return t;
    const c = backend.cast(t, want);
    t.dispose();
    return c;
  }

  has(path: string): boolean { return this.ws.has(path); }
  sub(prefix: string): WeightSource { return new HalfPrecisionWeights(this.ws.sub(prefix), this.dtype); }
}

/** `w` as f32 for an op: itself when already f32, else a widened copy the caller disposes (see widened()). */
export function asComputeWeight(w: Tensor): Tensor {
  return w.dtype === 'f32' ? w : w.backend.cast(w, 'f32');
}
