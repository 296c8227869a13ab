// Layout kernels: contiguous (strided copy), cast (f32/f16/bf16/i32 conversions), concat; and the strided
// indexing that these and the elementwise family share.
//
// Strided indexing: operands of one kernel share a logical shape [d0, ..., d(R-1)] (R <= 6 after merging
// dims that are contiguous in every operand and dropping size-1 dims) and each has its own element
// strides (0 for broadcast) and element offset. These go in the uniform block; the generated code is
// specialised only on R and the operand count, so one pipeline serves every shape of that rank.
//
// Storage of 2-byte dtypes (f16, bf16): buffers are arrays of u32 words holding two elements each
// (element 2k in the low half, 2k+1 in the high half, little-endian). Kernels that write 2-byte
// elements own whole output words (one thread per word, two elements), so no two threads write the
// same word. Conversions are done on bit patterns with round-to-nearest-even, exactly as the host
// conversions in @cnx/tensor's dtype.ts (numberToF16Bits, numberToBf16Bits), including subnormals,
// infinities and NaN; no float op touches the data, so adapters that flush denormals cannot change it.
//
// Shapes: contiguous(x: any layout) -> same shape, row-major; cast(x: any layout, dtype) -> same shape;
// concat(xs: contiguous, equal rank, equal dtype, axis) -> shape with dims along `axis` summed.

import { DTYPE_BYTES, formatShape, numel, type DType, type Shape, type Tensor } from '@cnx/tensor';
import { gridFor, type GpuContext } from './context.js';
import { memoizeSource } from './pipeline_cache.js';

export const MAX_RANK = 6;
export const WORKGROUP = 256;

// ---------------------------------------------------------------- strided indexing (shared)

export interface OperandLayout { strides: readonly number[]; offset: number }

export interface CollapsedLayout {
  /** Merged logical shape, rank 1..MAX_RANK. */
  shape: number[];
  /** Per operand: strides over the merged shape. */
  strides: number[][];
  offsets: number[];
}

/**
 * Merge adjacent dims that are contiguous in every operand and drop size-1 dims, so that e.g. a
 * contiguous [2, 3, 4] becomes [24]. Throws when the merged rank exceeds MAX_RANK.
 */
export function collapseLayouts(shape: Shape, operands: readonly OperandLayout[], what: string): CollapsedLayout {
  const dims: { size: number; strides: number[] }[] = [];
  shape.forEach((size, d) => {
    if (size !== 1) dims.push({ size, strides: operands.map((o) => o.strides[d]!) });
  });
  const merged: { size: number; strides: number[] }[] = [];
  for (const dim of dims) {
    const last = merged[merged.length - 1];
    if (last && last.strides.every((s, k) => s === dim.strides[k]! * dim.size)) {
      last.size *= dim.size;
      last.strides = dim.strides;
    } else {
      merged.push({ ...dim, strides: [...dim.strides] });
    }
  }
  if (merged.length === 0) merged.push({ size: 1, strides: operands.map(() => 0) });
  if (merged.length > MAX_RANK) {
    throw new Error(`${what}: layout of shape ${formatShape(shape)} needs ${merged.length} strided dims after merging; at most ${MAX_RANK} are supported`);
  }
  return {
    shape: merged.map((d) => d.size),
    strides: operands.map((_, k) => merged.map((d) => d.strides[k]!)),
    offsets: operands.map((o) => o.offset),
  };
}

const LANE = ['x', 'y', 'z', 'w'] as const;
function field(name: string, i: number): string {
  return `${name}[${Math.floor(i / 4)}].${LANE[i % 4]}`;
}

/**
 * The uniform block of strided kernels: header words, 4 f32 scalars, operand offsets (<= 4 operands),
 * the merged shape and each operand's strides, all as vec4 (uniform arrays need 16-byte elements).
 */
export function stridedUniformWgsl(operands: number): string {
  if (operands > 4) throw new Error(`strided kernels take at most 4 operands, got ${operands}`);
  return `struct U {
  h: vec4<u32>,    // h.x = element (or word) count, h.yzw kernel-specific
  f: vec4<f32>,    // kernel-specific scalars
  off: vec4<u32>,  // element offset of each operand
  shape: array<vec4<u32>, 2>,
${Array.from({ length: operands }, (_, k) => `  st${k}: array<vec4<u32>, 2>,`).join('\n')}
};
@group(0) @binding(BINDING_U) var<uniform> u: U;`;
}

/**
 * WGSL function `<fn>(i: u32) -> array<u32, K>`: the storage offset, in elements, of row-major element i
 * of a merged shape in each of K operands. Field names default to the block of stridedUniformWgsl;
 * other kernels (reduce) pass their own shape/stride arrays and base offsets.
 */
export function stridedOffsetsWgsl(rank: number, operands: number, names: {
  fn?: string; shape?: string; strides?: (k: number) => string; base?: (k: number) => string;
} = {}): string {
  const fn = names.fn ?? 'offsets';
  const shape = names.shape ?? 'u.shape';
  const strides = names.strides ?? ((k: number) => `u.st${k}`);
  const base = names.base ?? ((k: number) => `u.off.${LANE[k]}`);
  const lines: string[] = [];
  for (let d = rank - 1; d >= 0; d--) {
    const coord = d === 0 ? 'r' : `r % ${field(shape, d)}`;
    lines.push(`  let c${d} = ${coord};`);
    if (d > 0) lines.push(`  r = r / ${field(shape, d)};`);
    for (let k = 0; k < operands; k++) lines.push(`  o[${k}] += c${d} * ${field(strides(k), d)};`);
  }
  return `fn ${fn}(i: u32) -> array<u32, ${operands}> {
  var o: array<u32, ${operands}>;
${Array.from({ length: operands }, (_, k) => `  o[${k}] = ${base(k)};`).join('\n')}
  var r = i;
${lines.join('\n')}
  return o;
}`;
}

/** Pack the strided uniform block (matches stridedUniformWgsl). */
export function packStridedUniforms(layout: CollapsedLayout, header: readonly number[], floats: readonly number[] = []): ArrayBuffer {
  const K = layout.strides.length;
  const buf = new ArrayBuffer(16 * (5 + 2 * K));
  const u32 = new Uint32Array(buf), f32 = new Float32Array(buf);
  header.forEach((v, i) => (u32[i] = v));
  floats.forEach((v, i) => (f32[4 + i] = v));
  layout.offsets.forEach((v, i) => (u32[8 + i] = v));
  layout.shape.forEach((v, i) => (u32[12 + i] = v));
  layout.strides.forEach((st, k) => st.forEach((v, i) => (u32[20 + 8 * k + i] = v)));
  return buf;
}

/** Workgroup grid for `threads` invocations of WORKGROUP each, split over x/y past the per-dim limit. */
export function threadGrid(ctx: GpuContext, threads: number): [number, number] {
  return gridFor(Math.ceil(threads / WORKGROUP), ctx.limits.maxComputeWorkgroupsPerDimension);
}

/** WGSL prelude of a 1-D kernel: `let i = ...;` from the 2-D grid of threadGrid(). */
export const THREAD_INDEX = `@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>`;
export const THREAD_INDEX_LET = `let i = gid.x + gid.y * nwg.x * ${WORKGROUP}u;`;

// ---------------------------------------------------------------- dtype conversions (WGSL, on bits)

/** WGSL helpers: f32 bits <-> f16/bf16 bits, mirroring dtype.ts. */
export const CONVERT_WGSL = `
// binary16 bits -> binary32 bits, exact (subnormal halves are normal floats).
fn f16_to_f32_bits(h: u32) -> u32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0x1fu) { return sign | 0x7f800000u | (m << 13u); }
  if (e == 0u) {
    if (m == 0u) { return sign; }
    let lead = firstLeadingBit(m); // 0..9: value = m * 2^-24 = 2^(lead-24) * (1.fraction)
    return sign | ((lead + 103u) << 23u) | ((m << (23u - lead)) & 0x7fffffu);
  }
  return sign | ((e + 112u) << 23u) | (m << 13u);
}
// binary32 bits -> binary16 bits, round to nearest even, overflow to inf, NaN stays (quiet) NaN.
fn f32_to_f16_bits(f: u32) -> u32 {
  let sign = (f >> 16u) & 0x8000u;
  let exp = i32((f >> 23u) & 0xffu);
  var mant = f & 0x7fffffu;
  if (exp == 0xff) { return sign | 0x7c00u | select(0u, 0x200u, mant != 0u); }
  let e = exp - 127 + 15;
  if (e >= 0x1f) { return sign | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return sign; }
    mant = mant | 0x800000u;
    let shift = u32(14 - e);
    let half = 1u << (shift - 1u);
    let rem = mant & ((1u << shift) - 1u);
    var h = mant >> shift;
    if (rem > half || (rem == half && (h & 1u) == 1u)) { h = h + 1u; }
    return sign | h;
  }
  let rem = mant & 0x1fffu;
  var h = (u32(e) << 10u) | (mant >> 13u);
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) == 1u)) { h = h + 1u; }
  return sign | h;
}
// binary32 bits -> bfloat16 bits, round to nearest even; NaN stays (quiet) NaN.
fn f32_to_bf16_bits(f: u32) -> u32 {
  if ((f & 0x7f800000u) == 0x7f800000u && (f & 0x7fffffu) != 0u) { return ((f >> 16u) | 0x40u) & 0xffffu; }
  return ((f + 0x7fffu + ((f >> 16u) & 1u)) >> 16u) & 0xffffu;
}
`;

function isHalf(dtype: DType): boolean {
  return DTYPE_BYTES[dtype] === 2;
}

/** WGSL expression: f32 bits of the element at element offset `off` of `src` (dtype `dt`). */
function loadBits(dt: DType, off: string): string {
  switch (dt) {
    case 'f32': return `src[${off}]`;
    case 'i32': return `bitcast<u32>(f32(bitcast<i32>(src[${off}])))`;
    case 'f16': return `f16_to_f32_bits(half_at(${off}))`;
    case 'bf16': return `(half_at(${off}) << 16u)`;
  }
}

/** WGSL expression: the raw element of dtype `dt` (16 low bits for halves) from f32 bits `b`. */
function storeBits(dt: DType, b: string): string {
  switch (dt) {
    case 'f32': return b;
    case 'i32': return `bitcast<u32>(i32(bitcast<f32>(${b})))`;
    case 'f16': return `f32_to_f16_bits(${b})`;
    case 'bf16': return `f32_to_bf16_bits(${b})`;
  }
}

// ---------------------------------------------------------------- convert: contiguous + cast

export interface ConvertParams {
  rank: number;
  from: DType;
  to: DType;
}

/**
 * Strided read of `from` elements, contiguous write of `to` elements. from === to copies bits.
 * 4-byte output: one thread per element; 2-byte output: one thread per output word (2 elements).
 */
export function convertWgsl(p: ConvertParams): string {
  const same = p.from === p.to;
  const elem = (off: string): string => {
    if (same) return isHalf(p.from) ? `half_at(${off})` : `src[${off}]`;
    return storeBits(p.to, loadBits(p.from, off));
  };
  const body = isHalf(p.to)
    ? `  let n = u.h.x;
  if (2u * i >= n) { return; }
  var word = ${elem('offsets(2u * i)[0]')};
  if (2u * i + 1u < n) { word = word | (${elem('offsets(2u * i + 1u)[0]')} << 16u); }
  dst[i] = word;`
    : `  if (i >= u.h.x) { return; }
  dst[i] = ${elem('offsets(i)[0]')};`;
  return `// convert ${p.from} -> ${p.to}, strided rank ${p.rank}
${stridedUniformWgsl(1).replace('BINDING_U', '2')}
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
fn half_at(e: u32) -> u32 { return (src[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu; }
${same ? '' : CONVERT_WGSL}
${stridedOffsetsWgsl(p.rank, 1)}
@compute @workgroup_size(${WORKGROUP})
fn main(${THREAD_INDEX}) {
  ${THREAD_INDEX_LET}
${body}
}`;
}

const convertSource = memoizeSource(convertWgsl, (p) => `${p.rank}|${p.from}|${p.to}`);

function convert(ctx: GpuContext, x: Tensor, to: DType, label: string): Tensor {
  const out = ctx.empty(x.shape, to);
  const n = x.size;
  if (n === 0) return out;
  const layout = collapseLayouts(x.shape, [x], label);
  const threads = isHalf(to) ? Math.ceil(n / 2) : n;
  ctx.dispatch({
    label,
    code: convertSource({ rank: layout.shape.length, from: x.dtype, to }),
    bindings: [x, out],
    uniforms: packStridedUniforms(layout, [n]),
    workgroups: threadGrid(ctx, threads),
  });
  return out;
}

/** A row-major copy of any layout, any dtype (bit-exact). */
export function contiguous(ctx: GpuContext, x: Tensor): Tensor {
  return convert(ctx, x, x.dtype, `contiguous ${x.dtype}`);
}

/** Convert any layout to `dtype` (contiguous result). f32 -> f16/bf16 rounds to nearest even. */
export function cast(ctx: GpuContext, x: Tensor, dtype: DType): Tensor {
  return convert(ctx, x, dtype, `cast ${x.dtype}->${dtype}`);
}

// ---------------------------------------------------------------- concat

export interface ConcatParams {
  /** true for 2-byte dtypes: one thread per output word, merging halves from the current input. */
  halves: boolean;
}

/**
 * One dispatch per input. Output viewed as [outer, rowLen] with rowLen = total * inner; input k as
 * [outer, len] with len = size_k * inner, written at column `col`.
 * 4-byte: thread per input element. 2-byte: thread per output word; halves outside the current input's
 * columns keep what earlier dispatches wrote.
 */
export function concatWgsl(p: ConcatParams): string {
  const body = p.halves
    ? `  // h = (words, len, rowLen, col); elements of this word: 2i, 2i+1
  if (i >= u.h.x) { return; }
  var word = dst[i];
  for (var k = 0u; k < 2u; k++) {
    let e = 2u * i + k;
    let o = e / u.h.z;
    let c = e % u.h.z;
    if (c >= u.h.w && c < u.h.w + u.h.y) {
      let s = o * u.h.y + (c - u.h.w);
      let v = (src[s >> 1u] >> ((s & 1u) * 16u)) & 0xffffu;
      word = (word & ~(0xffffu << (16u * k))) | (v << (16u * k));
    }
  }
  dst[i] = word;`
    : `  // h = (n, len, rowLen, col)
  if (i >= u.h.x) { return; }
  let o = i / u.h.y;
  dst[o * u.h.z + u.h.w + (i % u.h.y)] = src[i];`;
  return `// concat (${p.halves ? '2-byte, per output word' : '4-byte, per input element'})
struct U { h: vec4<u32> };
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> u: U;
@compute @workgroup_size(${WORKGROUP})
fn main(${THREAD_INDEX}) {
  ${THREAD_INDEX_LET}
${body}
}`;
}

const concatSource = memoizeSource(concatWgsl, (p) => String(p.halves));

export function concat(ctx: GpuContext, xs: readonly Tensor[], axis: number): Tensor {
  const first = xs[0];
  if (!first) throw new Error('concat: no tensors given');
  for (const x of xs) {
    if (x.rank !== first.rank || x.dtype !== first.dtype || x.shape.some((d, i) => i !== axis && d !== first.shape[i])) {
      throw new Error(`concat along axis ${axis}: ${formatShape(x.shape)} ${x.dtype} does not match ${formatShape(first.shape)} ${first.dtype}`);
    }
    if (!x.isContiguous) throw new Error(`concat: inputs must be contiguous, got ${x.toString()} with strides ${formatShape(x.strides)}`);
  }
  const shape = [...first.shape];
  shape[axis] = xs.reduce((s, x) => s + x.shape[axis]!, 0);
  const out = ctx.empty(shape, first.dtype);
  const inner = numel(shape.slice(axis + 1));
  const rowLen = shape[axis]! * inner;
  const halves = isHalf(first.dtype);
  const code = concatSource({ halves });
  const total = numel(shape);
  let col = 0;
  for (const x of xs) {
    const len = x.shape[axis]! * inner;
    if (len > 0 && total > 0) {
      const threads = halves ? Math.ceil(total / 2) : x.size;
      ctx.dispatch({
        label: `concat ${first.dtype}`,
        code,
        bindings: [x, out],
        uniforms: new Uint32Array([threads, len, rowLen, col]),
        workgroups: threadGrid(ctx, threads),
      });
    }
    col += len;
  }
  return out;
}
