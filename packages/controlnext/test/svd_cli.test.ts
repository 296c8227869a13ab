// `cnx video` through main(): help, the documented usage errors (each naming the option or file), and
// end-to-end runs of the tiny random model: its own dancing figure, and OpenPose keypoints aligned to a
// reference pose; numbered PNG frames and an animated GIF written, the same seed giving the same frames.

import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '@cnx/controlnext';

const dir = mkdtempSync(join(tmpdir(), 'cnx-video-'));
const golden = GOLDEN_ROOT;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await main(argv, {
    stdout: { write: (s: string) => { out += s; return true; } },
    stderr: { isTTY: false, write: (s: string) => { err += s; return true; } },
  });
  return { code, out, err };
}

describe('cnx video', () => {
  it('has help listing its options', async () => {
    const top = await run('--help');
    expect(top.out).toContain('video');
    const h = await run('video', '--help');
    expect(h.code).toBe(0);
    for (const opt of ['--model', '--controlnext', '--controlnext-unet', '--image', '--poses', '--ref-pose', '--frames', '--window', '--overlap',
      '--steps', '--guidance-min', '--guidance-max', '--fps', '--motion-bucket', '--seed', '--backend', '--decode-chunk', '--fp16', '--video']) {
      expect(h.out).toContain(opt);
    }
  });

  it('names bad options and files', async () => {
    const cases: [string[], RegExp][] = [
      [['--model', join(dir, 'nope')], /--model: folder .*nope does not exist/],
      [['--window', '4', '--overlap', '4'], /--overlap must be below --window \(4\)/],
      [['--video', join(dir, 'x.webm')], /--video: .*unsupported format '\.webm'/],
      [['--controlnext', 'x.safetensors'], /need --model/],
      [['--steps', '0'], /--steps must be an integer in \[1, 1000\]/],
    ];
    for (const [args, re] of cases) {
      const r = await run('video', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(re);
    }
    const missing = await run('video', '--poses', join(dir, 'no-poses'), '--steps', '1');
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/pose input .*no-poses does not exist/);
  });

  it('runs the tiny model end to end: frames + GIF; the same seed gives the same frames', async () => {
    const args = ['video', '--steps', '1', '--frames', '3', '--width', '32', '--height', '32', '--window', '3', '--overlap', '1', '--decode-chunk', '2', '--seed', '9'];
    const a = await run(...args, '--output', join(dir, 'a'));
    expect(a.code, a.err).toBe(0);
    expect(a.err).toMatch(/RANDOM weights/);
    expect(a.err).toMatch(/step 1\/1 {2}window 1\/1 .* ETA/);
    expect(a.out).toMatch(/^wrote 3 frames 32x32 to .*a and .*video\.gif seed=9 steps=1 windows=1 variant=svd_v2 seconds=/);
    expect(readdirSync(join(dir, 'a')).sort()).toEqual(['frame_0000.png', 'frame_0001.png', 'frame_0002.png', 'video.gif']);
    const b = await run(...args, '--output', join(dir, 'b'));
    expect(b.code).toBe(0);
    for (const f of ['frame_0000.png', 'frame_0002.png']) expect(readFileSync(join(dir, 'b', f)).equals(readFileSync(join(dir, 'a', f)))).toBe(true);
  }, 600_000);

  it('draws OpenPose keypoints aligned to a reference pose, the reference as frame 0', async () => {
    const kp = join(dir, 'kp');
    mkdirSync(kp, { recursive: true });
    const body = (dx: number, s: number) => Array.from({ length: 18 }, (_, i) => [200 + dx + 20 * (i % 4), 100 + 40 * i * s, 0.9]).flat();
    for (let i = 0; i < 3; i++) writeFileSync(join(kp, `clip_${i}_keypoints.json`), JSON.stringify({ canvas_width: 720, canvas_height: 1280, people: [{ pose_keypoints_2d: body(10 * i, 1) }] }));
    const ref = join(dir, 'ref.json');
    writeFileSync(ref, JSON.stringify({ people: [{ pose_keypoints_2d: body(0, 0.5).map((v, i) => (i % 3 === 2 ? v : v / 1000)) }] }));
    const r = await run('video', '--poses', kp, '--ref-pose', ref, '--steps', '1', '--width', '32', '--height', '32', '--window', '4', '--overlap', '1',
      '--output', join(dir, 'kpout'), '--seed', '1');
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/aligned to --ref-pose \(a = \[.*\], b = \[.*\], 42 points\); 4 pose frames drawn from keypoints/);
    expect(existsSync(join(dir, 'kpout', 'frame_0003.png'))).toBe(true);
  }, 600_000);

  it('loads an SVD folder in the diffusers layout plus ControlNeXt-SVD files (the golden cases\' tiny models)', async () => {
    // unet/, vae/, scheduler/ and the v2 module of svd_pipeline_controlnext; image_encoder/ of clip_vision.
    const pipeCase = join(golden, 'svd_pipeline_controlnext');
    const model = join(dir, 'svd-model');
    mkdirSync(model, { recursive: true });
    for (const sub of ['unet', 'vae', 'scheduler']) symlinkSync(join(pipeCase, sub), join(model, sub));
    symlinkSync(join(golden, 'clip_vision', 'image_encoder'), join(model, 'image_encoder'));
    const poses = join(dir, 'poses.gif');
    const mk = await run('video', '--steps', '1', '--frames', '3', '--width', '48', '--height', '32', '--output', join(dir, 'pose-src'), '--video', poses, '--seed', '2');
    expect(mk.code, mk.err).toBe(0);
    const r = await run('video', '--model', model, '--controlnext', join(pipeCase, 'controlnext'), '--image', join(dir, 'pose-src', 'frame_0000.png'),
      '--poses', poses, '--width', '48', '--height', '32', '--steps', '2', '--window', '2', '--overlap', '1', '--decode-chunk', '2',
      '--output', join(dir, 'real'), '--seed', '3');
    expect(r.code, r.err).toBe(0);
    expect(r.err).not.toMatch(/RANDOM/);
    expect(r.err).toMatch(/ControlNeXt-SVD v2 .* injected at down_blocks\.0; 3 pose images/);
    expect(r.out).toMatch(/wrote 3 frames 48x32 .* windows=2 variant=svd_v2/);
    writeFileSync(join(dir, 'controlnet.bin'), 'not a safetensors file');
    const bad = await run('video', '--model', model, '--controlnext', join(dir, 'controlnet.bin'), '--image', join(dir, 'pose-src', 'frame_0000.png'), '--poses', poses);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/controlnet\.bin is a PyTorch pickle, which cannot be read here; use a safetensors file/);
  }, 600_000);
});
