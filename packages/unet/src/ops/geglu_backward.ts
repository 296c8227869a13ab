// Float64 CPU reference of GEGLU (diffusers models/activations.py GEGLU: the projection's output is
// chunked in two along the last dim, out = a * gelu(gate) with torch's exact erf GELU) and its backward.
// Defines what packages/kernels/src/geglu_backward.ts computes.
//   h [..., 2F] = [a | gate], out [..., F] = a * gelu(gate),  gelu(x) = x * Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2
//   dh[..., :F] = dout * gelu(gate)
//   dh[..., F:] = dout * a * gelu'(gate),  gelu'(x) = Phi(x) + x * phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
// (torch's GeluBackward for approximate='none' uses the same closed form.)
// Float64 throughout; the f32 entry points round once on store.

import { erf, type HostArray } from '@cnx/tensor';

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;
const INV_SQRT_2PI = 0.3989422804014327;

/** Standard normal CDF Phi(x). */
const cdf = (x: number) => 0.5 * (1 + erf(x / Math.SQRT2));
/** d/dx of x * Phi(x). */
export function geluErfDerivative(x: number): number {
  return cdf(x) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x);
}

function halfWidth(h: HostArray): number {
  const D2 = h.shape[h.shape.length - 1];
  const n = h.shape.reduce((p, d) => p * d, 1);
  if (D2 === undefined || D2 % 2 !== 0 || h.data.length !== n) {
    throw new Error(`geglu: expected h [..., 2F] with an even last dim and ${n} values, found ${fmt(h.shape)} with ${h.data.length} values`);
  }
  return D2 / 2;
}

/** Forward in float64: [..., 2F] -> [..., F]. */
export function gegluForwardF64(h: HostArray): HostArray<Float64Array> {
  const F = halfWidth(h);
  const rows = F === 0 ? 0 : h.data.length / (2 * F);
  const out = new Float64Array(rows * F);
  for (let r = 0; r < rows; r++) for (let j = 0; j < F; j++) {
    const a = h.data[r * 2 * F + j]!, x = h.data[r * 2 * F + F + j]!;
    out[r * F + j] = a * x * cdf(x);
  }
  return { shape: [...h.shape.slice(0, -1), F], data: out };
}

/** Backward in float64: dh [..., 2F] from h [..., 2F] and dout [..., F]. */
export function gegluBackwardF64(h: HostArray, dout: HostArray): HostArray<Float64Array> {
  const F = halfWidth(h);
  const outShape = [...h.shape.slice(0, -1), F];
  if (dout.shape.length !== outShape.length || dout.shape.some((d, i) => d !== outShape[i]) || dout.data.length !== h.data.length / 2) {
    throw new Error(`geglu backward: expected dout ${fmt(outShape)}, found ${fmt(dout.shape)} with ${dout.data.length} values`);
  }
  const rows = F === 0 ? 0 : h.data.length / (2 * F);
  const dh = new Float64Array(h.data.length);
  for (let r = 0; r < rows; r++) for (let j = 0; j < F; j++) {
    const a = h.data[r * 2 * F + j]!, x = h.data[r * 2 * F + F + j]!, g = dout.data[r * F + j]!;
    dh[r * 2 * F + j] = g * x * cdf(x);
    dh[r * 2 * F + F + j] = g * a * geluErfDerivative(x);
  }
  return { shape: [...h.shape], data: dh };
}

/** Backward, f32 in and out (float64 inside). */
export function gegluBackward(h: HostArray<Float32Array>, dout: HostArray<Float32Array>): HostArray<Float32Array> {
  const r = gegluBackwardF64(h, dout);
  return { shape: r.shape, data: Float32Array.from(r.data) };
}
