// Resampling of [N, C, H, W] maps: torch's 'nearest' upsampling and adaptive average pooling.
// Backward: the gather-form gradient ops of grad_ops/resample_backward.ts (nothing saved but the shape).

import { adaptiveAvgPool2dBackwardOp, upsampleNearestBackwardOp } from '../grad_ops/resample_backward.js';
import { defineOp, expectF32, expectRank, f32, runOp1 } from '../op_definition.js';

export interface ResizeParams {
  /** Output [Ho, Wo]. */
  size: readonly [number, number];
}

/** Per-bin [start, end) of adaptive average pooling (torch's rule): floor(i*In/Out), ceil((i+1)*In/Out). */
export function poolBins(inSize: number, outSize: number): [number, number][] {
  return Array.from({ length: outSize }, (_, i) => [Math.floor((i * inSize) / outSize), Math.ceil(((i + 1) * inSize) / outSize)]);
}

function checkResize(op: string, x: Parameters<typeof expectF32>[1][number], size: readonly [number, number]): number[] {
  expectF32(op, [x]);
  const m = expectRank(op, x, 4, 'input [N, C, H, W]');
  if (!size.every((d) => Number.isInteger(d) && d > 0)) throw new Error(`${op}: expected a positive integer size [Ho, Wo], found [${size.join(', ')}]`);
  return [m.shape[0]!, m.shape[1]!, size[0], size[1]];
}

/** x [N, C, H, W] -> [N, C, Ho, Wo], torch 'nearest': src = floor(dst * f32(H / Ho)). */
export const upsampleNearestOp = defineOp<ResizeParams>({
  name: 'upsample_nearest',
  outputs([x], { size }) {
    return f32(checkResize('upsampleNearest', x, size));
  },
  cpu([x], { size }) {
    const [N, C, H, W] = x!.shape as [number, number, number, number];
    const [Ho, Wo] = size;
    const X = x!.data as Float32Array;
    const out = new Float32Array(N * C * Ho * Wo);
    // torch computes the source index with a float32 scale = in/out.
    const fy = Math.fround(H / Ho), fx = Math.fround(W / Wo);
    for (let nc = 0; nc < N * C; nc++) {
      for (let oy = 0; oy < Ho; oy++) {
        const iy = Math.min(Math.floor(Math.fround(oy * fy)), H - 1);
        for (let ox = 0; ox < Wo; ox++) {
          const ix = Math.min(Math.floor(Math.fround(ox * fx)), W - 1);
          out[(nc * Ho + oy) * Wo + ox] = X[(nc * H + iy) * W + ix]!;
        }
      }
    }
    return [out];
  },
  saves: () => ({ inputs: [], outputs: [] }),
  backward({ inputShapes }, [g]) {
    const s = inputShapes[0]!;
    return [runOp1(upsampleNearestBackwardOp, [g], { inputSize: [s[2]!, s[3]!] })];
  },
});

/** x [N, C, H, W] -> [N, C, Ho, Wo], the mean of each poolBins() cell. */
export const adaptiveAvgPool2dOp = defineOp<ResizeParams>({
  name: 'adaptive_avg_pool2d',
  outputs([x], { size }) {
    return f32(checkResize('adaptiveAvgPool2d', x, size));
  },
  cpu([x], { size }) {
    const [N, C, H, W] = x!.shape as [number, number, number, number];
    const [Ho, Wo] = size;
    const X = x!.data as Float32Array;
    const out = new Float32Array(N * C * Ho * Wo);
    const rows = poolBins(H, Ho), cols = poolBins(W, Wo);
    for (let nc = 0; nc < N * C; nc++) {
      for (let oy = 0; oy < Ho; oy++) {
        const [y0, y1] = rows[oy]!;
        for (let ox = 0; ox < Wo; ox++) {
          const [x0, x1] = cols[ox]!;
          let s = 0;
          for (let y = y0; y < y1; y++) for (let xx = x0; xx < x1; xx++) s += X[(nc * H + y) * W + xx]!;
          out[(nc * Ho + oy) * Wo + ox] = s / ((y1 - y0) * (x1 - x0));
        }
      }
    }
    return [out];
  },
  saves: () => ({ inputs: [], outputs: [] }),
  backward({ inputShapes }, [g]) {
    const s = inputShapes[0]!;
    return [runOp1(adaptiveAvgPool2dBackwardOp, [g], { inputSize: [s[2]!, s[3]!] })];
  },
});
