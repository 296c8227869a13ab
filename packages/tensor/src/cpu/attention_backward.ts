// Float64 CPU reference of multi-head scaled-dot-product attention forward WITH its saved statistic
// (the per-row logsumexp) and of its backward. These define what the WebGPU kernels
// (packages/kernels/src/attention.ts with `lse`, packages/kernels/src/attention_backward.ts) compute.
//
// Layout (heads interleaved in the channel dim, as torch Linear outputs are; as Backend.attention):
//   q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv], o and dO [B, Lq, H, Dv], lse [B, Lq, H].
// Forward: S = scale * q.k^T (keys j > i masked when causal), P = softmax_j(S), o = P v,
//   lse_i = log sum_j exp(S_ij)  (natural log of the SCALED scores; the online-softmax m + log(l)).
// Backward (FlashAttention-2, Dao 2023, algorithm 2; the softmax VJP as torch's
// _softmax_backward_data: dS = P * (dP - sum_j dP * P)):
//   P_ij   = exp(S_ij - lse_i)                 recomputed from the saved lse, no second softmax
//   Delta_i = sum_d dO_id * o_id               (= sum_j P_ij dP_ij, the softmax VJP row term)
//   dv_j  = sum_i P_ij dO_i,   dP_ij = dO_i . v_j,   dS_ij = P_ij (dP_ij - Delta_i)
//   dq_i  = scale * sum_j dS_ij k_j,   dk_j = scale * sum_i dS_ij q_i
// The backward takes o and lse as inputs (what the forward saved) exactly as the kernels do.
// Everything accumulates in float64 (JS numbers); the f32 entry points round once on store, the
// *F64 ones return the float64 values (finite-difference gradient checks differentiate those).
// Pure functions over contiguous row-major arrays: no Tensor, no backend.

import type { HostArray } from './host_array.js';

export interface AttentionReferenceOptions {
  /** Multiplier of q.k (usually 1/sqrt(D)). */
  scale: number;
  /** Mask keys j > i. Requires Lq === Lk (as Backend.attention). */
  causal?: boolean;
}

export interface AttentionDims { B: number; Lq: number; Lk: number; H: number; D: number; Dv: number }

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

function checkData(what: string, t: HostArray, shape: readonly number[]): void {
  const n = shape.reduce((p, d) => p * d, 1);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]) || t.data.length !== n) {
    throw new Error(`attention: expected ${what} ${fmt(shape)} (${n} values), found ${fmt(t.shape)} with ${t.data.length} values`);
  }
}

/** Dimensions of q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv]; throws naming expected vs found. */
export function attentionDims(q: HostArray, k: HostArray, v: HostArray, opts: AttentionReferenceOptions): AttentionDims {
  if (q.shape.length !== 4 || k.shape.length !== 4 || v.shape.length !== 4) {
    throw new Error(`attention: expected q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv], found q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)}`);
  }
  const [B, Lq, H, D] = q.shape as [number, number, number, number];
  const Lk = k.shape[1]!, Dv = v.shape[3]!;
  checkData('q', q, [B, Lq, H, D]);
  checkData('k', k, [B, Lk, H, D]);
  checkData('v', v, [B, Lk, H, Dv]);
  if (opts.causal && Lq !== Lk) throw new Error(`attention: causal masking needs Lq === Lk, found Lq=${Lq}, Lk=${Lk}`);
  if (Lq === 0 || Lk === 0) throw new Error(`attention: empty sequence (Lq=${Lq}, Lk=${Lk})`);
  return { B, Lq, H, D, Lk, Dv };
}

/** Scaled scores of query row (b, i, h) against keys 0..jEnd-1, into s. */
function scores(Q: ArrayLike<number>, K: ArrayLike<number>, d: AttentionDims, b: number, i: number, h: number, jEnd: number, scale: number, s: Float64Array): void {
  const qo = ((b * d.Lq + i) * d.H + h) * d.D;
  for (let j = 0; j < jEnd; j++) {
    const ko = ((b * d.Lk + j) * d.H + h) * d.D;
    let dot = 0;
    for (let c = 0; c < d.D; c++) dot += Q[qo + c]! * K[ko + c]!;
    s[j] = dot * scale;
  }
}

/** Forward in float64: out [B, Lq, H, Dv] and lse [B, Lq, H]. */
export function attentionForwardF64(q: HostArray, k: HostArray, v: HostArray, opts: AttentionReferenceOptions): { out: HostArray<Float64Array>; lse: HostArray<Float64Array> } {
  const d = attentionDims(q, k, v, opts);
  const { B, Lq, H, Lk, Dv } = d;
  const V = v.data;
  const out = new Float64Array(B * Lq * H * Dv), lse = new Float64Array(B * Lq * H);
  const s = new Float64Array(Lk);
  for (let b = 0; b < B; b++) for (let i = 0; i < Lq; i++) for (let h = 0; h < H; h++) {
    const jEnd = opts.causal ? i + 1 : Lk;
    scores(q.data, k.data, d, b, i, h, jEnd, opts.scale, s);
    let m = -Infinity;
    for (let j = 0; j < jEnd; j++) if (s[j]! > m) m = s[j]!;
    let z = 0;
    for (let j = 0; j < jEnd; j++) z += s[j] = Math.exp(s[j]! - m);
    const row = (b * Lq + i) * H + h;
    lse[row] = m + Math.log(z);
    for (let c = 0; c < Dv; c++) {
      let acc = 0;
      for (let j = 0; j < jEnd; j++) acc += s[j]! * V[((b * Lk + j) * H + h) * Dv + c]!;
      out[row * Dv + c] = acc / z;
    }
  }
  return { out: { shape: [B, Lq, H, Dv], data: out }, lse: { shape: [B, Lq, H], data: lse } };
}

/** Forward, f32 in and out (float64 inside): out [B, Lq, H, Dv] and the logsumexp lse [B, Lq, H]. */
export function attentionForwardWithLse(q: HostArray<Float32Array>, k: HostArray<Float32Array>, v: HostArray<Float32Array>, opts: AttentionReferenceOptions): { out: HostArray<Float32Array>; lse: HostArray<Float32Array> } {
  const r = attentionForwardF64(q, k, v, opts);
  return { out: { shape: r.out.shape, data: Float32Array.from(r.out.data) }, lse: { shape: r.lse.shape, data: Float32Array.from(r.lse.data) } };
}

export interface AttentionGrads<T extends ArrayLike<number>> { dq: HostArray<T>; dk: HostArray<T>; dv: HostArray<T> }

/**
 * Backward in float64 from the saved forward output o [B, Lq, H, Dv] and logsumexp lse [B, Lq, H]
 * and the upstream gradient dO [B, Lq, H, Dv]: dq [B, Lq, H, D], dk [B, Lk, H, D], dv [B, Lk, H, Dv].
 */
export function attentionBackwardF64(
  q: HostArray, k: HostArray, v: HostArray, o: HostArray, dO: HostArray, lse: HostArray, opts: AttentionReferenceOptions,
): AttentionGrads<Float64Array> {
  const d = attentionDims(q, k, v, opts);
  const { B, Lq, H, D, Lk, Dv } = d;
  checkData('o', o, [B, Lq, H, Dv]);
  checkData('dO', dO, [B, Lq, H, Dv]);
  checkData('lse', lse, [B, Lq, H]);
  const Q = q.data, K = k.data, V = v.data, O = o.data, G = dO.data, LSE = lse.data;
  const dq = new Float64Array(B * Lq * H * D), dk = new Float64Array(B * Lk * H * D), dv = new Float64Array(B * Lk * H * Dv);
  const p = new Float64Array(Lk);
  for (let b = 0; b < B; b++) for (let i = 0; i < Lq; i++) for (let h = 0; h < H; h++) {
    const row = (b * Lq + i) * H + h;
    const jEnd = opts.causal ? i + 1 : Lk;
    scores(Q, K, d, b, i, h, jEnd, opts.scale, p);
    for (let j = 0; j < jEnd; j++) p[j] = Math.exp(p[j]! - LSE[row]!);
    let delta = 0;
    for (let c = 0; c < Dv; c++) delta += G[row * Dv + c]! * O[row * Dv + c]!;
    for (let j = 0; j < jEnd; j++) {
      const kr = (b * Lk + j) * H + h;
      let dp = 0;
      for (let c = 0; c < Dv; c++) {
        dp += G[row * Dv + c]! * V[kr * Dv + c]!;
        dv[kr * Dv + c] = dv[kr * Dv + c]! + p[j]! * G[row * Dv + c]!;
      }
      const ds = p[j]! * (dp - delta) * opts.scale;
      for (let c = 0; c < D; c++) {
        dq[row * D + c] = dq[row * D + c]! + ds * K[kr * D + c]!;
        dk[kr * D + c] = dk[kr * D + c]! + ds * Q[row * D + c]!;
      }
    }
  }
  return { dq: { shape: [B, Lq, H, D], data: dq }, dk: { shape: [B, Lk, H, D], data: dk }, dv: { shape: [B, Lk, H, Dv], data: dv } };
}

/** Backward, f32 in and out (float64 inside); see attentionBackwardF64. */
export function attentionBackward(
  q: HostArray<Float32Array>, k: HostArray<Float32Array>, v: HostArray<Float32Array>, o: HostArray<Float32Array>,
  dO: HostArray<Float32Array>, lse: HostArray<Float32Array>, opts: AttentionReferenceOptions,
): AttentionGrads<Float32Array> {
  const r = attentionBackwardF64(q, k, v, o, dO, lse, opts);
  const f = (t: HostArray<Float64Array>) => ({ shape: t.shape, data: Float32Array.from(t.data) });
  return { dq: f(r.dq), dk: f(r.dk), dv: f(r.dv) };
}
