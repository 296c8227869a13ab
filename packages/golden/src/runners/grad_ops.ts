// grad_ops: autograd of single ops and small diffusers modules (cases grad_conv, grad_norm, grad_attention,
// grad_misc, grad_cross_norm). For every variant of case.json args.variants: y = op(inputs) is computed
// with gradients recorded (@cnx/tensor autograd.ts), then backward(y, gy) with the stored upstream
// gradient `<v>.gy`; the runner returns `<v>.y` and `<v>.grad.<name>` = the gradient of input `<v>.<name>`
// (or, for `<v>.grad.module.<key>`, of the module parameter at state-dict path <key>), i.e. torch's
// autograd.grad(y, [inputs..., params...], gy). Every io input of the variant except gy requires a
// gradient; which gradients are checked is what case.json `outputs` lists.
//
// The op of a variant (`op`) and its arguments come from the variant; where torch's call fixes something
// the variant does not state, it is derived from the tensors (upsampling size and concat axis from gy's
// shape, attention heads from q's (B, H, L, D) layout) or documented as a default below:
//  - conv2d: F.conv2d(x, weight, bias?, stride, padding, groups); `asym_pad`: F.pad(x, (0, 1, 0, 1)) first,
//    i.e. padding [top 0, bottom 1, left 0, right 1] (the VAE's downsampler).
//  - group_norm (+ `silu`: F.silu after it, fused) / layer_norm over the last dim: weight/bias when io has them.
//  - sdpa: softmax(q k^T * scale) v on torch's (B, H, L, D) layout, scale = variant `scale` or D^-0.5.
//  - attention_module: diffusers Attention(query_dim, cross_attention_dim, heads, dim_head) built from the
//    io tensors under `<v>.module` (@cnx/unet Attention); y = attn(hidden_states, encoder_hidden_states).
//  - geglu_ff: diffusers FeedForward(dim, mult, activation_fn='geglu') (@cnx/unet FeedForward).
//  - linear, silu, gelu (exact erf), adaptive_avg_pool (`size`), upsample_nearest (to gy's size),
//    concat (variant `dim`, else the one axis along which a and b stack to gy), softmax (variant `dim`,
//    else the last), mse_loss (mean; gy is the [1] upstream value).
//  - cross_norm: ControlNeXt-SD1.5-Training's injection (pool the control to the sample's size, normalise
//    by per-sample mean / unbiased std, * scale, add): @cnx/controlnext crossNorm with order
//    'pool_then_norm' and eps = variant `eps`, else 1e-12 (the repo's models/unet.py); scale = the io
//    tensor `<v>.scale` ([1], a learned parameter, broadcast over the batch) or the variant's number.

import { crossNorm } from '@cnx/controlnext';
import { backward, formatShape, ops, scope, WeightStore, type Backend, type Tensor } from '@cnx/tensor';
import { Attention, FeedForward, type Module } from '@cnx/unet';
import type { GoldenCase, Produced, Runner } from '../golden_case.js';

interface Variant {
  name: string;
  op: string;
  [key: string]: unknown;
}

/** ControlNeXt-SD1.5-Training models/unet.py: `(std_s / (std_c + 1e-12))`. */
const TRAINING_CROSS_NORM_EPS = 1e-12;

interface Built {
  y: Tensor;
  module?: Module;
}

/** The inputs of a variant by short name (`x`, `weight`, ...), each a leaf that requires a gradient. */
class VariantInputs {
  readonly leaves = new Map<string, Tensor>();

  constructor(private readonly c: GoldenCase, private readonly v: Variant, backend: Backend) {
    const prefix = `${v.name}.`;
    for (const key of Object.keys(c.json.inputs)) {
      if (!key.startsWith(prefix)) continue;
      const short = key.slice(prefix.length);
      if (short === 'gy' || short.startsWith('module.')) continue;
      const t = c.input(key, backend);
      t.requiresGrad = true;
      this.leaves.set(short, t);
    }
  }

  get(name: string): Tensor {
    const t = this.leaves.get(name);
    if (!t) throw new Error(`${this.c.name}: variant '${this.v.name}' (op ${this.v.op}) needs io tensor '${this.v.name}.${name}'`);
    return t;
  }

  optional(name: string): Tensor | undefined {
    return this.leaves.get(name);
  }
}

function num(c: GoldenCase, v: Variant, key: string, fallback?: number): number {
  const x = v[key] ?? fallback;
  if (typeof x !== 'number') throw new Error(`${c.name}: variant '${v.name}' needs a numeric '${key}', found ${JSON.stringify(v[key])}`);
  return x;
}

/** [B, H, L, D] (torch's sdpa layout) -> [B, L, H*D]. */
function headsLast(x: Tensor): Tensor {
  const [B, H, L, D] = x.shape as [number, number, number, number];
  return x.permute([0, 2, 1, 3]).reshape([B, L, H * D]);
}

/** The axis along which a and b concatenate to `out` (variant `dim` when given). */
function concatAxis(c: GoldenCase, v: Variant, a: Tensor, b: Tensor, out: readonly number[]): number {
  if (typeof v.dim === 'number') return v.dim;
  const axes = out.map((_, i) => i).filter((i) => a.shape[i]! + b.shape[i]! === out[i] &&
    out.every((d, j) => j === i || (a.shape[j] === d && b.shape[j] === d)));
  if (axes.length !== 1) {
    throw new Error(`${c.name}: variant '${v.name}': cannot tell the concat axis of ${formatShape(a.shape)} + ${formatShape(b.shape)} -> ${formatShape(out)} (give 'dim')`);
  }
  return axes[0]!;
}

/** y (and the module it came from) for one variant; runs inside a memory scope (temporaries need no dispose). */
function build(c: GoldenCase, v: Variant, ins: VariantInputs, gy: Tensor, backend: Backend): Built {
  switch (v.op) {
    case 'conv2d': {
      const stride = num(c, v, 'stride', 1), p = num(c, v, 'padding', 0);
      const padding = v.asym_pad ? [p, p + 1, p, p + 1] as const : [p, p, p, p] as const;
      return { y: ops.conv2d(ins.get('x'), ins.get('weight'), ins.optional('bias'), { stride, padding, groups: num(c, v, 'groups', 1) }) };
    }
    case 'group_norm':
      return { y: ops.groupNorm(ins.get('x'), num(c, v, 'groups'), ins.optional('weight'), ins.optional('bias'), num(c, v, 'eps'), v.silu === true) };
    case 'layer_norm':
      return { y: ops.layerNorm(ins.get('x'), ins.optional('weight'), ins.optional('bias'), num(c, v, 'eps')) };
    case 'sdpa': {
      const q = ins.get('q'), k = ins.get('k'), val = ins.get('v');
      if (q.rank !== 4 || k.rank !== 4 || val.rank !== 4) {
        throw new Error(`${c.name}: variant '${v.name}' expects q, k, v of shape (B, H, L, D), found ${formatShape(q.shape)}, ${formatShape(k.shape)}, ${formatShape(val.shape)}`);
      }
      const [B, H, Lq, D] = q.shape as [number, number, number, number];
      const scale = typeof v.scale === 'number' ? v.scale : 1 / Math.sqrt(D);
      const o = ops.attention(headsLast(q), headsLast(k), headsLast(val), H, { scale });
      return { y: o.reshape([B, Lq, H, val.shape[3]!]).permute([0, 2, 1, 3]) };
    }
    case 'attention_module': {
      const ws = WeightStore.fromFiles([c.io]).sub(`${v.name}.module`);
      const queryDim = num(c, v, 'query_dim');
      const module = new Attention(ws, backend, {
        queryDim, crossAttentionDim: typeof v.cross_attention_dim === 'number' ? v.cross_attention_dim : undefined,
        heads: num(c, v, 'heads'), dimHead: num(c, v, 'dim_head'), bias: ws.has('to_q.bias'), outBias: ws.has('to_out.0.bias'),
      });
      for (const [, p] of module.namedParameters()) p.requiresGrad = true;
      return { y: module.forward(ins.get('hidden_states'), ins.optional('encoder_hidden_states')), module };
    }
    case 'geglu_ff': {
      const ws = WeightStore.fromFiles([c.io]).sub(`${v.name}.module`);
      const module = new FeedForward(ws, backend, { dim: num(c, v, 'dim'), mult: num(c, v, 'mult', 4) });
      for (const [, p] of module.namedParameters()) p.requiresGrad = true;
      return { y: module.forward(ins.get('x')), module };
    }
    case 'linear':
      return { y: ops.linear(ins.get('x'), ins.get('weight'), ins.optional('bias')) };
    case 'silu':
      return { y: ops.silu(ins.get('x')) };
    case 'gelu':
      return { y: ops.gelu(ins.get('x')) };
    case 'adaptive_avg_pool': {
      const size = v.size as [number, number] | undefined;
      if (!Array.isArray(size) || size.length !== 2) throw new Error(`${c.name}: variant '${v.name}' needs 'size' [h, w]`);
      return { y: ops.adaptiveAvgPool2d(ins.get('x'), size) };
    }
    case 'upsample_nearest':
      return { y: ops.upsampleNearest(ins.get('x'), [gy.shape[2]!, gy.shape[3]!]) };
    case 'concat': {
      const a = ins.get('a'), b = ins.get('b');
      return { y: ops.concat([a, b], concatAxis(c, v, a, b, gy.shape)) };
    }
    case 'softmax':
      return { y: ops.softmax(ins.get('x'), typeof v.dim === 'number' ? v.dim : -1) };
    case 'mse_loss':
      return { y: ops.mseLoss(ins.get('pred'), ins.get('target')) };
    case 'cross_norm': {
      const x = ins.get('sample');
      const st = ins.optional('scale');
      let scale: number | Tensor;
      if (st) {
        if (st.size !== 1 && st.size !== x.shape[0]) throw new Error(`${c.name}: '${v.name}.scale' must be [1] or [${x.shape[0]}], found ${formatShape(st.shape)}`);
        scale = st.size === x.shape[0] ? st.reshape([x.shape[0]!]) : st.reshape([1]).expand([x.shape[0]!]);
      } else scale = num(c, v, 'scale');
      const eps = typeof v.eps === 'number' ? v.eps : TRAINING_CROSS_NORM_EPS;
      return { y: crossNorm(x, ins.get('control'), { eps, order: 'pool_then_norm', scale }) };
    }
    default:
      throw new Error(`${c.name}: variant '${v.name}' has unknown op '${v.op}' (conv2d, group_norm, layer_norm, sdpa, attention_module, ` +
        'geglu_ff, linear, silu, gelu, adaptive_avg_pool, upsample_nearest, concat, softmax, mse_loss, cross_norm)');
  }
}

export const gradOpsRunner: Runner = async (c, backend) => {
  const out: Produced = new Map();
  const wanted = c.checkedNames();
  for (const v of c.args.variants as Variant[]) {
    if (typeof v.name !== 'string' || typeof v.op !== 'string') throw new Error(`${c.name}: a variant needs 'name' and 'op', found ${JSON.stringify(v)}`);
    const ins = new VariantInputs(c, v, backend);
    const gy = c.input(`${v.name}.gy`, backend);
    let built: Built | undefined;
    try {
      built = scope(() => build(c, v, ins, gy, backend));
      const g = gy.size === built.y.size && gy.rank !== built.y.rank ? gy.reshape(built.y.shape) : gy; // 0-dim / [1] upstream
      backward(built.y, g);
      if (g !== gy) g.dispose();
      out.set(`${v.name}.y`, built.y);
      const gradPrefix = `${v.name}.grad.`;
      for (const name of wanted) {
        if (!name.startsWith(gradPrefix)) continue;
        const path = name.slice(gradPrefix.length);
        const leaf = path.startsWith('module.') ? built.module?.getParameter(path.slice('module.'.length)) : ins.leaves.get(path);
        if (!leaf) throw new Error(`${c.name}: '${name}' names no input or module parameter of variant '${v.name}'`);
        if (!leaf.grad) throw new Error(`${c.name}: '${name}': backward gave no gradient (the input does not reach y)`);
        out.set(name, leaf.grad);
        leaf.grad = undefined; // the produced map owns it now
      }
    } catch (e) {
      built?.y.dispose();
      throw e;
    } finally {
      built?.module?.dispose();
      for (const t of ins.leaves.values()) t.dispose();
      gy.dispose();
    }
  }
  return out;
};
