// Element types. f32 is the compute type everywhere; f16 and bf16 are storage types (weights) that
// kernels widen to f32 when they read them (see DESIGN.md, "Tensor core"). i32 carries integer data
// (token ids, indices). Node 20 has no Float16Array, so f16/bf16 live in Uint16Array bit patterns.

export type DType = 'f32' | 'f16' | 'bf16' | 'i32';

export const DTYPE_BYTES: Readonly<Record<DType, number>> = { f32: 4, f16: 2, bf16: 2, i32: 4 };

/** The typed array that holds raw elements of each dtype. */
export type RawArray = Float32Array<ArrayBufferLike> | Uint16Array<ArrayBufferLike> | Int32Array<ArrayBufferLike>;

export function rawArrayFor(dtype: DType, length: number): RawArray {
  switch (dtype) {
    case 'f32': return new Float32Array(length);
    case 'f16': case 'bf16': return new Uint16Array(length);
    case 'i32': return new Int32Array(length);
  }
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE binary16 bits -> number. Exact, including subnormals, infinities and NaN. */
export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // subnormal (and signed zero)
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** number -> IEEE binary16 bits, round to nearest even (as numpy/torch `.half()`), overflow to inf. */
export function numberToF16Bits(x: number): number {
  // Round through f32 first (the source of every conversion here is f32 data).
  f32Scratch[0] = x;
  const f = u32Scratch[0]!;
  const sign = (f >>> 16) & 0x8000;
  const exp = (f >>> 23) & 0xff;
  let mant = f & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf or (quiet) NaN
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    // Subnormal half (or zero): shift the implicit-1 mantissa right, round to nearest even.
    if (e < -10) return sign; // underflows to signed zero
    mant |= 0x800000;
    const shift = 14 - e; // 24-bit mantissa -> (10 + e)-bit field
    const half = 1 << (shift - 1);
    const rem = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rem > half || (rem === half && (h & 1))) h += 1;
    return sign | h; // a carry into the exponent field yields the smallest normal, as it should
  }
  const rem = mant & 0x1fff;
  let h = (e << 10) | (mant >>> 13);
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h += 1; // may carry into exponent (-> inf): correct
  return sign | h;
}

/** bfloat16 bits -> number: the top 16 bits of an f32. */
export function bf16BitsToNumber(b: number): number {
  u32Scratch[0] = (b & 0xffff) << 16;
  return f32Scratch[0]!;
}

/** number -> bfloat16 bits, round to nearest even (as torch `.bfloat16()`); NaN stays NaN. */
export function numberToBf16Bits(x: number): number {
  f32Scratch[0] = x;
  const f = u32Scratch[0]!;
  if ((f & 0x7f800000) === 0x7f800000 && (f & 0x7fffff)) return ((f >>> 16) | 0x40) & 0xffff; // quiet NaN
  const rounded = f + 0x7fff + ((f >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** Every f16 bit pattern decoded (256 KiB, built on first use): decoding is a table lookup. */
let f16Table: Float32Array | undefined;
function f16DecodeTable(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToNumber(h);
  }
  return f16Table;
}

/** Decode raw elements of any dtype into f32 values. */
export function toFloat32(raw: RawArray, dtype: DType): Float32Array {
  if (dtype === 'f32') return raw as Float32Array;
  const out = new Float32Array(raw.length);
  if (dtype === 'f16') {
    // The CPU references decode 16-bit weights on every call (f16 weight storage): keep it cheap.
    const table = f16DecodeTable();
    for (let i = 0; i < raw.length; i++) out[i] = table[raw[i]!]!;
  } else if (dtype === 'bf16') {
    const bits = new Uint32Array(out.buffer); // bf16 is the top half of an f32
    for (let i = 0; i < raw.length; i++) bits[i] = (raw[i]! & 0xffff) << 16;
  } else for (let i = 0; i < raw.length; i++) out[i] = raw[i]!;
  return out;
}

/** Encode f32 values as raw elements of `dtype` (rounding to nearest even for f16/bf16, truncating for i32). */
export function fromFloat32(values: ArrayLike<number>, dtype: DType): RawArray {
  const out = rawArrayFor(dtype, values.length);
  if (dtype === 'f16') for (let i = 0; i < values.length; i++) out[i] = numberToF16Bits(values[i]!);
  else if (dtype === 'bf16') for (let i = 0; i < values.length; i++) out[i] = numberToBf16Bits(values[i]!);
  else for (let i = 0; i < values.length; i++) out[i] = values[i]!;
  return out;
}
