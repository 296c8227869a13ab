// Control types: every plug-in file in control_types/ (found by listing the directory, no hand-kept
// list) yields [1, 3, H, W] in [0, 1]; Canny's kernel path (blur + Sobel on ops.conv2d) agrees with its
// plain-loop reference, and the edge map behaves as OpenCV's thresholds say on synthetic images.

import { readdirSync } from 'node:fs';
import { expect } from 'vitest';
import {
  cannyCpu, cannyFromGradients, controlTypesDir, gradientsCpu, gradientsOnBackend, listControlTypes, type RgbImage,
} from '@cnx/controlnext';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { expectAllClose, randomArray } from '../../../test/harness/allclose.js';

/** A grey image [H, W] 0..255: a bright axis-aligned square on a dark background. */
function square(H: number, W: number, y0: number, y1: number, x0: number, x1: number, lo = 20, hi = 220): Float32Array {
  const g = new Float32Array(H * W).fill(lo);
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) g[y * W + x] = hi;
  return g;
}

function toRgb(gray255: Float32Array, H: number, W: number): RgbImage {
  const data = new Float32Array(H * W * 3);
  for (let i = 0; i < H * W; i++) data.fill(gray255[i]! / 255, 3 * i, 3 * i + 3);
  return { data, height: H, width: W };
}

function edgeCoords(e: Uint8Array, W: number): [number, number][] {
  const out: [number, number][] = [];
  e.forEach((v, i) => { if (v) out.push([Math.floor(i / W), i % W]); });
  return out;
}

describeEachBackend('control types', (test) => {
  test('every file in control_types/ is a plug-in that gives [1, 3, H, W] in [0, 1]', async (backend) => {
    const files = readdirSync(controlTypesDir()).filter((f) => f.endsWith('.js'));
    const types = await listControlTypes();
    expect(types.length).toBe(files.length);
    expect(types.length).toBeGreaterThanOrEqual(5);
    const H = 12, W = 10;
    const img: RgbImage = { data: randomArray(H * W * 3, 7, 0.5, 0.5), height: H, width: W };
    for (const t of types) {
      expect(t.description.length, `${t.name} description`).toBeGreaterThan(0);
      const x = await t.prepare(img, backend, {});
      expect(x.shape, t.name).toEqual([1, 3, H, W]);
      const d = await x.data();
      for (const v of d) expect(v >= 0 && v <= 1, `${t.name}: value ${v} outside [0, 1]`).toBe(true);
      x.dispose();
      await expect(t.prepare({ data: new Float32Array(5), height: H, width: W }, backend)).rejects.toThrow(/expected 12x10x3 = 360 RGB values, found 5/);
    }
  });

  test('canny: blur + Sobel on the kernels == the plain-loop reference (replicate / reflect-101 borders)', async (backend) => {
    const H = 13, W = 11;
    const g = randomArray(H * W, 3, 127, 128);
    for (const sigma of [0, 0.8, 1.4]) {
      const ref = gradientsCpu(g, H, W, sigma);
      const got = await gradientsOnBackend(backend, g, H, W, sigma);
      const tol = { atol: 1e-3, rtol: 1e-5 }; // 0..255 inputs, <= 9 + 2k terms
      expectAllClose(got.dx, ref.dx, tol, `dx sigma ${sigma}`);
      expectAllClose(got.dy, ref.dy, tol, `dy sigma ${sigma}`);
    }
  });

  test('canny on a square: edges on its boundary only, thresholds behave as in OpenCV', async (backend) => {
    const H = 24, W = 24;
    const g = square(H, W, 6, 18, 8, 16); // step 200 grey levels
    const t = (await listControlTypes()).find((x) => x.name === 'canny')!;
    const x = await t.prepare(toRgb(g, H, W), backend, { low: 100, high: 200 });
    const d = await x.data();
    const e = Uint8Array.from(d.subarray(0, H * W));
    expect(Array.from(d.subarray(H * W, 2 * H * W))).toEqual(Array.from(e)); // 3 equal channels
    const pts = edgeCoords(e, W);
    expect(pts.length).toBeGreaterThan(30);
    // Every edge pixel lies within one pixel of the square's boundary rows/columns.
    for (const [y, xx] of pts) {
      const nearRow = (y === 5 || y === 6 || y === 17 || y === 18) && xx >= 7 && xx <= 16;
      const nearCol = (xx === 7 || xx === 8 || xx === 15 || xx === 16) && y >= 5 && y <= 18;
      expect(nearRow || nearCol, `edge at (${y}, ${xx}) is off the square's boundary`).toBe(true);
    }
    // Each side is found along its whole interior length.
    for (let y = 8; y < 16; y++) expect(e[y * W + 7]! || e[y * W + 8]!, `left side row ${y}`).toBeTruthy();
    for (let xx = 10; xx < 14; xx++) expect(e[5 * W + xx]! || e[6 * W + xx]!, `top side col ${xx}`).toBeTruthy();
    x.dispose();

    // Thresholds act on the L1 Sobel magnitude: above the image's largest magnitude nothing is an
    // edge; a straight side has |dx| + |dy| = 4 * 200 = 800 (column weights 1 + 2 + 1), so a high
    // threshold just below that keeps the same edges as 200.
    const gr = gradientsCpu(g, H, W);
    let maxMag = 0;
    for (let i = 0; i < H * W; i++) maxMag = Math.max(maxMag, Math.abs(gr.dx[i]!) + Math.abs(gr.dy[i]!));
    expect(edgeCoords(cannyCpu(g, H, W, { low: 100, high: maxMag }), W).length).toBe(0); // m > high is strict
    expect(edgeCoords(cannyCpu(g, H, W, { low: 100, high: 799 }), W).length).toBe(pts.length);
    // Swapped thresholds are swapped back (OpenCV).
    expect(Array.from(cannyCpu(g, H, W, { low: 799, high: 100 }))).toEqual(Array.from(e));
  });

  test('canny hysteresis: a weak edge survives only when connected to a strong one', async () => {
    const H = 20, W = 20;
    // A vertical step at x = 4: 0 -> 200 in rows 0..5 (magnitude 800, strong), 0 -> 60 below (240, weak),
    // one continuous chain.
    const g = new Float32Array(H * W).fill(0);
    for (let y = 0; y < H; y++) for (let x = 4; x < W; x++) g[y * W + x] = y < 6 ? 200 : 60;
    const grads = gradientsCpu(g, H, W);
    const both = cannyFromGradients(grads, { low: 100, high: 500 });
    const strongOnly = cannyFromGradients(grads, { low: 499, high: 500 });
    const weakPart = (e: Uint8Array) => { let n = 0; for (let y = 9; y < H; y++) n += e[y * W + 3]! | e[y * W + 4]!; return n; };
    expect(weakPart(both)).toBe(H - 9); // every row of the weak part, reached through the chain
    expect(weakPart(strongOnly)).toBe(0);
    // An isolated weak step (no strong edge anywhere) gives nothing.
    const lone = square(H, W, 0, H, 10, W, 0, 60);
    expect(edgeCoords(cannyCpu(lone, H, W, { low: 100, high: 500 }), W).length).toBe(0);
    expect(edgeCoords(cannyCpu(lone, H, W, { low: 100, high: 200 }), W).length).toBeGreaterThan(0);
  });
});
