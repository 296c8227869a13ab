// The video side of ControlNeXt-SVD: the released pipelines' frame windows, pose keypoints (OpenPose JSON,
// the v2 alignment) and our renderer, GIF in/out, and the pipeline on the tiny random model: the same seed
// gives the same frames, the control changes them, and our control path (module once per window at the
// frames' batch, prefix cached) gives the repo's doubled-batch result. Numerics against the repo: the
// svd_pipeline_controlnext golden case.

import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ndarray from 'ndarray';
import { afterAll, describe, expect, it } from 'vitest';
import {
  applyPoseAlignment, decodeGif, encodeGif, fitPoseAlignment, frameWindows, linspaceF32, naturalSort, parseOpenPoseDocument,
  readPoseInput, renderPose, tinySvdPipeline, writeAnimation, type PoseFrame,
} from '@cnx/controlnext';
import type { Backend } from '@cnx/tensor';
import { describeEachBackend } from '../../../test/harness/backends.js';

const dir = mkdtempSync(join(tmpdir(), 'cnx-svd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('frame windows (the released pipelines)', () => {
  it('starts every fpb - overlap frames, clamps the last, and adds later windows without their first frame', () => {
    expect(frameWindows(6, 4, 2)).toEqual([{ start: 0, firstAdded: 0 }, { start: 2, firstAdded: 3 }]);
    expect(frameWindows(10, 4, 1).map((w) => w.start)).toEqual([0, 3, 6]);
    expect(frameWindows(11, 4, 1).map((w) => w.start)).toEqual([0, 3, 6, 7]);
    expect(frameWindows(3, 14, 2)).toEqual([{ start: 0, firstAdded: 0 }]);
  });

  it('names a frame no window would cover, and a bad overlap', () => {
    expect(() => frameWindows(8, 4, 0)).toThrow(/frame 4 of 8 without a window/);
    expect(() => frameWindows(8, 4, 4)).toThrow(/overlap must be an integer in \[0, 3\]/);
  });

  it('ramps guidance like torch.linspace in float32', () => {
    expect([...linspaceF32(1, 3, 4)]).toEqual([1, Math.fround(5 / 3), Math.fround(7 / 3), 3]);
  });
});

function person(points: [number, number][], score = 0.9) {
  return { pose_keypoints_2d: points.flatMap(([x, y]) => [x, y, score]) };
}

describe('OpenPose keypoints', () => {
  const body18: [number, number][] = Array.from({ length: 18 }, (_, i) => [100 + 10 * i, 200 + 20 * i]);

  it('normalises pixel coordinates by the canvas, maps BODY_25 to the 18 COCO points, and names problems', () => {
    const f = parseOpenPoseDocument({ canvas_width: 1000, canvas_height: 2000, people: [person(body18)] }, 'f.json')[0]!;
    expect(f.people[0]!.body[2]).toBeCloseTo(0.11, 12);
    expect(f.people[0]!.body[3]).toBeCloseTo(0.11, 12);
    const body25: [number, number][] = Array.from({ length: 25 }, (_, i) => [i, i]);
    const g = parseOpenPoseDocument({ people: [person(body25)] }, 'g.json', { width: 100, height: 100 })[0]!;
    expect(g.people[0]!.body[2 * 8]).toBeCloseTo(0.09, 12); // COCO right hip = BODY_25 point 9
    expect(() => parseOpenPoseDocument({ people: [person(body18)] }, 'h.json')).toThrow(/--pose-size/);
    expect(() => parseOpenPoseDocument({ people: [{ pose_keypoints_2d: [1, 2] }] }, 'i.json')).toThrow(/\[x, y, confidence\]/);
    expect(() => parseOpenPoseDocument({ persons: [] }, 'j.json')).toThrow(/"people" array/);
  });

  it('the v2 alignment recovers the linear map between driving frames and the reference', () => {
    const ref = parseOpenPoseDocument({ people: [person(body18.map(([x, y]) => [x / 1000, y / 1000]))] }, 'ref', { width: 576, height: 1024 })[0]!;
    // Driving frames (1080x1920 px) = the reference mapped by the inverse of a = (ax, 0.8), b = (0.05, 0.1).
    const ay = 0.8, by = 0.1;
    const ax = ay / (1920 / 1080 / 1024 * 576), bx = 0.05;
    const frames: PoseFrame[] = [0, 1].map(() => ({
      width: 1080, height: 1920,
      people: [{ ...ref.people[0]!, body: ref.people[0]!.body.map((v, i) => (i % 2 ? (v - by) / ay : (v - bx) / ax)) }],
    }));
    const al = fitPoseAlignment(ref, frames, { width: 576, height: 1024 });
    expect(al.a[0]).toBeCloseTo(ax, 9);
    expect(al.a[1]).toBeCloseTo(ay, 9);
    expect(al.b[0]).toBeCloseTo(bx, 9);
    expect(al.b[1]).toBeCloseTo(by, 9);
    const back = applyPoseAlignment(frames[0]!, al).people[0]!.body;
    back.forEach((v, i) => expect(v).toBeCloseTo(ref.people[0]!.body[i]!, 9));
    expect(() => fitPoseAlignment(ref, [{ width: 1, height: 1, people: [] }], { width: 576, height: 1024 })).toThrow(/exactly one person/);
  });
});

describe('pose renderer', () => {
  it('draws limbs in the v2 pre-processing colours (OpenCV BGR, swapped to RGB) on black', () => {
    const body = new Float64Array(36), bodyScore = new Float64Array(18);
    // neck (1) -> nose (0): limb 12, listed colour [0, 0, 255] -> drawn red.
    body.set([0.5, 0.2, 0.5, 0.6], 0);
    bodyScore[0] = 1; bodyScore[1] = 1;
    const e = new Float64Array(0);
    const img = renderPose({ width: 1, height: 1, people: [{ body, bodyScore, face: e, faceScore: e, hands: [e, e], handScores: [e, e] }] }, 512, 384);
    expect(img.length).toBe(512 * 384 * 3);
    const at = (y: number, x: number) => [img[3 * (y * 384 + x)]!, img[3 * (y * 384 + x) + 1]!, img[3 * (y * 384 + x) + 2]!];
    // The limb runs down column 192 from row 102 to row 307: the row's brightest pixel is red.
    const row = Array.from({ length: 384 }, (_, x) => at(200, x));
    const best = row.reduce((a, b) => (b[0]! > a[0]! ? b : a));
    expect(best[0]).toBeGreaterThan(0.4); // red x 0.6 after the limb pass
    expect(best[2]).toBe(0);
    expect(at(500, 2)).toEqual([0, 0, 0]);
  });
});

describe('video files', () => {
  it('sorts frame names numerically', () => {
    expect(naturalSort(['f10.png', 'f2.png', 'f1.png'])).toEqual(['f1.png', 'f2.png', 'f10.png']);
  });

  it('writes an animated GIF atomically and reads its frames back', () => {
    const frames = [0, 1, 2].map((k) => ndarray(Float32Array.from({ length: 16 * 12 * 3 }, (_, i) => ((i % 3) === k ? 1 : 0.2)), [16, 12, 3]));
    const path = join(dir, 'clip.gif');
    writeAnimation(path, frames, 7);
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    const back = decodeGif(encodeGif(frames, 7), 'clip.gif');
    expect(back.length).toBe(3);
    expect(back[1]!.get(3, 3, 1)).toBeCloseTo(1, 1);
    expect(back[1]!.get(3, 3, 0)).toBeCloseTo(0.2, 1);
    const input = readPoseInput(path);
    expect(input.kind).toBe('images');
    expect(() => writeAnimation(join(dir, 'clip.webm'), frames, 7)).toThrow(/unsupported format '.webm'/);
  });

  it('reads a folder of OpenPose .json frames in name order, with stride and a frame limit', () => {
    const sub = join(dir, 'kp');
    mkdirSync(sub, { recursive: true });
    for (let i = 0; i < 5; i++) {
      writeFileSync(join(sub, `v_${i}_keypoints.json`), JSON.stringify({ canvas_width: 100, canvas_height: 100, people: [person([[i, i], ...Array.from({ length: 17 }, () => [50, 50] as [number, number])])] }));
    }
    const input = readPoseInput(sub, { stride: 2, maxFrames: 2 });
    expect(input.kind).toBe('keypoints');
    if (input.kind !== 'keypoints') return;
    expect(input.frames.map((f) => f.people[0]!.body[0]! * 100)).toEqual([0, 2]);
  });
});

async function runTiny(b: Backend, seed: number, opts: { variant?: 'svd' | 'svd_v2'; control?: number; path?: 'ours' | 'reference'; cache?: boolean } = {}): Promise<Float32Array> {
  const pipe = tinySvdPipeline(b, { variant: opts.variant, seed: 1 });
  const H = 32, W = 32, F = 5;
  const image = b.fromRaw(Float32Array.from({ length: 3 * H * W }, (_, i) => 0.5 + 0.4 * Math.sin(i * 0.05)), [1, 3, H, W]);
  const control = b.fromRaw(Float32Array.from({ length: F * 3 * H * W }, (_, i) => ((i * 7919) % 13 === 0 ? 1 : 0)), [F, 3, H, W]);
  try {
    const live = b.memory().liveBytes;
    const r = await pipe.generate({
      image, controlFrames: control, numInferenceSteps: 2, framesPerBatch: 3, overlap: 1, decodeChunkSize: 2,
      minGuidanceScale: 1, maxGuidanceScale: 2.5, seed, controlScale: opts.control, controlPath: opts.path, cachePrefix: opts.cache,
    });
    expect(r.frames!.shape).toEqual([F, 3, H, W]);
    const d = await r.frames!.data();
    [r.frames, r.decoded, r.latents].forEach((t) => t?.dispose());
    expect(b.memory().liveBytes, 'a generation frees everything it allocated').toBe(live);
    return d;
  } finally {
    [image, control].forEach((t) => t.dispose());
    pipe.dispose();
  }
}

describeEachBackend('SVD + ControlNeXt-SVD pipeline, tiny model', (test, name) => {
  test('same seed, same frames; another seed and the control change them; our control path = the repo path', async (b) => {
    const a = await runTiny(b, 11);
    expect(a.every((v) => v >= 0 && v <= 1)).toBe(true);
    expect(await runTiny(b, 11)).toEqual(a);
    if (name === 'cpu') {
      expect(await runTiny(b, 12)).not.toEqual(a);
      expect(await runTiny(b, 11, { control: 0 })).not.toEqual(a);
      const ref = await runTiny(b, 11, { path: 'reference' });
      let maxDiff = 0;
      ref.forEach((v, i) => { maxDiff = Math.max(maxDiff, Math.abs(v - a[i]!)); });
      expect(maxDiff).toBeLessThan(1e-4);
      expect(await runTiny(b, 11, { cache: false })).toEqual(a); // the prefix recomputed per step: the same ops
      // v1: the control enters before the mid block, with 0.65 on the unconditional half.
      const v1 = await runTiny(b, 11, { variant: 'svd' });
      const v1ref = await runTiny(b, 11, { variant: 'svd', path: 'reference' });
      let d1 = 0;
      v1ref.forEach((v, i) => { d1 = Math.max(d1, Math.abs(v - v1[i]!)); });
      expect(d1).toBeLessThan(1e-4);
    }
  }, 900_000);
});
