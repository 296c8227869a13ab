// `cnx video`: a reference image + pose frames -> video frames (PNG) and an animated file, with Stable
// Video Diffusion and ControlNeXt-SVD (pipelines/svd_pipeline.ts). Without --model it runs the tiny built-in
// model with random weights (pipelines/tiny_svd_model.ts) and says so; without --image / --poses there it makes
// its own reference image and a short dancing stick figure, drawn by our pose renderer.

import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import ndarray from 'ndarray';
import { createBackend } from '@cnx/kernels';
import type { Backend, Tensor } from '@cnx/tensor';
import { resizeImage, tensorToImages, type ImageArray } from '../images.js';
import { readImage } from '../node/image_files.js';
import { formatDuration } from './progress.js';
import { loadSvdPipeline } from '../node/svd_pipeline_loading.js';
import { applyPoseAlignment, fitPoseAlignment, parseOpenPoseDocument, type PoseFrame } from '../video/pose_keypoints.js';
import { renderPose } from '../video/pose_render.js';
import { estimateSvdMemory, svdPreflight } from '../pipelines/svd_preflight.js';
import { frameWindows, type SvdControlNeXtPipeline, type SvdProgress } from '../pipelines/svd_pipeline.js';
import { TINY_SVD_SIZE, tinySvdPipeline } from '../pipelines/tiny_svd_model.js';
import { checkAnimationPath, readPoseInput, writeAnimation, writeFramePngs } from '../node/video_files.js';
import type { CommandIO } from './generate_command.js';
import { formatOptions, parseOptions, UsageError, type OptionSpec } from './options.js';

export const VIDEO_OPTIONS: readonly OptionSpec[] = [
  { name: 'model', type: 'string', metavar: 'DIR', description: 'Stable Video Diffusion (SVD-xt) folder in the diffusers layout (unet/, vae/, image_encoder/, scheduler/); without it a tiny built-in model with RANDOM weights runs' },
  { name: 'controlnext', type: 'string', metavar: 'FILE', description: 'ControlNeXt-SVD control module (safetensors file or folder; v1 / v2 detected)' },
  { name: 'controlnext-unet', type: 'string', metavar: 'FILE', description: 'the ControlNeXt-SVD release\'s full UNet (safetensors), replacing unet/\'s weights' },
  { name: 'variant', type: 'string', metavar: 'NAME', description: 'expected ControlNeXt-SVD variant (checked against the file; the tiny model builds this one)', choices: ['svd', 'svd_v2'] },
  { name: 'image', type: 'string', metavar: 'FILE', description: 'reference image (PNG / JPEG), resized to cover the output size and centre-cropped' },
  { name: 'poses', type: 'string', metavar: 'PATH', description: 'pose frames: a folder of images, an animated GIF, or OpenPose keypoints (a folder of .json files or one .json)' },
  { name: 'ref-pose', type: 'string', metavar: 'FILE', description: 'keypoints (.json) of the reference image: drawn as frame 0, and the anchor of the pose alignment' },
  { name: 'align', type: 'boolean', description: 'align keypoint poses to --ref-pose as the ControlNeXt-SVD-v2 pre-processing does', default: true },
  { name: 'pose-size', type: 'string', metavar: 'WxH', description: 'pixel size of keypoint coordinates when the .json files do not give canvas_width/height' },
  { name: 'stride', type: 'integer', metavar: 'N', description: 'use every N-th pose frame (sample_stride)', default: 1, min: 1, max: 1000 },
  { name: 'frames', type: 'integer', metavar: 'N', description: 'at most N frames (default: all pose frames; the tiny model\'s own poses: 8)', min: 1, max: 10000 },
  { name: 'width', type: 'integer', metavar: 'PX', description: 'output width (default 576; tiny model 64)', min: 16, max: 4096 },
  { name: 'height', type: 'integer', metavar: 'PX', description: 'output height (default 1024; tiny model 64)', min: 16, max: 4096 },
  { name: 'window', type: 'integer', metavar: 'N', description: 'frames per sliding window (frames_per_batch)', default: 14, min: 1, max: 1000 },
  { name: 'overlap', type: 'integer', metavar: 'N', description: 'frames shared by consecutive windows (below --window)', default: 4, min: 0, max: 999 },
  { name: 'steps', type: 'integer', metavar: 'N', description: 'denoising steps', default: 25, min: 1, max: 1000 },
  { name: 'guidance-min', type: 'number', metavar: 'G', description: 'guidance of the first frame of a window (ramps linearly to --guidance-max)', default: 3, min: 0, max: 30 },
  { name: 'guidance-max', type: 'number', metavar: 'G', description: 'guidance of the last frame of a window (classifier-free guidance runs when >= 1)', default: 3, min: 0, max: 30 },
  { name: 'fps', type: 'integer', metavar: 'N', description: 'frame rate of the animated file (and the conditioning fps with --time-ids arguments)', default: 7, min: 1, max: 120 },
  { name: 'motion-bucket', type: 'integer', metavar: 'N', description: 'SVD motion bucket (used with --time-ids arguments)', default: 127, min: 0, max: 1023 },
  { name: 'noise-aug', type: 'number', metavar: 'S', description: 'noise added to the reference before VAE encoding', default: 0.02, min: 0, max: 1 },
  { name: 'time-ids', type: 'string', metavar: 'KIND', description: 'added time ids: fixed = [6, 128, 0.02] as both ControlNeXt-SVD pipelines, arguments = [fps-1, motion bucket, noise aug]', default: 'fixed', choices: ['fixed', 'arguments'] },
  { name: 'control-scale', type: 'number', metavar: 'S', description: 'ControlNeXt strength (1 = the release behaviour)', default: 1, min: 0, max: 10 },
  { name: 'decode-chunk', type: 'integer', metavar: 'N', description: 'frames per VAE decoder call (temporal mixing stays inside a chunk)', default: 4, min: 1, max: 1000 },
  { name: 'seed', type: 'integer', metavar: 'N', description: 'random seed (default: a random one, printed)', min: 0, max: 4294967295 },
  { name: 'output', type: 'string', metavar: 'DIR', description: 'folder for the numbered PNG frames (created if missing)', default: 'video_out' },
  { name: 'video', type: 'string', metavar: 'FILE', description: 'animated output: .gif, or .mp4 where a system ffmpeg exists (default DIR/video.gif)' },
  { name: 'prefix-cache', type: 'boolean', description: 'keep each window\'s control-module prefix for the whole run (--no-prefix-cache: recompute it every step, less memory)', default: true },
  { name: 'fp16', type: 'boolean', description: 'keep weights in 16-bit storage (half the memory; computation stays f32) and prefer .fp16 files' },
  { name: 'backend', type: 'string', metavar: 'NAME', description: 'where to compute', default: 'cpu', choices: ['cpu', 'webgpu'] },
  { name: 'adapter', type: 'string', metavar: 'NAME', description: 'WebGPU adapter preference: gpu, swiftshader, lavapipe, llvmpipe' },
  { name: 'help', type: 'boolean', description: 'show this help' },
];

export const VIDEO_USAGE = 'usage: cnx video [--model DIR --controlnext FILE] --image FILE --poses PATH [options]';

export function videoHelp(): string {
  return `${VIDEO_USAGE}

Generate a video from a reference image and a sequence of poses with Stable Video Diffusion and a
ControlNeXt-SVD module (v1 or v2), the way the released ControlNeXt-SVD pipelines run: sliding windows of
frames with overlap, a per-frame guidance ramp, chunked temporal VAE decoding. Poses are images
(a folder or an animated GIF) or OpenPose keypoints drawn by our renderer (keypoint detection is not
part of this tool); with --ref-pose the keypoints are aligned to the reference image as the v2
pre-processing does, and the reference pose becomes frame 0.

Without --model, a tiny model with random weights runs so that a first try works anywhere: its frames
are noise, not a video; without --image / --poses it then makes its own reference and a dancing stick
figure.

Options:
${formatOptions(VIDEO_OPTIONS)}

Output: progress per step and window with the ETA on stderr; one line on stdout at the end:
"wrote N frames WxH to DIR and FILE seed=N steps=N windows=N variant=NAME seconds=S".

Examples:
  cnx video --steps 2 --output tiny_video
  cnx video --model ./stable-video-diffusion-img2vid-xt-1-1 --controlnext ./controlnext-svd_v2.safetensors \\
    --controlnext-unet ./controlnext-svd_v2-unet.safetensors --fp16 --backend webgpu \\
    --image dancer.png --poses ./keypoints/ --ref-pose dancer_pose.json --window 14 --overlap 4 --video dance.mp4`;
}

/** [H, W, 3] image resized to cover height x width (aspect kept), then centre-cropped (the v2 pre-processing). */
export function coverCrop(image: ImageArray, height: number, width: number): ImageArray {
  const [h, w] = image.shape as [number, number, number];
  const ratio = h / w;
  const [rh, rw] = ratio < height / width ? [height, Math.ceil(height / ratio)] : [Math.ceil(width * ratio), width];
  const r = resizeImage(image, rh, rw);
  const top = Math.round((rh - height) / 2), left = Math.round((rw - width) / 2);
  const out = new Float32Array(height * width * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) out[(y * width + x) * 3 + c] = r.get(y + top, x + left, c);
  return ndarray(out, [height, width, 3]);
}

/** [F] of [H, W, 3] -> [F, 3, H, W] on the backend. */
function framesToTensor(frames: readonly ImageArray[], backend: Backend): Tensor {
  const [H, W] = frames[0]!.shape as [number, number, number];
  const data = new Float32Array(frames.length * 3 * H * W);
  frames.forEach((f, i) => {
    for (let c = 0; c < 3; c++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[((i * 3 + c) * H + y) * W + x] = f.get(y, x, c);
  });
  return backend.fromRaw(data, [frames.length, 3, H, W]);
}

/** A built-in dancing stick figure (OpenPose COCO body points, normalised): frame k of n. */
export function demoPose(k: number, n: number): PoseFrame {
  const t = (2 * Math.PI * k) / Math.max(n, 1);
  const sway = 0.05 * Math.sin(t), arm = 0.12 * Math.sin(t), leg = 0.06 * Math.sin(t);
  const pts: [number, number][] = [
    [0.5 + sway, 0.18], [0.5 + sway, 0.3], [0.4 + sway, 0.3], [0.33 + sway, 0.42 - arm], [0.3 + sway, 0.3 - 2 * arm],
    [0.6 + sway, 0.3], [0.67 + sway, 0.42 + arm], [0.7 + sway, 0.3 + 2 * arm], [0.44, 0.55], [0.42 - leg, 0.72], [0.42 - leg, 0.9],
    [0.56, 0.55], [0.58 + leg, 0.72], [0.58 + leg, 0.9], [0.48 + sway, 0.16], [0.52 + sway, 0.16], [0.46 + sway, 0.17], [0.54 + sway, 0.17],
  ];
  const body = new Float64Array(36);
  pts.forEach(([x, y], i) => { body[2 * i] = x; body[2 * i + 1] = y; });
  const empty = new Float64Array(0);
  return { width: 1, height: 1, people: [{ body, bodyScore: new Float64Array(18).fill(0.9), face: empty, faceScore: empty, hands: [empty, empty], handScores: [empty, empty] }] };
}

/** A smooth colour gradient with a disc: the tiny model's built-in reference image. */
function demoImage(height: number, width: number): ImageArray {
  const out = new Float32Array(height * width * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const inDisc = (x - width / 2) ** 2 + (y - height / 3) ** 2 < (Math.min(height, width) / 6) ** 2;
      const o = 3 * (y * width + x);
      out[o] = inDisc ? 0.9 : x / width;
      out[o + 1] = inDisc ? 0.7 : y / height;
      out[o + 2] = inDisc ? 0.5 : 0.4;
    }
  }
  return ndarray(out, [height, width, 3]);
}

function parseSize(spec: string): { width: number; height: number } {
  const m = /^(\d+)x(\d+)$/.exec(spec);
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new UsageError(`--pose-size must be WxH (pixels, e.g. 1080x1920), found '${spec}'`);
  return { width: Number(m[1]), height: Number(m[2]) };
}

function readJsonFile(path: string, what: string): unknown {
  if (!existsSync(path)) throw new UsageError(`${what}: file ${path} does not exist`);
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`${what}: ${path} is not valid JSON (${(e as Error).message})`);
  }
}


/** Run `cnx video`; returns the process exit status. */
export async function runVideo(argv: readonly string[], io: CommandIO): Promise<number> {
  const { values: v, positional } = parseOptions(argv, VIDEO_OPTIONS);
  if (v['help']) { io.stdout.write(videoHelp() + '\n'); return 0; }
  if (positional.length > 0) throw new UsageError(`unexpected argument '${positional[0]}' (options start with --)`);
  const str = (k: string) => v[k] as string | undefined;
  const num = (k: string) => v[k] as number | undefined;

  // Everything that can be checked before loading a model.
  const model = str('model');
  if (model !== undefined && (!existsSync(model) || !statSync(model).isDirectory())) {
    throw new UsageError(`--model: folder ${model} does not exist (expected an SVD-xt folder in the diffusers layout: unet/, vae/, image_encoder/, scheduler/)`);
  }
  if (model === undefined && (str('controlnext') || str('controlnext-unet'))) throw new UsageError('--controlnext / --controlnext-unet need --model (the base SVD folder)');
  if (model !== undefined && !str('controlnext')) throw new UsageError('--model needs --controlnext FILE (the ControlNeXt-SVD control module)');
  if (model !== undefined && (!str('image') || !str('poses'))) throw new UsageError('--model needs --image FILE (the reference) and --poses PATH');
  const tiny = model === undefined;
  const height = num('height') ?? (tiny ? TINY_SVD_SIZE.height : 1024);
  const width = num('width') ?? (tiny ? TINY_SVD_SIZE.width : 576);
  const window = num('window')!, overlap = num('overlap')!;
  if (overlap >= window) throw new UsageError(`--overlap must be below --window (${window}), found ${overlap}`);
  const outDir = resolve(str('output')!);
  const videoPath = resolve(str('video') ?? join(outDir, 'video.gif'));
  const poseSize = str('pose-size') ? parseSize(str('pose-size')!) : undefined;

  // Inputs: reference image and pose frames (decoded before the model load, so bad files fail fast).
  let refImage = str('image') ? readImage(str('image')!) : undefined;
  const maxFrames = num('frames');
  let controlImages: ImageArray[];
  let poseNote = '';
  if (str('poses')) {
    const input = readPoseInput(str('poses')!, { stride: num('stride'), poseSize, maxFrames: maxFrames === undefined ? undefined : maxFrames - (str('ref-pose') ? 1 : 0) });
    if (input.kind === 'images') {
      if (str('ref-pose')) throw new UsageError('--ref-pose applies to keypoint poses (.json); the pose images are used as they are');
      controlImages = input.frames.map((f) => resizeImage(f, height, width));
      poseNote = `${controlImages.length} pose images from ${str('poses')}`;
    } else {
      let frames = input.frames;
      const refPath = str('ref-pose');
      if (refPath) {
        const ref = parseOpenPoseDocument(readJsonFile(refPath, '--ref-pose'), refPath, { width, height })[0]!;
        if (v['align']) {
          const al = fitPoseAlignment(ref, frames, { width, height });
          frames = frames.map((f) => applyPoseAlignment(f, al));
          poseNote = `aligned to --ref-pose (a = [${al.a.map((x) => x.toFixed(3)).join(', ')}], b = [${al.b.map((x) => x.toFixed(3)).join(', ')}], ${al.points} points); `;
        }
        frames = [ref, ...frames];
      }
      controlImages = frames.map((f) => ndarray(renderPose(f, height, width), [height, width, 3]));
      poseNote += `${controlImages.length} pose frames drawn from keypoints in ${str('poses')}`;
    }
  } else {
    if (!tiny) throw new UsageError('--poses PATH is required');
    const n = maxFrames ?? 8;
    controlImages = Array.from({ length: n }, (_, k) => ndarray(renderPose(demoPose(k, n), height, width), [height, width, 3]));
    poseNote = `${n} frames of the built-in dancing stick figure`;
  }
  if (controlImages.length === 0) throw new UsageError('no pose frames to use');
  refImage ??= demoImage(height, width);
  const reference = coverCrop(refImage, height, width);
  const F = controlImages.length;
  // Window checks before loading (the pipeline checks again).
  try {
    frameWindows(F, window, Math.min(overlap, Math.min(window, F) - 1));
  } catch (e) {
    throw new UsageError(`--window / --overlap: ${(e as Error).message}`);
  }
  if (!existsSync(outDir)) mkdirSync(outDir, { recursive: true });
  else if (!statSync(outDir).isDirectory()) throw new UsageError(`--output: ${outDir} is not a folder`);
  try {
    checkAnimationPath(videoPath);
  } catch (e) {
    throw new UsageError(`--video: ${(e as Error).message}`);
  }

  const backend: Backend = await createBackend(str('backend')!, { adapter: str('adapter'), weightDtype: v['fp16'] ? 'f16' : 'f32' });
  io.stderr.write(`backend: ${backend.description}\n`);
  let pipe: SvdControlNeXtPipeline | undefined;
  const owned: Tensor[] = [];
  try {
    if (tiny) {
      io.stderr.write('NOTE: no --model given: running the tiny built-in SVD + ControlNeXt-SVD model with RANDOM weights. The frames are noise from random weights, not a video.\n');
      pipe = tinySvdPipeline(backend, { variant: (str('variant') as 'svd' | 'svd_v2' | undefined) ?? 'svd_v2' });
    } else {
      pipe = loadSvdPipeline(model!, backend, {
        controlnext: str('controlnext'), controlnextUnet: str('controlnext-unet'), variant: str('variant') as 'svd' | 'svd_v2' | undefined, prefer: v['fp16'] ? 'fp16' : 'fp32',
      });
    }
    const cnx = pipe.components.controlnext!;
    io.stderr.write(`controlnext: ControlNeXt-SVD ${cnx.variant.name === 'svd' ? 'v1' : 'v2'} (${cnx.numParameters().toLocaleString('en-US')} parameters), injected at ${cnx.site}; ${poseNote}\n`);
    const m = pipe.sizeMultiple;
    if (height % m !== 0 || width % m !== 0) throw new UsageError(`--width/--height must be multiples of ${m} for this model, found ${width}x${height}`);
    const fpb = Math.min(window, F), ov = Math.min(overlap, fpb - 1);
    const windows = frameWindows(F, fpb, ov);
    const cfg = num('guidance-max')! >= 1;
    const notes = svdPreflight(backend, estimateSvdMemory(pipe, {
      height, width, frames: F, framesPerBatch: fpb, windows: v['prefix-cache'] ? windows.length : 1, cfg, decodeChunk: Math.min(num('decode-chunk')!, F), controlPath: 'ours',
    }), totalmem());
    notes.forEach((n) => io.stderr.write(`${n}\n`));

    const image = framesToTensor([reference], backend);
    const control = framesToTensor(controlImages, backend);
    owned.push(image, control);
    const seed = num('seed') ?? Math.floor(Math.random() * 2 ** 32);
    const steps = num('steps')!;
    const t0 = performance.now();
    const units = steps * windows.length;
    const tty = io.stderr.isTTY === true;
    let drew = false;
    const onProgress = (p: SvdProgress) => {
      const elapsed = (performance.now() - t0) / 1000;
      if (p.phase === 'decode') {
        if (tty) { io.stderr.write(`\rdecoding frames ${p.done}/${p.total}\x1b[K`); drew = true; }
        return;
      }
      const done = (p.done - 1) * p.windows! + p.window!;
      const eta = elapsed / done * (units - done);
      const line = `step ${p.done}/${p.total}  window ${p.window}/${p.windows}  ${(elapsed / done).toFixed(2)} s/window  ETA ${formatDuration(eta)}`;
      if (tty) { io.stderr.write(`\r${line}\x1b[K`); drew = true; } else if (p.window === p.windows) io.stderr.write(`${line}\n`);
    };
    const r = await pipe.generate({
      image, controlFrames: control, numInferenceSteps: steps, minGuidanceScale: num('guidance-min'), maxGuidanceScale: num('guidance-max'),
      framesPerBatch: window, overlap: ov, fps: num('fps'), motionBucketId: num('motion-bucket'), noiseAugStrength: num('noise-aug'),
      timeIds: str('time-ids') as 'fixed' | 'arguments', decodeChunkSize: Math.min(num('decode-chunk')!, F), controlScale: num('control-scale'), seed,
      cachePrefix: v['prefix-cache'] as boolean,
      onProgress,
    });
    if (drew) io.stderr.write('\n');
    const frames = await tensorToImages(r.frames!);
    [r.frames, r.decoded, r.latents].forEach((t) => t?.dispose());
    const seconds = (performance.now() - t0) / 1000;
    const paths = writeFramePngs(outDir, frames);
    writeAnimation(videoPath, frames, num('fps')!);
    io.stdout.write(`wrote ${paths.length} frames ${width}x${height} to ${outDir} and ${videoPath} seed=${seed} steps=${steps} windows=${windows.length} ` +
      `variant=${cnx.variant.name} seconds=${seconds.toFixed(2)}\n`);
    return 0;
  } finally {
    owned.forEach((t) => t.dispose());
    pipe?.dispose();
    backend.destroy();
  }
}

