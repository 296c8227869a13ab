// The browser demo (examples/browser/) driven like a user in headless Chromium: built by its own build
// script, served from 127.0.0.1 beside a tiny model folder written by writeTinyModel (a stand-in for a
// diffusers folder on a web server). One page, three generations:
//  1. the tiny random model: the progress bar reaches the end, the adapter is shown, an image is drawn;
//  2. the folder at a URL, its ControlNeXt files at their URLs, a control image picked as a file: every
//     file is downloaded and stored in the Cache API;
//  3. the same again: every file comes from the cache, and the image is the same as in 2.
// Skips LOUDLY without Chromium or WebGPU; fails instead under CNX_REQUIRE_BROWSER=1.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { writeTinyModel } from '@cnx/controlnext';
import { REPO_ROOT } from '../harness/golden_root.js';
import { findChromium, launchChromium, REQUIRE_BROWSER, serveFolder } from './chromium.js';

const chromium = findChromium();
const dir = mkdtempSync(join(tmpdir(), 'cnx-demo-'));
let browser: Browser | undefined;
let server: Server | undefined;
let page: Page | undefined;
let base = '';
let unavailable: string | undefined = chromium.why;
const pageErrors: string[] = [];

function needPage(ctx: TestContext): Page {
  if (page && !unavailable) return page;
  const why = unavailable ?? 'the demo did not load';
  if (REQUIRE_BROWSER) throw new Error(`the browser test is required (CNX_REQUIRE_BROWSER=1) but cannot run: ${why}`);
  console.warn(`\n*** SKIPPING "${ctx.task.name}": ${why} ***\n`);
  ctx.skip();
  throw new Error('unreachable');
}

beforeAll(async () => {
  if (!chromium.path) {
    if (!REQUIRE_BROWSER) console.warn(`\n*** SKIPPING the demo test: ${chromium.why} ***\n`);
    return;
  }
  const built = spawnSync(process.execPath, [join(REPO_ROOT, 'examples', 'browser', 'build.mjs'), '--out', dir], { encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`examples/browser/build.mjs failed:\n${built.stdout}${built.stderr}`);
  mkdirSync(join(dir, 'models'));
  await writeTinyModel(join(dir, 'models', 'tiny-sd15'));
  const served = await serveFolder(dir);
  server = served.server;
  base = served.url;
  browser = await launchChromium(chromium.path);
  page = await browser.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  await page.goto(base);
  await page.waitForFunction(() => document.title.endsWith('(ready)'), undefined, { timeout: 60_000 });
  if (!(await page.evaluate(() => 'gpu' in navigator))) unavailable = 'no WebGPU (navigator.gpu) in Chromium';
}, 180_000);

afterAll(async () => {
  await browser?.close();
  server?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Click Generate and wait for the status line to say done (or error). */
async function generateAndWait(p: Page): Promise<{ status: string; progress: number; adapter: string; log: string; pixels: number[] }> {
  await p.click('#generate');
  await p.waitForFunction(() => /^(done|error)/.test(document.getElementById('status')!.textContent ?? ''), undefined, { timeout: 280_000 });
  return p.evaluate(() => {
    const canvas = document.getElementById('out') as HTMLCanvasElement;
    const data = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
    return {
      status: document.getElementById('status')!.textContent ?? '',
      progress: (document.getElementById('progress') as HTMLProgressElement).value,
      adapter: document.getElementById('adapter')!.textContent ?? '',
      log: document.getElementById('log')!.textContent ?? '',
      pixels: Array.from(data),
    };
  });
}

describe('the browser demo (examples/browser)', () => {
  it('the tiny random model: progress to the end, the adapter shown, an image drawn', async (ctx) => {
    const p = needPage(ctx);
    await p.selectOption('#size', '64');
    await p.fill('#steps', '2');
    const r = await generateAndWait(p);
    expect(r.status, r.log).toMatch(/^done in /);
    expect(r.progress).toBe(1);
    expect(r.adapter).toMatch(/^webgpu: /);
    expect(r.pixels.length).toBe(64 * 64 * 4);
    expect(new Set(r.pixels.filter((_, i) => i % 4 === 0)).size).toBeGreaterThan(10); // not a flat image
    expect(pageErrors).toEqual([]);
  }, 300_000);

  it('a model folder at a URL with a control image: downloaded into the Cache API, then read from it, same image', async (ctx) => {
    const p = needPage(ctx);
    const model = `${base}models/tiny-sd15`;
    await p.check('input[name=source][value=url]');
    await p.fill('#model-url', model);
    await p.fill('#cnx-url', `${model}/controlnext/controlnet.safetensors`);
    await p.fill('#cnx-unet-url', `${model}/controlnext/unet.safetensors`);
    await p.setInputFiles('#control', join(dir, 'models', 'tiny-sd15', 'controlnext', 'example_condition.png'));
    const first = await generateAndWait(p);
    expect(first.status, first.log).toMatch(/^done in /);
    // 8 config/tokenizer/scheduler files, 3 weights files, 2 ControlNeXt files.
    expect(first.log).toMatch(/files: 0 from the browser cache, 13 downloaded and stored/);
    const second = await generateAndWait(p);
    expect(second.status, second.log).toMatch(/^done in /);
    expect(second.log).toMatch(/files: 13 from the browser cache, 0 downloaded and stored/);
    expect(second.pixels).toEqual(first.pixels);
    expect(pageErrors.filter((e) => !/404/.test(e))).toEqual([]); // optional files may 404
  }, 600_000);
});
