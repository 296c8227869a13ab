// The packages in a real browser: headless Chromium (Debian's, driven by playwright-core) on its own
// WebGPU adapter (SwiftShader without a GPU). The page (page_entry.ts) is bundled here from the packages'
// browser entries with esbuild and served from 127.0.0.1. In the page:
//  - every kernel case of op_cases.ts runs on WebGPU; the same case runs here on the CPU reference
//    backend with the same inputs, and the outputs must agree within the case's f32 tolerance;
//  - the tiny random SD1.5 + ControlNeXt is built from its files in memory (the browser loading path)
//    and generates; latents and image must agree with the same generation on the CPU here, within the
//    golden case sd15_pipeline_controlnext's tolerances (same tiny architecture, f32 against float64).
// Where Chromium (or WebGPU in it) is missing the tests skip LOUDLY; with CNX_REQUIRE_BROWSER=1 (CI)
// they fail instead.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { CpuBackend, type Tensor } from '@cnx/tensor';
import { pipelineFromFiles, splitTinyModelFiles, tinyModelFiles } from '@cnx/controlnext';
import { expectAllClose } from '../harness/allclose.js';
import { caseInputs, caseTolerance, OP_CASES } from './op_cases.js';
import { controlData, PIPELINE_RUN } from './pipeline_case.js';
import { findChromium, launchChromium, REQUIRE_BROWSER, serveFolder } from './chromium.js';
import type { CaseResult } from './page_entry.js';

const SEED = 5;
const chromium = findChromium();
const dir = mkdtempSync(join(tmpdir(), 'cnx-browser-'));
let browser: Browser | undefined;
let server: Server | undefined;
let page: Page | undefined;
let unavailable: string | undefined = chromium.why;
const pageErrors: string[] = [];
const timings: string[] = [];

interface TestApi {
  adapter(): Promise<{ description?: string; report?: unknown; error?: string; secureContext: boolean; hasGpu: boolean }>;
  runCase(name: string, seed: number): Promise<CaseResult>;
  runPipeline(o: typeof PIPELINE_RUN): Promise<{ latents?: number[]; image?: number[]; shape?: number[]; ms?: number; error?: string }>;
}
declare const cnxTest: TestApi;

/** Skip loudly, or fail under CNX_REQUIRE_BROWSER=1, when the page cannot run. */
function needPage(ctx: TestContext): Page {
  if (page && !unavailable) return page;
  const why = unavailable ?? 'the page did not load';
  if (REQUIRE_BROWSER) throw new Error(`the browser test is required (CNX_REQUIRE_BROWSER=1) but cannot run: ${why}`);
  console.warn(`\n*** SKIPPING "${ctx.task.name}": ${why} ***\n`);
  ctx.skip();
  throw new Error('unreachable');
}

beforeAll(async () => {
  if (!chromium.path) {
    if (!REQUIRE_BROWSER) console.warn(`\n*** SKIPPING the browser tests: ${chromium.why} ***\n`);
    return;
  }
  const t0 = performance.now();
  await build({
    entryPoints: [join(import.meta.dirname, 'page_entry.ts')], bundle: true, platform: 'browser', format: 'esm',
    outfile: join(dir, 'page.js'), logLevel: 'silent', target: 'es2022',
  });
  writeFileSync(join(dir, 'index.html'), '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><title>cnx browser test</title><script type="module" src="page.js"></script>\n');
  const served = await serveFolder(dir);
  server = served.server;
  browser = await launchChromium(chromium.path);
  page = await browser.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  await page.goto(served.url);
  await page.waitForFunction(() => document.title.endsWith('ready'), undefined, { timeout: 60_000 });
  const info = await page.evaluate(() => cnxTest.adapter());
  if (!info.description) unavailable = `no WebGPU in Chromium (navigator.gpu ${info.hasGpu ? 'present' : 'absent'}): ${info.error}`;
  else console.log(`[browser] ${info.description.split('\n')[0]}`);
  timings.push(`bundle + launch ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}, 180_000);

afterAll(async () => {
  await browser?.close();
  server?.close();
  rmSync(dir, { recursive: true, force: true });
  if (timings.length) console.log(`[browser] ${timings.join(', ')}`);
});

async function hostData(ts: Tensor[]): Promise<{ shape: number[]; data: Float32Array }[]> {
  const out: { shape: number[]; data: Float32Array }[] = [];
  for (const t of ts) out.push({ shape: [...t.shape], data: await t.data() });
  return out;
}

describe('headless Chromium, WebGPU in the page', () => {
  it('the page acquires a WebGPU adapter and says which', async (ctx) => {
    const p = needPage(ctx);
    const info = await p.evaluate(() => cnxTest.adapter());
    expect(info.secureContext).toBe(true);
    expect(info.description).toMatch(/^webgpu: /);
    expect(pageErrors).toEqual([]);
  });

  const t0 = performance.now();
  for (const c of OP_CASES) {
    it(`kernel: ${c.name}`, async (ctx) => {
      const p = needPage(ctx);
      const got = await p.evaluate(([name, seed]) => cnxTest.runCase(name, seed), [c.name, SEED] as const);
      expect(got.error, got.error).toBeUndefined();
      const cpu = new CpuBackend();
      const inputs = caseInputs(c, SEED).map((d, i) => cpu.fromRaw(d, c.inputs[i]!.shape));
      const want = await hostData(c.run(inputs));
      expect(got.outputs!.map((o) => o.shape)).toEqual(want.map((o) => o.shape));
      const tol = caseTolerance(c);
      want.forEach((w, i) => expectAllClose(got.outputs![i]!.data, w.data, tol, `${c.name}: output ${i}`));
      cpu.destroy();
      if (c === OP_CASES[OP_CASES.length - 1]) timings.push(`${OP_CASES.length} kernel cases ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }, 120_000);
  }

  it('the tiny SD1.5 + ControlNeXt, built from its files in the page, generates what the CPU backend generates', async (ctx) => {
    const p = needPage(ctx);
    const t1 = performance.now();
    const got = await p.evaluate((o) => cnxTest.runPipeline(o), PIPELINE_RUN);
    expect(got.error, got.error).toBeUndefined();
    timings.push(`pipeline in the page ${((performance.now() - t1) / 1000).toFixed(1)} s (page: ${(got.ms! / 1000).toFixed(1)} s)`);
    const cpu = new CpuBackend();
    const { sd, controlnext, controlnextUnet } = splitTinyModelFiles(await tinyModelFiles({ seed: PIPELINE_RUN.modelSeed }));
    const { pipeline } = pipelineFromFiles(sd, cpu, { controlnext, controlnextUnet });
    const { size } = PIPELINE_RUN;
    const r = await pipeline.generate({
      prompt: PIPELINE_RUN.prompt, numInferenceSteps: PIPELINE_RUN.steps, seed: PIPELINE_RUN.seed, height: size, width: size,
      controlImage: cpu.fromRaw(controlData(size), [1, 3, size, size]),
    });
    expect(got.shape).toEqual([...r.images.shape]);
    const latents = await r.latents.data(), image = await r.images.data();
    // Tolerances of golden/sd15_pipeline_controlnext (the same tiny architecture, an f32 implementation
    // against the float64-accumulating reference): latents max_abs 6.02e-3, image 3.44e-4 before the
    // [0, 1] mapping (so 1.72e-4 after it), rel_l2 1e-4.
    const relL2 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
      let num = 0, den = 0;
      for (let i = 0; i < b.length; i++) { num += (a[i]! - b[i]!) ** 2; den += b[i]! ** 2; }
      return Math.sqrt(num / den);
    };
    expectAllClose(got.latents!, latents, { atol: 6.02e-3, rtol: 0 }, 'latents');
    expectAllClose(got.image!, image, { atol: 1.72e-4, rtol: 0 }, 'image');
    expect(relL2(got.latents!, latents)).toBeLessThanOrEqual(1e-4);
    pipeline.dispose();
    cpu.destroy();
    expect(pageErrors).toEqual([]);
  }, 300_000);
});
