// Attention forward-with-logsumexp (attention.ts, attentionWithLse) and the FlashAttention-2 style
// backward (attention_backward.ts) on WebGPU against the float64 CPU references
// (@cnx/tensor attentionForwardWithLse / attentionBackward), plus a plan-only check that SD1.5's largest
// attention (4096 x 4096 tokens x 8 heads, D = 40) fits the DEFAULT WebGPU limits.
// Shapes: batch > 1, Lq != Lk, D and Dv not multiples of 4 (scalar bindings), Dv != D, causal, one
// query row, larger-magnitude logits; every tile variant (q/dO and k/v staged or read from global memory,
// G not dividing the tiles) through explicit tiles, and the tiles chosen for a 16 KiB device at
// Lq = Lk = 256 with D = 40 (SD1.5's head dim; many tiles per workgroup loop).
// The backward is fed the SAME o and lse (the CPU reference's) on both sides, so it is checked alone.
//
// Error model. lse: an f32 logsumexp of scores with error ~ sqrt(D) eps t each (t = scale max|q| max|k|)
// plus the sum's sqrt(Lk) eps: atol = 8 eps (sqrt(D) t + sqrt(Lk) + |lse|). Backward: every gradient
// term carries P = exp(S - lse), whose relative error is the exponent's absolute error
// e_P = eps (sqrt(D) t + |lse|); dS = P (dP - Delta) adds the f32 dot products dP = dO.v and
// Delta = dO.o, absolute error e_d = sqrt(Dv) eps max|dO| (max|v| + max|o|). A gradient element sums
// L_red such terms (Lq for dk/dv, Lk for dq) and the f32 sum adds sqrt(L_red) eps relative. So with M the
// largest |gradient| of that output and m the largest |term factor| (scale max|q| or max|k| for dk/dq,
// max|dO| for dv): atol = 8 [ (e_P + sqrt(L_red) eps) M + e_d m sqrt(L_red) ], rtol = 8 eps.

import { attentionBackwardKernel, attentionKernel, type GpuContext } from '@cnx/kernels';
import { SafetensorsFile, attentionBackward, attentionForwardWithLse, type Backend, type HostArray } from '@cnx/tensor';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectAllClose, randomArray, type Tol } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';

const EPS = 1.19e-7;
const golden = GOLDEN_ROOT;
const maxAbs = (a: ArrayLike<number>) => { let m = 0; for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!)); return m; };

function asContext(backend: Backend): GpuContext {
  if (!('dispatch' in backend)) throw new Error(`expected a WebGPU backend (GpuContext), found ${backend.name}`);
  return backend as unknown as GpuContext;
}

/** The same context planning for other device limits (to reach every tile variant). */
function withLimits(ctx: GpuContext, overrides: Partial<Record<keyof GPUSupportedLimits, number>>): GpuContext {
  const base = ctx.limits as unknown as Record<string, number>;
  const limits = new Proxy({}, { get: (_t, k: string) => (k in overrides ? overrides[k as keyof GPUSupportedLimits] : base[k]) });
  return {
    device: ctx.device, features: ctx.features, limits: limits as GPUSupportedLimits,
    empty: (s, d) => ctx.empty(s, d), buffer: (t) => ctx.buffer(t), dispatch: (spec) => ctx.dispatch(spec),
  };
}

/** WebGPU's default limits (what an adapter must at least offer, and what a device gets unless it asks). */
const DEFAULT_LIMITS = {
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupsPerDimension: 65535,
  maxStorageBufferBindingSize: 134217728,
  maxStorageBuffersPerShaderStage: 8,
};

interface Case { B: number; Lq: number; Lk: number; H: number; D: number; Dv: number; causal?: boolean; qk?: number }
type Tiles = attentionBackwardKernel.AttentionBackwardTiles;

const host = (shape: number[], data: Float32Array): HostArray<Float32Array> => ({ shape, data });

async function checkBackward(backend: Backend, ctx: GpuContext, c: Case, seed: number, tiles?: { dkdv?: Tiles; dq?: Tiles }): Promise<string> {
  const qs = [c.B, c.Lq, c.H, c.D], ks = [c.B, c.Lk, c.H, c.D], vs = [c.B, c.Lk, c.H, c.Dv], os = [c.B, c.Lq, c.H, c.Dv];
  const n = (s: number[]) => s.reduce((p, d) => p * d, 1);
  const q = randomArray(n(qs), seed, c.qk ?? 1), k = randomArray(n(ks), seed + 1, c.qk ?? 1), v = randomArray(n(vs), seed + 2);
  const dO = randomArray(n(os), seed + 3);
  const opts = { scale: 1 / Math.sqrt(c.D), causal: c.causal };
  const fwd = attentionForwardWithLse(host(qs, q), host(ks, k), host(vs, v), opts);
  const ref = attentionBackward(host(qs, q), host(ks, k), host(vs, v), fwd.out, host(os, dO), fwd.lse, opts);
  const g = [backend.fromRaw(q, qs), backend.fromRaw(k, ks), backend.fromRaw(v, vs), backend.fromRaw(fwd.out.data, os), backend.fromRaw(dO, os), backend.fromRaw(fwd.lse.data, fwd.lse.shape)] as const;
  const plan = attentionBackwardKernel.planAttentionBackward({ B: c.B, Lq: c.Lq, Lk: c.Lk, H: c.H, D: c.D, Dv: c.Dv }, opts, ctx.limits, tiles);
  const got = attentionBackwardKernel.attentionBackward(ctx, ...g, opts, tiles);
  const t = opts.scale * maxAbs(q) * maxAbs(k), lmax = maxAbs(fwd.lse.data);
  const eP = EPS * (Math.sqrt(c.D) * t + lmax), eD = Math.sqrt(c.Dv) * EPS * maxAbs(dO) * (maxAbs(v) + maxAbs(fwd.out.data));
  const variant = (p: attentionBackwardKernel.AttentionBackwardPassPlan) => `BQ=${p.params.BQ} BK=${p.params.BK} G=${p.params.G} qShared=${p.params.qShared} kvShared=${p.params.kvShared}`;
  const what = `${JSON.stringify(c)} dkdv(${variant(plan.dkdv)}) dq(${variant(plan.dq)})`;
  const outs: [string, Float32Array, Float32Array, number, number, number[]][] = [
    ['dq', await got.dq.data(), ref.dq.data, c.Lk, opts.scale * maxAbs(k), qs],
    ['dk', await got.dk.data(), ref.dk.data, c.Lq, opts.scale * maxAbs(q), ks],
    ['dv', await got.dv.data(), ref.dv.data, c.Lq, maxAbs(dO), vs],
  ];
  expect(got.dq.shape).toEqual(qs);
  expect(got.dk.shape).toEqual(ks);
  expect(got.dv.shape).toEqual(vs);
  for (const [name, gv, rv, Lred, m] of outs) {
    const tol: Tol = { atol: 8 * ((eP + Math.sqrt(Lred) * EPS) * maxAbs(rv) + eD * m * Math.sqrt(Lred)), rtol: 8 * EPS };
    if (process.env.CNX_TOL_REPORT) {
      let worst = 0;
      for (let i = 0; i < rv.length; i++) worst = Math.max(worst, Math.abs(gv[i]! - rv[i]!) / (tol.atol + tol.rtol * Math.abs(rv[i]!)));
      console.log(`${name} ${what}: worst |d|/tol = ${worst.toFixed(4)}`);
    }
    expectAllClose(gv, rv, tol, `${name} ${what}`);
  }
  [...g, got.dq, got.dk, got.dv].forEach((x) => x.dispose());
  return what;
}

describe('attention backward plan: SD1.5 at 512x512 inside the default WebGPU limits', () => {
  for (const [B, L, H, D] of [[1, 4096, 8, 40], [2, 4096, 8, 40], [2, 1024, 8, 80], [2, 256, 8, 160]] as const) {
    it(`B=${B} Lq=Lk=${L} H=${H} D=${D}: every binding < 128 MiB, workgroup memory <= 16 KiB, <= 8 storage buffers`, () => {
      const scale = 1 / Math.sqrt(D);
      for (const causal of [false, true]) {
        const plan = attentionBackwardKernel.planAttentionBackward({ B, Lq: L, Lk: L, H, D, Dv: D }, { scale, causal }, DEFAULT_LIMITS);
        for (const [name, bytes] of Object.entries(plan.bindingBytes)) {
          expect(bytes, name).toBeLessThan(DEFAULT_LIMITS.maxStorageBufferBindingSize);
          expect(bytes, `${name} is O(L), not O(Lq*Lk)`).toBeLessThanOrEqual(4 * B * L * H * D);
        }
        for (const pass of [plan.dkdv, plan.dq]) {
          expect(pass.stageBytes).toBeLessThanOrEqual(DEFAULT_LIMITS.maxComputeWorkgroupStorageSize);
          expect(pass.storageBuffers).toBeLessThanOrEqual(DEFAULT_LIMITS.maxStorageBuffersPerShaderStage);
          expect((pass.params.stage === 'dkdv' ? pass.params.BK : pass.params.BQ) * pass.params.G).toBeLessThanOrEqual(DEFAULT_LIMITS.maxComputeInvocationsPerWorkgroup);
          expect(Math.max(...pass.workgroups)).toBeLessThanOrEqual(DEFAULT_LIMITS.maxComputeWorkgroupsPerDimension);
        }
        // the generated WGSL declares exactly the planned workgroup memory
        for (const pass of [plan.dkdv, plan.dq]) {
          const declared = [...attentionBackwardKernel.wgsl(pass.params).matchAll(/var<workgroup> \w+: array<(vec4<f32>|f32), (\d+)>/g)]
            .reduce((s, m) => s + (m[1] === 'f32' ? 4 : 16) * Number(m[2]), 0);
          expect(declared).toBe(pass.stageBytes);
        }
      }
      // and the forward that saves lse uses the same tiles as the plain forward (16 KiB: 32 x 32 at D = 40)
      const ft = attentionKernel.chooseTiles(D, D, DEFAULT_LIMITS.maxComputeWorkgroupStorageSize, DEFAULT_LIMITS.maxComputeInvocationsPerWorkgroup);
      expect(attentionKernel.attentionStageBytes(ft)).toBeLessThanOrEqual(DEFAULT_LIMITS.maxComputeWorkgroupStorageSize);
    });
  }

  it('the forward saves lse only when asked: one extra binding and one store per row', () => {
    const t = attentionKernel.chooseTiles(40, 40, 16384, 256);
    const base = { ...t, causal: false, vecQK: true, vecV: true };
    const plain = attentionKernel.wgsl({ ...base, lse: false }), withLse = attentionKernel.wgsl({ ...base, lse: true });
    expect(plain).not.toContain('LSE');
    expect(plain).toContain('@group(0) @binding(4) var<uniform> u: Uniforms;');
    expect(withLse).toContain('@group(0) @binding(4) var<storage, read_write> LSE: array<f32>;');
    expect(withLse).toContain('@group(0) @binding(5) var<uniform> u: Uniforms;');
    expect(withLse.replace(/.*LSE.*\n/g, '').replace('@binding(5) var<uniform>', '@binding(4) var<uniform>')).toBe(plain);
  });

  it('names the limit that does not fit', () => {
    expect(() => attentionBackwardKernel.planAttentionBackward({ B: 64, Lq: 4096, Lk: 4096, H: 8, D: 40, Dv: 40 }, { scale: 1 }, DEFAULT_LIMITS))
      .toThrow(/q needs 335544320 bytes, above maxStorageBufferBindingSize=134217728/);
    expect(() => attentionBackwardKernel.planAttentionBackward({ B: 1, Lq: 5, Lk: 6, H: 1, D: 4, Dv: 4 }, { scale: 1, causal: true }, DEFAULT_LIMITS))
      .toThrow(/causal masking needs Lq === Lk/);
  });
});

describeEachBackend('attention backward kernels', (test) => {
  // Most cases plan for WebGPU's default 16 KiB of workgroup memory (the limit the issue targets; smaller
  // tiles also compile much faster on SwiftShader); one case per kernel uses this device's own limits.
  test('forward with lse: same output as attention(), lse against the CPU reference', async (backend) => {
    const own = asContext(backend), ctx16 = withLimits(own, { maxComputeWorkgroupStorageSize: 16384 });
    let seed = 1;
    for (const [c, ctx] of [
      [{ B: 2, Lq: 13, Lk: 29, H: 3, D: 8, Dv: 8 }, ctx16], [{ B: 1, Lq: 21, Lk: 21, H: 2, D: 6, Dv: 10, causal: true }, ctx16],
      [{ B: 1, Lq: 7, Lk: 40, H: 1, D: 40, Dv: 40, qk: 4 }, own],
    ] as [Case, GpuContext][]) {
      const qs = [c.B, c.Lq, c.H, c.D], ks = [c.B, c.Lk, c.H, c.D], vs = [c.B, c.Lk, c.H, c.Dv];
      const q = randomArray(qs.reduce((a, b) => a * b), seed++, c.qk ?? 1), k = randomArray(ks.reduce((a, b) => a * b), seed++, c.qk ?? 1);
      const v = randomArray(vs.reduce((a, b) => a * b), seed++);
      const opts = { scale: 1 / Math.sqrt(c.D), causal: c.causal };
      const gq = backend.fromRaw(q, qs), gk = backend.fromRaw(k, ks), gv = backend.fromRaw(v, vs);
      const { out, lse } = attentionKernel.attentionWithLse(ctx, gq, gk, gv, opts);
      const plain = attentionKernel.attention(ctx, gq, gk, gv, opts);
      expect(lse.shape).toEqual([c.B, c.Lq, c.H]);
      expect(await out.data()).toEqual(await plain.data()); // the lse store changes nothing else
      const ref = attentionForwardWithLse(host(qs, q), host(ks, k), host(vs, v), opts);
      const t = opts.scale * maxAbs(q) * maxAbs(k);
      expectAllClose(await lse.data(), ref.lse.data, { atol: 8 * EPS * (Math.sqrt(c.D) * t + Math.sqrt(c.Lk) + maxAbs(ref.lse.data)), rtol: 8 * EPS }, `lse ${JSON.stringify(c)}`);
      [gq, gk, gv, out, lse, plain].forEach((x) => x.dispose());
    }
  });

  test('backward: batch, Lq != Lk, odd D / Dv, causal, one query row, sharper logits (chosen tiles)', async (backend) => {
    const own = asContext(backend), ctx16 = withLimits(own, { maxComputeWorkgroupStorageSize: 16384 });
    let seed = 10;
    for (const [c, ctx] of [
      // (few distinct D / Dv / causal: each is a new pipeline, and SwiftShader compiles one in 5-20 s)
      [{ B: 2, Lq: 19, Lk: 23, H: 2, D: 8, Dv: 8 }, ctx16],
      [{ B: 1, Lq: 17, Lk: 20, H: 1, D: 8, Dv: 8, qk: 3 }, ctx16],
      [{ B: 1, Lq: 33, Lk: 17, H: 1, D: 6, Dv: 10 }, ctx16],
      [{ B: 1, Lq: 1, Lk: 9, H: 2, D: 6, Dv: 10 }, ctx16],
      [{ B: 1, Lq: 21, Lk: 21, H: 2, D: 8, Dv: 8, causal: true }, ctx16],
      [{ B: 2, Lq: 70, Lk: 45, H: 1, D: 8, Dv: 8 }, own],
    ] as [Case, GpuContext][]) await checkBackward(backend, ctx, c, seed += 5);
  });

  test('backward: every tile variant (staged or global q/dO and k/v, G not dividing the tiles)', async (backend) => {
    const ctx = asContext(backend);
    let seed = 40;
    const seen = new Set<string>();
    for (const [qShared, kvShared] of [[true, true], [true, false], [false, true], [false, false]] as const) {
      for (const c of [{ B: 1, Lq: 19, Lk: 14, H: 2, D: 7, Dv: 9 }, { B: 2, Lq: 12, Lk: 12, H: 1, D: 8, Dv: 4, causal: true }] as Case[]) {
        const t = (BQ: number, BK: number, G: number): Tiles => ({ D: c.D, Dv: c.Dv, BQ, BK, G, qShared, kvShared });
        await checkBackward(backend, ctx, c, seed += 5, { dkdv: t(8, 4, 3), dq: t(4, 8, 3) });
        seen.add(`${qShared}/${kvShared}`);
      }
    }
    expect(seen.size).toBe(4);
  });

  test('backward: SD1.5 head dim D = 40 at Lq = Lk = 256 with the tiles of a 16 KiB device', async (backend) => {
    const ctx = withLimits(asContext(backend), { maxComputeWorkgroupStorageSize: 16384 });
    const what = await checkBackward(backend, ctx, { B: 1, Lq: 256, Lk: 256, H: 2, D: 40, Dv: 40 }, 90);
    expect(what).toContain('dkdv(BQ=16 BK=16');
  });

  test('golden grad_attention (torch autograd): GPU forward with lse, then GPU backward, case tolerances', async (backend) => {
    const ctx = withLimits(asContext(backend), { maxComputeWorkgroupStorageSize: 16384 });
    const dir = join(golden, 'grad_attention');
    const meta = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8')) as {
      args: { variants: { name: string; op: string }[] };
      tolerance: Record<string, { max_abs: number; rel_l2: number }>;
    };
    const io = SafetensorsFile.open(join(dir, 'io.safetensors'));
    try {
      for (const v of meta.args.variants.filter((x) => x.op === 'sdpa')) {
        // torch layout [B, H, L, D] -> ours [B, L, H, D]
        const read = (n: string) => {
          const t = io.readFloat32(`${v.name}.${n}`);
          const [B, H, L, D] = t.shape as [number, number, number, number];
          const out = new Float32Array(t.data.length);
          for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let l = 0; l < L; l++) for (let d = 0; d < D; d++) {
            out[((b * L + l) * H + h) * D + d] = t.data[((b * H + h) * L + l) * D + d]!;
          }
          return backend.fromRaw(out, [B, L, H, D]);
        };
        const [q, k, vv, gy] = [read('q'), read('k'), read('v'), read('gy')];
        const opts = { scale: 1 / Math.sqrt(q.shape[3]!) };
        const { out, lse } = attentionKernel.attentionWithLse(ctx, q, k, vv, opts);
        const g = attentionBackwardKernel.attentionBackward(ctx, q, k, vv, out, gy, lse, opts);
        for (const [name, got] of [['y', out], ['grad.q', g.dq], ['grad.k', g.dk], ['grad.v', g.dv]] as const) {
          const ref = read(name);
          const [gv, rv] = [await got.data(), await ref.data()];
          const tol = meta.tolerance[`${v.name}.${name}`]!;
          let worst = 0, num = 0, den = 0;
          for (let i = 0; i < rv.length; i++) {
            const d = gv[i]! - rv[i]!;
            worst = Math.max(worst, Number.isNaN(d) ? Infinity : Math.abs(d));
            num += d * d;
            den += rv[i]! * rv[i]!;
          }
          expect(worst, `${v.name}.${name} max_abs`).toBeLessThanOrEqual(tol.max_abs);
          expect(Math.sqrt(num / den), `${v.name}.${name} rel_l2`).toBeLessThanOrEqual(tol.rel_l2);
          ref.dispose();
        }
        [q, k, vv, gy, out, lse, g.dq, g.dk, g.dv].forEach((t) => t.dispose());
      }
    } finally {
      io.close();
    }
  });
}, ['webgpu']);
