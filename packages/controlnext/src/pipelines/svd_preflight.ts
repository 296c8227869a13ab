// Before a video run allocates its activations: the largest single tensors of each stage (analytic, from the
// models' configurations and the run's sizes), the per-window prefix cache and the weights, checked
// against what stops a run: on WebGPU the adapter's maxStorageBufferBindingSize (NVIDIA caps storage
// bindings at 2 GiB whatever the card's memory) and maxBufferSize; on the CPU backend the host's memory.
// The error names the tensor, its size, the limit and the option that shrinks it.
//
// Largest tensors (f32, N = frames per window x 2 under CFG):
//   UNet        the level-0 up block's concatenated input [N, C1 + C0, h, w] (feed-forward chunks are capped by
//               FeedForward itself, attention never materialises scores)
//   control     v2: the stem output / down_res.0 prefix [frames per window (x 2 on the reference path), 128, ~H/2, ~W/2]
//               v1: the stem before its max pool, same size
//   VAE decode  an up block's upsampled output [decode chunk, C, H, W] (256 channels at full size for SVD)

import type { Backend } from '@cnx/tensor';
import { maxBindingBytes } from '@cnx/unet';
import type { SvdControlNeXtPipeline } from './svd_pipeline.js';

export interface SvdRunSize {
  height: number;
  width: number;
  frames: number;
  framesPerBatch: number;
  windows: number;
  cfg: boolean;
  decodeChunk: number;
  controlPath: 'ours' | 'reference';
}

export interface SvdTensorEstimate {
  name: string;
  bytes: number;
  /** What to change to shrink it. */
  advice: string;
}

export interface SvdMemoryEstimate {
  weightBytes: number;
  /** The per-window prefix cache of the control module (ours), for the whole generation. */
  prefixCacheBytes: number;
  largest: SvdTensorEstimate[];
  /** A rough total: weights + cache + the UNet's skips and a few live activations. */
  totalBytes: number;
}

const GiB = 2 ** 30;
export const formatBytes = (b: number) => (b >= GiB ? `${(b / GiB).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(0)} MiB`);

export function estimateSvdMemory(pipe: SvdControlNeXtPipeline, s: SvdRunSize): SvdMemoryEstimate {
  const { unet, vae, controlnext, imageEncoder } = pipe.components;
  const f = vae.downscale, h = s.height / f, w = s.width / f;
  const N = s.framesPerBatch * (s.cfg ? 2 : 1);
  const boc = unet.config.block_out_channels;
  const upIn = (boc[1] ?? boc[0]!) + boc[0]!;
  const largest: SvdTensorEstimate[] = [
    { name: `UNet up_blocks.${boc.length - 1} input [${N}, ${upIn}, ${h}, ${w}]`, bytes: 4 * N * upIn * h * w, advice: '--window (frames per window) or --width/--height' },
  ];
  const vb = [...vae.config.block_out_channels].reverse();
  let vmax = 0, vname = '';
  vb.forEach((c, i) => {
    const scale = 2 ** Math.min(i + 1, vb.length - 1);
    const bytes = 4 * s.decodeChunk * c * h * scale * w * scale;
    if (bytes > vmax) { vmax = bytes; vname = `VAE decoder up_blocks.${i} output [${s.decodeChunk}, ${c}, ${h * scale}, ${w * scale}]`; }
  });
  largest.push({ name: vname, bytes: vmax, advice: '--decode-chunk' });
  let prefixCacheBytes = 0;
  if (controlnext) {
    const st = (controlnext.module as unknown as { structure: { stemChannels?: readonly number[]; outChannels?: readonly number[] } }).structure;
    const stem = st.stemChannels?.[2] ?? 128, first = st.outChannels?.[0] ?? stem;
    const rows = s.framesPerBatch * (s.controlPath === 'reference' && s.cfg ? 2 : 1);
    const perFrame = (s.height / 2) * (s.width / 2);
    const bytes = 4 * rows * Math.max(stem, first) * perFrame;
    largest.push({ name: `control module stem output [${rows}, ${Math.max(stem, first)}, ~${s.height / 2}, ~${s.width / 2}]`, bytes, advice: '--window or --width/--height' });
    if (s.controlPath === 'ours') prefixCacheBytes = s.windows * 4 * s.framesPerBatch * (first + stem) * perFrame;
  }
  type WithParams = { namedParameters(): [string, { storage: { byteLength: number } }][] };
  const models = [unet, vae, imageEncoder, controlnext?.module].filter((m) => m !== undefined) as unknown as WithParams[];
  const weightBytes = models.reduce((n, m) => n + m.namedParameters().reduce((k, [, t]) => k + t.storage.byteLength, 0), 0);
  const skips = 4 * N * boc[0]! * h * w * 6;
  return { weightBytes, prefixCacheBytes, largest, totalBytes: weightBytes + prefixCacheBytes + skips + 3 * Math.max(...largest.map((l) => l.bytes)) };
}

/** Throws naming the first limit the run would exceed; returns notes (estimates) to print. */
export function svdPreflight(backend: Backend, e: SvdMemoryEstimate, hostMemoryBytes?: number): string[] {
  const notes = [`memory estimate: weights ${formatBytes(e.weightBytes)}, control prefix cache ${formatBytes(e.prefixCacheBytes)}, ` +
    `largest tensor ${formatBytes(Math.max(...e.largest.map((l) => l.bytes)))}, total about ${formatBytes(e.totalBytes)}`];
  const binding = maxBindingBytes(backend);
  const maxBuffer = (backend as unknown as { limits?: { maxBufferSize?: number } }).limits?.maxBufferSize ?? Infinity;
  for (const t of e.largest) {
    if (t.bytes > binding) {
      throw new Error(`${t.name} needs ${formatBytes(t.bytes)}, above this adapter's maxStorageBufferBindingSize of ${formatBytes(binding)}` +
        `${binding <= 2 * GiB ? ' (NVIDIA adapters cap storage bindings at 2 GiB)' : ''}; reduce ${t.advice}`);
    }
    if (t.bytes > maxBuffer) throw new Error(`${t.name} needs ${formatBytes(t.bytes)}, above this adapter's maxBufferSize of ${formatBytes(maxBuffer)}; reduce ${t.advice}`);
  }
  if (backend.name === 'cpu' && hostMemoryBytes !== undefined && e.totalBytes > hostMemoryBytes) {
    throw new Error(`the run needs about ${formatBytes(e.totalBytes)} of host memory (weights ${formatBytes(e.weightBytes)}), this machine has ` +
      `${formatBytes(hostMemoryBytes)}; use --fp16, fewer frames per --window, a smaller --width/--height, or --backend webgpu`);
  }
  return notes;
}
