// The flash-attention kernel and the row softmax (attention.ts) against the CPU reference.
// attention: self (Lq = Lk = 77), cross (Lk = 77), head dims 40 / 80 / 160 (SD1.5), D not a multiple
// of 4 and Dv != D, causal (CLIP), large-magnitude logits; every tile variant (Q staged or read from
// global memory, separate or shared K/V stage) by planning for a 16 KiB workgroup-memory limit too.
// softmax: short and long rows (every workgroup size), rows beyond the 65535-workgroup grid, and
// logits offset by 1e4 with a spread of 1e2 (as golden op_softmax 'large').
//
// Error model (attention): a score is an f32 dot product of D terms of magnitude <= t = scale*max|q|*max|k|,
// error ~ sqrt(D)*eps*t; a score error d moves the output by <= 2*d*max|v|; the P@V sum adds
// ~ sqrt(Lk)*eps*max|v|. Softmax: a sum of L terms, p <= 1: tolFor('f32', L).

import { attentionKernel, type GpuContext } from '@cnx/kernels';
import { CpuBackend, type Backend, ops, runOp1, attentionOp } from '@cnx/tensor';
import { expect } from 'vitest';
import { expectAllClose, randomArray, tolFor, type Tol } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

const cpu = new CpuBackend();
const F32_EPS = 1.19e-7;

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

interface AttnCase { B: number; Lq: number; Lk: number; H: number; D: number; Dv?: number; causal?: boolean; qk?: number }

const maxAbs = (a: Float32Array) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);

async function checkAttention(backend: Backend, ctx: GpuContext, c: AttnCase, seed: number): Promise<string> {
  const Dv = c.Dv ?? c.D;
  const qd = randomArray(c.B * c.Lq * c.H * c.D, seed, c.qk ?? 1);
  const kd = randomArray(c.B * c.Lk * c.H * c.D, seed + 1, c.qk ?? 1);
  const vd = randomArray(c.B * c.Lk * c.H * Dv, seed + 2);
  const scale = 1 / Math.sqrt(c.D);
  const opts = { scale, causal: c.causal };
  const mk = (be: Backend) => [
    be.fromRaw(qd, [c.B, c.Lq, c.H, c.D]), be.fromRaw(kd, [c.B, c.Lk, c.H, c.D]), be.fromRaw(vd, [c.B, c.Lk, c.H, Dv]),
  ] as const;
  const [q, k, v] = mk(backend), [rq, rk, rv] = mk(cpu);
  const tiles = attentionKernel.plan(ctx, q, k, v, opts).params;
  const got = attentionKernel.attention(ctx, q, k, v, opts);
  const ref = runOp1(attentionOp, [rq, rk, rv], opts);
  expect(got.shape).toEqual([c.B, c.Lq, c.H, Dv]);
  const term = scale * maxAbs(qd) * maxAbs(kd), vmax = maxAbs(vd);
  const tol: Tol = { atol: 8 * F32_EPS * (2 * Math.sqrt(c.D) * term + Math.sqrt(c.Lk)) * vmax, rtol: 8 * F32_EPS };
  const variant = `BQ=${tiles.BQ} BK=${tiles.BK} G=${tiles.G} qShared=${tiles.qShared} separateKV=${tiles.separateKV}`;
  expectAllClose(await got.data(), await ref.data(), tol, `attention ${JSON.stringify(c)} (${variant})`);
  [q, k, v, rq, rk, rv, got, ref].forEach((t) => t.dispose());
  return variant;
}

const attnCases: AttnCase[] = [
  { B: 2, Lq: 77, Lk: 77, H: 2, D: 40 },
  { B: 1, Lq: 37, Lk: 77, H: 2, D: 80 },
  { B: 1, Lq: 19, Lk: 13, H: 1, D: 160 },
  { B: 2, Lq: 11, Lk: 29, H: 3, D: 6, Dv: 10 },
  { B: 1, Lq: 77, Lk: 77, H: 2, D: 16, causal: true },
  { B: 1, Lq: 33, Lk: 45, H: 2, D: 16, qk: 30 }, // logits up to ~1e3
];

describeEachBackend('attention kernels', (test) => {
  test('flash attention: self, cross, D = 40 / 80 / 160, odd D, Dv != D, causal, large logits', async (backend) => {
    const ctx = asContext(backend);
    let seed = 1;
    for (const c of attnCases) await checkAttention(backend, ctx, c, seed += 5);
  });

  test('flash attention: tile variants of a 16 KiB workgroup-memory device', async (backend) => {
    const ctx = withLimits(asContext(backend), { maxComputeWorkgroupStorageSize: 16384 });
    const seen = new Set<string>();
    let seed = 50;
    for (const c of [...attnCases.slice(0, 3), { B: 1, Lq: 21, Lk: 10, H: 1, D: 300, Dv: 36 }, { B: 1, Lq: 5, Lk: 7, H: 1, D: 8, Dv: 300 }]) {
      seen.add((await checkAttention(backend, ctx, c, seed += 5)).replace(/^BQ=\d+ BK=\d+ G=\d+ /, ''));
    }
    // Staged and global Q, shared and separate K/V stages were all exercised.
    expect([...seen].sort()).toEqual(expect.arrayContaining(['qShared=true separateKV=false', 'qShared=false separateKV=true']));
  });

  test('softmax: row lengths, 2-D grid, large offsets', async (backend) => {
    const ctx = asContext(backend);
    const cases: [number[], number, number][] = [
      [[3, 5], 1, 0], [[2, 3, 77], 4, 0], [[4, 1000], 3, 0], [[2, 5000], 2, 0], [[6, 1], 1, 0],
      [[70000, 2], 3, 0], // more rows than one grid dimension holds
      [[4, 300], 100, 1e4], // logits 1e4 +- 1e2
      [[3, 64], 1000, -1e4],
    ];
    let seed = 90;
    for (const [shape, spread, offset] of cases) {
      const n = shape.reduce((p, d) => p * d, 1);
      const x = randomArray(n, seed++, spread, offset);
      const g = backend.fromRaw(x, shape), r = cpu.fromRaw(x, shape);
      const got = attentionKernel.softmax(ctx, g), ref = ops.softmax(r);
      expect(got.shape).toEqual(shape);
      expectAllClose(await got.data(), await ref.data(), tolFor('f32', shape[shape.length - 1]!), `softmax [${shape}] spread ${spread} offset ${offset}`);
      [g, r, got, ref].forEach((t) => t.dispose());
    }
  });
}, ['webgpu']);
