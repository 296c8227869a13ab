// FLOPs counted on the shape-only backend (bench/src/svd/counting_backend.ts): the primitives against
// hand-computed counts, the ControlNeXt-SVD modules' parameter counts against the spec (3,526,400 and
// 5,610,177), the v2 module's cost per frame at 1024x576 against the spec's estimate (114 GMAC), and the
// identity between the repo's path and ours (reference = 2 x (per-step + prefix)).
import { ShapeRecorder, ops } from '@cnx/tensor';
import { ControlNeXtSVD, ControlNeXtSVDv1Module, ControlNeXtSVDv2Module } from '@cnx/controlnext';
import { describe, expect, it } from 'vitest';
import { CountingBackend } from '../src/svd/counting_backend.js';
import { SVD_V1_STRUCTURE, SVD_V2_STRUCTURE } from '../src/svd/svd_step.js';

describe('shape-only FLOP counter', () => {
  it('counts conv2d, matmul and attention as bench/src/flops.ts does, and tracks virtual memory', () => {
    const b = new CountingBackend();
    const x = b.zeros([3, 4, 7, 9]), w = b.zeros([6, 2, 3, 3]);
    const y = ops.conv2d(x, w, undefined, { stride: 2, padding: [0, 1, 0, 1], groups: 2 });
    expect(y.shape).toEqual([3, 6, 3, 4]); // floor((7 + 1 - 3) / 2) + 1, floor((9 + 1 - 3) / 2) + 1
    expect(b.detail().conv).toBe(2 * 3 * 6 * 3 * 4 * 2 * 3 * 3);
    b.resetCounts();
    ops.matmul(b.zeros([2, 5, 7]), b.zeros([7, 11]));
    expect(b.flops()).toBe(2 * 2 * 5 * 7 * 11);
    b.resetCounts();
    ops.attention(b.zeros([2, 10, 8]), b.zeros([2, 6, 8]), b.zeros([2, 6, 8]), 2);
    expect(b.detail().attention).toBe(2 * 2 * 2 * 10 * 6 * (4 + 4));
    const live = b.memory().liveBytes;
    y.dispose();
    expect(b.memory().liveBytes).toBe(live - 4 * 3 * 6 * 3 * 4);
  });
});

function moduleCost(version: 1 | 2, frames: number, H: number, W: number, path: 'reference' | 'ours') {
  const b = new CountingBackend();
  const rec = new ShapeRecorder();
  const module = version === 2 ? new ControlNeXtSVDv2Module(rec, b, SVD_V2_STRUCTURE) : new ControlNeXtSVDv1Module(rec, b, SVD_V1_STRUCTURE);
  const cnx = new ControlNeXtSVD(version === 2 ? 'svd_v2' : 'svd', module, b);
  const t = b.zeros([1]);
  if (path === 'reference') {
    cnx.module.forwardVideo(b.zeros([2, frames, 3, H, W]), t);
    return { params: rec.parameterCount(), step: b.flops(), prefix: 0 };
  }
  const p = cnx.prepare(b.zeros([frames, 3, H, W]));
  const prefix = b.flops();
  b.resetCounts();
  cnx.control(p, t);
  return { params: rec.parameterCount(), step: b.flops(), prefix };
}

describe('ControlNeXt-SVD modules, counted', () => {
  it('have the released parameter counts', () => {
    expect(moduleCost(2, 1, 64, 64, 'ours').params).toBe(3_526_400);
    expect(moduleCost(1, 1, 64, 64, 'ours').params).toBe(5_610_177);
  });

  it('v2 at 1024x576: about 114 GMAC per frame (spec 12.4); the repo path = 2 x (our step + prefix)', () => {
    const ref = moduleCost(2, 2, 1024, 576, 'reference');
    const ours = moduleCost(2, 2, 1024, 576, 'ours');
    const macPerFrame = ref.step / 2 / (2 * 2);
    expect(macPerFrame / 1e9).toBeGreaterThan(108);
    expect(macPerFrame / 1e9).toBeLessThan(120);
    // Equal up to the time-embedding projections, which the repo computes per frame and ours once per step.
    expect(Math.abs(ref.step - 2 * (ours.step + ours.prefix)) / ref.step).toBeLessThan(1e-6);
    expect(ours.prefix / (ours.step + ours.prefix)).toBeGreaterThan(0.3); // the stem and the first conv1: a third of the module
  });
});
