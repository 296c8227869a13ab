// Winograd F(2x2, 3x3) convolution of the fast CPU backend (packages/kernels/src/wasm/winograd_kernels.ts)
// against the float64 CPU reference's conv2d, on shapes that exercise its edges: odd and even output
// sizes (partial tiles on the right and bottom), 1x1 and 1xW outputs, batch > 1 (tiles of several
// samples in one panel), channel counts on and off the SIMD width, asymmetric and zero padding, every
// epilogue (bias, activation, residual), and tile chunks smaller than a sample (bands of tile rows).
// A backend with winograd: 'always' takes the Winograd path wherever it applies; the kernel launch
// counts show that it did (both the weight transform fused into the GEMMs, used up to 128 tiles, and the
// separate one), and that 'never' and non-applicable convs (stride 2, groups, 1x1) did not.
//
// Error model. The direct f32 conv sums n = 9C products of magnitude ~s (s = |w||x|); its error is
// ~sqrt(n) eps s (tolFor('f32', 9C, 1)). Winograd sums, for each of the 16 points, C products U V where
// |V| <= 4 max|x| (rows of B^T have absolute sum 2, applied on both sides) and |U| <= 2.25 max|w| (rows of
// G have absolute sum <= 1.5), so each term is at most 9 s; the output transform adds 9 such point sums
// with coefficients +-1 (A^T rows have absolute sum <= 3, on both sides), so an output gathers 9C terms of
// magnitude <= 9 s, each rounded as in the direct sum, plus one rounding of each transformed operand
// (relative eps, folded into the same terms). The bound used: tolFor('f32', 9C, 9), nine times the
// direct conv's. The test also reports the measured worst error relative to the direct im2col path's,
// which stays far below that factor for random data.

import { WasmBackend } from '@cnx/kernels';
import { conv2dOp, CpuBackend, runOp, type Activation, type Backend, type Tensor } from '@cnx/tensor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';

const cpu = new CpuBackend();

interface Case {
  N: number; C: number; H: number; W: number; O: number;
  padding?: [number, number, number, number];
  bias?: boolean; res?: boolean; act?: Activation;
}

const outSize = (c: Case): [number, number] => {
  const [pt, pb, pl, pr] = c.padding ?? [1, 1, 1, 1];
  return [c.H + pt + pb - 2, c.W + pl + pr - 2];
};

/** Runs the conv on `be` and on the reference; returns both results. */
async function run(be: Backend, c: Case, seed: number): Promise<{ got: ArrayLike<number>; ref: ArrayLike<number> }> {
  const [Ho, Wo] = outSize(c);
  const specs: ([number[], number] | undefined)[] = [
    [[c.N, c.C, c.H, c.W], seed], [[c.O, c.C, 3, 3], seed + 1],
    c.bias ? [[c.O], seed + 2] : undefined, c.res ? [[c.N, c.O, Ho, Wo], seed + 3] : undefined,
  ];
  const make = (b: Backend): (Tensor | undefined)[] =>
    specs.map((sp) => (sp ? b.fromRaw(randomArray(sp[0].reduce((a, d) => a * d, 1), sp[1]), sp[0]) : undefined));
  const params = { stride: [1, 1] as [number, number], padding: c.padding ?? [1, 1, 1, 1] as [number, number, number, number], groups: 1, activation: c.act };
  const gi = make(be), ri = make(cpu);
  const [g] = runOp(conv2dOp, gi, params), [r] = runOp(conv2dOp, ri, params);
  expect(g!.shape).toEqual([c.N, c.O, Ho, Wo]);
  const got = await g!.data(), ref = await r!.data();
  for (const t of [...gi, ...ri, g, r]) t?.dispose();
  return { got, ref };
}

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

const cases: Case[] = [
  { N: 1, C: 8, H: 8, W: 8, O: 8 }, // whole tiles, SIMD-width channels
  { N: 2, C: 5, H: 9, W: 11, O: 7, bias: true }, // odd sizes: partial tiles right and bottom, odd channels
  { N: 3, C: 3, H: 7, W: 6, O: 5, bias: true, res: true }, // tiles of 3 samples share panels
  { N: 1, C: 16, H: 1, W: 1, O: 4 }, // one pixel
  { N: 2, C: 4, H: 1, W: 13, O: 9, act: 'silu' }, // one row
  { N: 1, C: 6, H: 12, W: 3, O: 3, bias: true, act: 'gelu' }, // one tile column
  { N: 2, C: 12, H: 10, W: 10, O: 12, padding: [0, 0, 0, 0], res: true }, // no padding
  { N: 1, C: 7, H: 9, W: 10, O: 6, padding: [2, 0, 1, 3], bias: true, act: 'relu' }, // asymmetric padding
  { N: 2, C: 33, H: 17, W: 18, O: 35, bias: true, res: true, act: 'gelu_tanh' }, // > 32 channels, off-width
  { N: 1, C: 40, H: 34, W: 30, O: 20, bias: true, act: 'quick_gelu' }, // 4-tile fast rows and partial groups
];

for (const { threads, fma } of [{ threads: 2, fma: true }, { threads: 1, fma: false }]) {
  describe(`wasm Winograd F(2x2, 3x3) conv2d [${threads} thread${threads > 1 ? 's' : ''}${fma ? '' : ', no FMA'}]`, () => {
    let wino: WasmBackend, direct: WasmBackend;
    beforeAll(async () => {
      wino = await WasmBackend.create({ threads, fma, winograd: 'always' });
      direct = await WasmBackend.create({ threads, fma, winograd: 'never' });
    });
    afterAll(() => { wino?.destroy(); direct?.destroy(); });

    it('matches the reference on odd sizes, batches, paddings and every epilogue, within the error model', async () => {
      let seed = 900;
      const ratios: number[] = [];
      for (const c of cases) {
        const before = wino.rt.launchCounts.get('winograd_output_task') ?? 0;
        const w = await run(wino, c, seed);
        expect(wino.rt.launchCounts.get('winograd_output_task') ?? 0, `Winograd path taken for ${JSON.stringify(c)}`).toBeGreaterThan(before);
        expectAllClose(w.got, w.ref, tolFor('f32', 9 * c.C, 9), `winograd conv2d ${JSON.stringify(c)}`);
        const d = await run(direct, c, seed);
        expectAllClose(d.got, d.ref, tolFor('f32', 9 * c.C, 1), `direct conv2d ${JSON.stringify(c)}`);
        ratios.push(maxDiff(w.got, w.ref) / Math.max(maxDiff(d.got, d.ref), 1e-30));
        seed += 10;
      }
      expect(direct.rt.launchCounts.get('winograd_output_task') ?? 0, "'never' never runs Winograd").toBe(0);
      // both forms of the weight transform ran: fused with the GEMMs (calls of <= 128 tiles) and separate
      expect(wino.rt.launchCounts.get('winograd_gemm_task') ?? 0, 'fused transform + GEMM').toBeGreaterThan(0);
      expect(wino.rt.launchCounts.get('winograd_weight_task') ?? 0, 'separate weight transform').toBeGreaterThan(0);
      console.log(`winograd/direct worst-error ratio per case: ${ratios.map((r) => r.toFixed(2)).join(' ')}`);
    });

    it('convs Winograd cannot compute take the im2col path', async () => {
      const x = wino.fromRaw(randomArray(2 * 4 * 9 * 9, 1), [2, 4, 9, 9]);
      const before = wino.rt.launchCounts.get('winograd_output_task') ?? 0;
      const packs = wino.rt.launchCounts.get('conv_pack_task') ?? 0;
      const shapes: { w: number[]; stride: [number, number]; groups: number }[] = [
        { w: [6, 4, 3, 3], stride: [2, 2], groups: 1 },
        { w: [6, 2, 3, 3], stride: [1, 1], groups: 2 },
        { w: [6, 4, 1, 1], stride: [1, 1], groups: 1 },
      ];
      for (const s of shapes) {
        const wt = wino.fromRaw(randomArray(s.w.reduce((a, d) => a * d, 1), 2), s.w);
        const [y] = runOp(conv2dOp, [x, wt, undefined, undefined], { stride: s.stride, padding: [1, 1, 1, 1], groups: s.groups });
        y!.dispose(); wt.dispose();
      }
      x.dispose();
      expect(wino.rt.launchCounts.get('winograd_output_task') ?? 0).toBe(before);
      // one im2col pack per conv and group: 1 + 2 + 1
      expect(wino.rt.launchCounts.get('conv_pack_task') ?? 0).toBe(packs + 4);
    });
  });
}

describe('wasm Winograd chunking', () => {
  let be: WasmBackend;
  beforeAll(async () => { be = await WasmBackend.create({ threads: 2, winograd: 'always' }); });
  afterAll(() => be?.destroy());

  it('splits a large sample into bands of tile rows (several chunks) and still matches the reference', async () => {
    // capTiles = 2^23 / (16 * max(C, O)) rounded to 8: C = O = 2048 gives 256 tiles, fewer than the
    // 17 x 17 = 289 tiles of one 34x34 sample, so each sample becomes bands of tile rows
    const c: Case = { N: 2, C: 2048, H: 34, W: 33, O: 8, bias: true, res: true };
    const launches = be.rt.launchCounts.get('winograd_input_task') ?? 0;
    const w = await run(be, c, 77);
    expect((be.rt.launchCounts.get('winograd_input_task') ?? 0) - launches).toBeGreaterThanOrEqual(4);
    expectAllClose(w.got, w.ref, tolFor('f32', 9 * c.C, 9), 'winograd conv2d in bands');
  });
});
