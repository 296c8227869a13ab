// Video frames in and out for `cnx video` (Node only: files, a child process).
//   in:  pose frames as a folder of images (PNG / JPEG, in name order), an animated GIF (omggif), or
//        OpenPose keypoints (pose_keypoints.ts): a folder of *.json files (one per frame, as OpenPose writes
//        them) or one .json file holding a frame or an array of frames.
//   out: numbered PNG frames (frame_0000.png, ...) and one animated file: GIF (gifenc, 256-colour palette
//        per frame) or MP4 (H.264 through a system `ffmpeg`, where one is installed). Every file is written
//        atomically (a temporary file in the same folder, then a rename).

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join } from 'node:path';
import ndarray from 'ndarray';
import * as gifencModule from 'gifenc';
import { GifReader } from 'omggif';
import type { ImageArray } from '../images.js';
import { parseOpenPoseDocument, type PoseFrame } from '../video/pose_keypoints.js';
import { decodeImage, encodePng, writeFileAtomic } from './image_files.js';

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg']);

/** gifenc's functions: Node's ESM loader sees its CommonJS build (one default object), bundlers its ESM build. */
const gifenc = ((gifencModule as unknown as { GIFEncoder?: unknown }).GIFEncoder ? gifencModule : gifencModule.default) as typeof gifencModule.default;

/** Names sorted with digit runs compared as numbers (frame2 < frame10). */
export function naturalSort(names: readonly string[]): string[] {
  const key = (s: string) => s.split(/(\d+)/).map((p, i) => (i % 2 ? Number(p) : p.toLowerCase()));
  return [...names].sort((a, b) => {
    const ka = key(a), kb = key(b);
    for (let i = 0; i < Math.min(ka.length, kb.length); i++) {
      const x = ka[i]!, y = kb[i]!;
      if (x === y) continue;
      if (typeof x === 'number' && typeof y === 'number') return x - y;
      return String(x) < String(y) ? -1 : 1;
    }
    return ka.length - kb.length;
  });
}

export type PoseInput = { kind: 'images'; frames: ImageArray[] } | { kind: 'keypoints'; frames: PoseFrame[] };

export interface ReadPoseOptions {
  /** Keep every stride-th frame (the v2 pre-processing's sample_stride). Default 1. */
  stride?: number;
  /** At most this many frames after striding. */
  maxFrames?: number;
  /** Pixel size of keypoint coordinates for files that do not say it. */
  poseSize?: { width: number; height: number };
}

/** The frames of an animated (or still) GIF, composited, as [H, W, 3] RGB in [0, 1]. */
export function decodeGif(bytes: Uint8Array, name: string): ImageArray[] {
  let reader: GifReader;
  try {
    reader = new GifReader(bytes);
  } catch (e) {
    throw new Error(`${name}: cannot decode GIF: ${(e as Error).message}`);
  }
  const { width: W, height: H } = reader;
  const canvas = new Uint8Array(W * H * 4);
  const frames: ImageArray[] = [];
  for (let i = 0; i < reader.numFrames(); i++) {
    const info = reader.frameInfo(i);
    const before = info.disposal === 3 ? canvas.slice() : undefined;
    reader.decodeAndBlitFrameRGBA(i, canvas);
    const rgb = new Float32Array(W * H * 3);
    for (let p = 0; p < W * H; p++) for (let c = 0; c < 3; c++) rgb[3 * p + c] = canvas[4 * p + c]! / 255;
    frames.push(ndarray(rgb, [H, W, 3]));
    if (info.disposal === 2) {
      for (let y = info.y; y < info.y + info.height; y++) canvas.fill(0, 4 * (y * W + info.x), 4 * (y * W + info.x + info.width));
    } else if (before) canvas.set(before);
  }
  return frames;
}

function pick<T>(all: T[], o: ReadPoseOptions): T[] {
  const stride = o.stride ?? 1;
  const strided = all.filter((_, i) => i % stride === 0);
  return o.maxFrames === undefined ? strided : strided.slice(0, o.maxFrames);
}

/** Read pose input from a folder or a file (see the header); errors name the path and what was expected. */
export function readPoseInput(path: string, o: ReadPoseOptions = {}): PoseInput {
  if (!existsSync(path)) throw new Error(`pose input ${path} does not exist`);
  if (statSync(path).isDirectory()) {
    const names = naturalSort(readdirSync(path).filter((n) => !n.startsWith('.')));
    const images = names.filter((n) => IMAGE_EXT.has(extname(n).toLowerCase()));
    const jsons = names.filter((n) => extname(n).toLowerCase() === '.json');
    if (images.length > 0 && jsons.length > 0) throw new Error(`pose folder ${path} holds both images and .json files; keep one kind`);
    if (images.length > 0) return { kind: 'images', frames: pick(images, o).map((n) => decodeImage(readFileSync(join(path, n)), join(path, n))) };
    if (jsons.length > 0) {
      const frames = pick(jsons, o).flatMap((n) => parseOpenPoseDocument(JSON.parse(readFileSync(join(path, n), 'utf8')) as unknown, join(path, n), o.poseSize));
      return { kind: 'keypoints', frames };
    }
    throw new Error(`pose folder ${path} holds no frames: expected PNG / JPEG images or OpenPose .json files`);
  }
  const ext = extname(path).toLowerCase();
  const bytes = readFileSync(path);
  if (ext === '.gif') return { kind: 'images', frames: pick(decodeGif(bytes, path), o) };
  if (IMAGE_EXT.has(ext)) return { kind: 'images', frames: [decodeImage(bytes, path)] };
  if (ext === '.json') {
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch (e) {
      throw new Error(`${path}: not valid JSON (${(e as Error).message})`);
    }
    return { kind: 'keypoints', frames: pick(parseOpenPoseDocument(json, path, o.poseSize), o) };
  }
  throw new Error(`pose input ${path}: unsupported file type '${ext || '(none)'}' (expected a folder of images or .json files, a .gif, a .png/.jpg, or a .json)`);
}

/** Write frames as <dir>/<prefix>0000.png, ... (atomically each); returns the paths. */
export function writeFramePngs(dir: string, frames: readonly ImageArray[], prefix = 'frame_'): string[] {
  const digits = Math.max(4, String(frames.length - 1).length);
  return frames.map((f, i) => {
    const p = join(dir, `${prefix}${String(i).padStart(digits, '0')}.png`);
    writeFileAtomic(p, encodePng(f));
    return p;
  });
}

/** 8-bit RGBA of an [H, W, 3] image in [0, 1]. */
function toRgba8(f: ImageArray): Uint8Array {
  const [H, W] = f.shape as [number, number, number];
  const out = new Uint8Array(H * W * 4);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const o = 4 * (y * W + x);
      for (let c = 0; c < 3; c++) out[o + c] = Math.round(Math.min(Math.max(f.get(y, x, c) || 0, 0), 1) * 255);
      out[o + 3] = 255;
    }
  }
  return out;
}

/** An animated GIF of the frames at `fps` (looping). */
export function encodeGif(frames: readonly ImageArray[], fps: number): Uint8Array {
  if (frames.length === 0) throw new Error('encodeGif: no frames');
  const [H, W] = frames[0]!.shape as [number, number, number];
  const enc = gifenc.GIFEncoder();
  const delay = Math.max(20, Math.round(1000 / fps)); // GIF delays are centiseconds; most players floor below 20 ms
  for (const f of frames) {
    const rgba = toRgba8(f);
    const palette = gifenc.quantize(rgba, 256);
    enc.writeFrame(gifenc.applyPalette(rgba, palette), W, H, { palette, delay, repeat: 0 });
  }
  enc.finish();
  return enc.bytes();
}

/** Whether a system ffmpeg runs (for MP4 output). */
export function hasFfmpeg(): boolean {
  const r = spawnSync('ffmpeg', ['-version'], { stdio: 'ignore' });
  return r.status === 0;
}

export const VIDEO_FORMATS = ['.gif', '.mp4'] as const;

/** Check before a run that `path` can be written as an animation (format, folder, ffmpeg for MP4). */
export function checkAnimationPath(path: string): void {
  const ext = extname(path).toLowerCase();
  if (!(VIDEO_FORMATS as readonly string[]).includes(ext)) throw new Error(`video file ${path}: unsupported format '${ext || '(none)'}' (use ${VIDEO_FORMATS.join(' or ')})`);
  const dir = dirname(path);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`video file ${path}: folder ${dir} does not exist`);
  if (ext === '.mp4' && !hasFfmpeg()) throw new Error(`video file ${path}: MP4 needs a system ffmpeg on PATH (none found); write a .gif instead`);
}

/** Write the frames as an animated file (GIF, or MP4 through ffmpeg), atomically. */
export function writeAnimation(path: string, frames: readonly ImageArray[], fps: number): void {
  checkAnimationPath(path);
  if (extname(path).toLowerCase() === '.gif') {
    writeFileAtomic(path, encodeGif(frames, fps));
    return;
  }
  const work = mkdtempSync(join(tmpdir(), 'cnx-video-'));
  try {
    writeFramePngs(work, frames, 'f');
    const digits = Math.max(4, String(frames.length - 1).length);
    const tmpOut = join(dirname(path), `.${basename(path)}.${process.pid}.tmp.mp4`);
    const r = spawnSync('ffmpeg', ['-loglevel', 'error', '-y', '-framerate', String(fps), '-i', join(work, `f%0${digits}d.png`),
      '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-vf', 'pad=ceil(iw/2)*2:ceil(ih/2)*2', tmpOut], { encoding: 'utf8' });
    if (r.status !== 0) {
      rmSync(tmpOut, { force: true });
      throw new Error(`ffmpeg failed writing ${path}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`);
    }
    renameSync(tmpOut, path);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
