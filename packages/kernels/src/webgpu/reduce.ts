// Reductions: sum / mean / max / min over any set of axes of an f32 tensor of any strided layout.
// Shapes: x [d0, ..., dn], axes sorted unique -> out with the reduced dims kept as 1 (contiguous f32).
//
// The tensor is seen as [outer, len]: outer = the kept dims, len = the reduced dims, each with its own
// merged strided layout (so no copy is made for permuted or broadcast views). Variants:
//  - 'serial':    one thread per output, a plain loop over len (short rows, len <= SERIAL_MAX);
//  - 'workgroup': one workgroup of 256 threads per output (or per chunk of a row): each thread strides
//                 over the row, then a shared-memory tree combines the 256 partials;
//  - two passes:  when there are few rows and they are long (e.g. a whole-tensor sum), each row is split
//                 into `parts` chunks reduced by the workgroup variant into partials [outer, parts], then
//                 the partials are reduced the same way. This keeps hundreds of workgroups busy.
// Accumulation is f32 (CPU reference: f64); the error of a tree/blocked sum of n terms grows like
// sqrt(n) eps |terms| for random data, which is what the test tolerance (allclose.ts tolFor) models.
// max/min propagate NaN as the CPU does, with a bit test that fast-math compilers cannot remove.

import { formatShape, numel, type ReduceOp, type Tensor } from '@cnx/tensor';
import { gridFor, type GpuContext } from './context.js';
import { collapseLayouts, stridedOffsetsWgsl, type CollapsedLayout } from './layout.js';
import { memoizeSource } from './pipeline_cache.js';

const WG = 256;
/** Rows up to this length are reduced by one thread each. */
const SERIAL_MAX = 64;
/** Rows longer than this, when there are fewer than FEW_ROWS of them, are split into chunks. */
const SPLIT_LEN = 65536;
const FEW_ROWS = 64;
const CHUNK = 16384;

export interface ReduceParams {
  /** mean runs as sum with a final scale of 1/len. */
  op: 'sum' | 'max' | 'min';
  variant: 'serial' | 'workgroup';
  outerRank: number;
  innerRank: number;
}

function combine(op: ReduceParams['op'], acc: string, e: string): string {
  switch (op) {
    case 'sum': return `${acc} + ${e}`;
    case 'max': return `select(${acc}, ${e}, ${e} > ${acc} || is_nan(${e}))`;
    case 'min': return `select(${acc}, ${e}, ${e} < ${acc} || is_nan(${e}))`;
  }
}

function init(op: ReduceParams['op']): string {
  // Infinities cannot be WGSL constants (const-evaluation rejects them): read them from a private var.
  return op === 'sum' ? '0.0' : op === 'max' ? 'bitcast<f32>(NEG_INF_BITS)' : 'bitcast<f32>(POS_INF_BITS)';
}

export function wgsl(p: ReduceParams): string {
  const header = `// reduce ${p.op} (${p.variant}), outer rank ${p.outerRank}, inner rank ${p.innerRank}
struct U {
  h: vec4<u32>,    // outer count, row length, parts per row, chunk length
  f: vec4<f32>,    // f.x: final scale (1/len for mean)
  base: vec4<u32>, // base.x: element offset of x
  oshape: array<vec4<u32>, 2>,
  ost: array<vec4<u32>, 2>,
  ishape: array<vec4<u32>, 2>,
  ist: array<vec4<u32>, 2>,
};
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> u: U;
var<private> NEG_INF_BITS: u32 = 0xff800000u;
var<private> POS_INF_BITS: u32 = 0x7f800000u;
fn is_nan(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }
${stridedOffsetsWgsl(p.outerRank, 1, { fn: 'outer_off', shape: 'u.oshape', strides: () => 'u.ost', base: () => 'u.base.x' })}
${stridedOffsetsWgsl(p.innerRank, 1, { fn: 'inner_off', shape: 'u.ishape', strides: () => 'u.ist', base: () => '0u' })}
fn finish(v: f32) -> f32 { return ${p.op === 'sum' ? 'v * u.f.x' : 'v'}; }`;
  if (p.variant === 'serial') {
    return `${header}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = gid.x + gid.y * nwg.x * ${WG}u;
  if (o >= u.h.x) { return; }
  let ob = outer_off(o)[0];
  var acc = ${init(p.op)};
  for (var i = 0u; i < u.h.y; i++) {
    let e = x[ob + inner_off(i)[0]];
    acc = ${combine(p.op, 'acc', 'e')};
  }
  out[o] = finish(acc);
}`;
  }
  return `${header}
var<workgroup> sh: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x; // (row, part), uniform across the workgroup
  let in_range = w < u.h.x * u.h.z;
  let o = w / u.h.z;
  let start = (w % u.h.z) * u.h.w;
  let end = min(u.h.y, start + u.h.w);
  var acc = ${init(p.op)};
  if (in_range) {
    let ob = outer_off(o)[0];
    for (var i = start + lid; i < end; i += ${WG}u) {
      let e = x[ob + inner_off(i)[0]];
      acc = ${combine(p.op, 'acc', 'e')};
    }
  }
  sh[lid] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { sh[lid] = ${combine(p.op, 'sh[lid]', 'sh[lid + s]')}; }
    workgroupBarrier();
  }
  if (in_range && lid == 0u) { out[w] = finish(sh[0]); }
}`;
}

function packReduceUniforms(h: readonly number[], scale: number, base: number, outer: CollapsedLayout, inner: CollapsedLayout): ArrayBuffer {
  const buf = new ArrayBuffer(16 * 11);
  const u32 = new Uint32Array(buf), f32 = new Float32Array(buf);
  h.forEach((v, i) => (u32[i] = v));
  f32[4] = scale;
  u32[8] = base;
  outer.shape.forEach((v, i) => (u32[12 + i] = v));
  outer.strides[0]!.forEach((v, i) => (u32[20 + i] = v));
  inner.shape.forEach((v, i) => (u32[28 + i] = v));
  inner.strides[0]!.forEach((v, i) => (u32[36 + i] = v));
  return buf;
}

interface Pass {
  x: Tensor; out: Tensor; op: ReduceParams['op']; variant: ReduceParams['variant'];
  outer: CollapsedLayout; inner: CollapsedLayout; rows: number; len: number; parts: number; scale: number;
}

const source = memoizeSource(wgsl, (p) => `${p.op}|${p.variant}|${p.outerRank}|${p.innerRank}`);

function dispatchPass(ctx: GpuContext, p: Pass): void {
  const groups = p.variant === 'serial' ? Math.ceil(p.rows / WG) : p.rows * p.parts;
  ctx.dispatch({
    label: `reduce ${p.op} ${p.variant}`,
    code: source({ op: p.op, variant: p.variant, outerRank: p.outer.shape.length, innerRank: p.inner.shape.length }),
    bindings: [p.x, p.out],
    uniforms: packReduceUniforms([p.rows, p.len, p.parts, Math.ceil(p.len / p.parts)], p.scale, p.outer.offsets[0]!, p.outer, p.inner),
    workgroups: gridFor(groups, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}

/** Reduce over `axes` (sorted, unique, in range), keeping them as size-1 dims. */
export function reduce(ctx: GpuContext, op: ReduceOp, x: Tensor, axes: readonly number[]): Tensor {
  if (x.dtype !== 'f32') throw new Error(`webgpu reduce ${op}: expected an f32 input, got ${x.toString()} (cast it first)`);
  axes.forEach((a, i) => {
    if (!Number.isInteger(a) || a < 0 || a >= x.rank || (i > 0 && a <= axes[i - 1]!)) {
      throw new Error(`webgpu reduce ${op}: axes must be sorted, unique and in [0, ${x.rank}), got ${formatShape(axes)} for ${x.toString()}`);
    }
  });
  const keptAxes = x.shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const outShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const out = ctx.empty(outShape, 'f32');
  const rows = numel(outShape);
  if (rows === 0) return out;
  const len = numel(axes.map((a) => x.shape[a]!));
  const outer = collapseLayouts(keptAxes.map((a) => x.shape[a]!), [{ strides: keptAxes.map((a) => x.strides[a]!), offset: x.offset }], `reduce ${op}`);
  const inner = collapseLayouts(axes.map((a) => x.shape[a]!), [{ strides: axes.map((a) => x.strides[a]!), offset: 0 }], `reduce ${op}`);
  const kernelOp = op === 'mean' ? 'sum' : op;
  // mean of an empty row is 0/0 = NaN, as on the CPU
  const scale = op === 'mean' ? 1 / len : 1;

  if (len <= SERIAL_MAX) {
    dispatchPass(ctx, { x, out, op: kernelOp, variant: 'serial', outer, inner, rows, len, parts: 1, scale });
    return out;
  }
  const parts = rows < FEW_ROWS && len > SPLIT_LEN ? Math.min(Math.ceil(len / CHUNK), 1024) : 1;
  if (parts === 1) {
    dispatchPass(ctx, { x, out, op: kernelOp, variant: 'workgroup', outer, inner, rows, len, parts: 1, scale });
    return out;
  }
  const partial = ctx.empty([rows, parts], 'f32');
  try {
    dispatchPass(ctx, { x, out: partial, op: kernelOp, variant: 'workgroup', outer, inner, rows, len, parts, scale: 1 });
    const pOuter = collapseLayouts([rows], [{ strides: [parts], offset: 0 }], `reduce ${op}`);
    const pInner = collapseLayouts([parts], [{ strides: [1], offset: 0 }], `reduce ${op}`);
    dispatchPass(ctx, { x: partial, out, op: kernelOp, variant: 'workgroup', outer: pOuter, inner: pInner, rows, len: parts, parts: 1, scale });
  } finally {
    partial.dispose(); // the pool orders its reuse after the dispatches recorded above
  }
  return out;
}
