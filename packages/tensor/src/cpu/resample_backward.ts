// Backward of the spatial resampling ops (CpuBackend.adaptiveAvgPool2d / upsampleNearest), in gather
// form: each input cell sums the output gradients of the cells that read it (no scatter, so the WGSL
// version needs no atomics and the same loop order serves both). float64 sums, rounded once to f32.
//
//  - adaptiveAvgPool2dBackward: output (oy, ox) averaged input rows [floor(oy*H/Ho), ceil((oy+1)*H/Ho))
//    and columns likewise (torch's bins), so dx[iy, ix] = sum over the bins containing (iy, ix) of
//    dy[oy, ox] / (bin height * bin width). Bins overlap when H % Ho != 0: input row iy lies in bins
//    oy = floor(iy*Ho/H) .. floor(((iy+1)*Ho - 1)/H) (poolBinRange).
//  - upsampleNearestBackward: output (oy, ox) copied input (src(oy), src(ox)) with torch's 'nearest'
//    src(o) = min(floor(f32(o * f32(in/out))), in - 1) (the forward's rule, float32 products), so
//    dx[iy, ix] = sum of dy[oy, ox] over src(oy) = iy, src(ox) = ix. src is non-decreasing, so each
//    input row owns a contiguous run of output rows (nearestSourceRuns); rows no output reads get 0.
// Shapes: x [N, C, H, W], dy [N, C, Ho, Wo], dx [N, C, H, W]. Reference: torch's
// adaptive_avg_pool2d_backward and upsample_nearest2d_backward (aten/src/ATen/native/cpu/).

/** Output bins [first, last] (inclusive) of adaptive average pooling that contain input index i. */
export function poolBinRange(i: number, inSize: number, outSize: number): [number, number] {
  const first = Math.floor((i * outSize) / inSize);
  const last = Math.min(outSize - 1, Math.floor(((i + 1) * outSize - 1) / inSize));
  return [first, last];
}

/** Source index of output o under torch 'nearest' (float32 scale and product, as the forward). */
export function nearestSource(o: number, inSize: number, outSize: number): number {
  const scale = Math.fround(inSize / outSize);
  return Math.min(Math.floor(Math.fround(o * scale)), inSize - 1);
}

/** For each input index, the run [start, end) of output indices whose nearest source it is. */
export function nearestSourceRuns(inSize: number, outSize: number): [number, number][] {
  const runs: [number, number][] = Array.from({ length: inSize }, () => [0, 0]);
  let o = 0;
  for (let i = 0; i < inSize; i++) {
    while (o < outSize && nearestSource(o, inSize, outSize) < i) o++;
    const start = o;
    while (o < outSize && nearestSource(o, inSize, outSize) === i) o++;
    runs[i] = [start, o];
  }
  return runs;
}

function check(op: string, dy: Float32Array, dyShape: readonly number[], xShape: readonly number[]): [number, number, number, number, number] {
  const [N, C, H, W] = xShape as [number, number, number, number];
  if (xShape.length !== 4 || dyShape.length !== 4 || dyShape[0] !== N || dyShape[1] !== C || !(H > 0 && W > 0)) {
    throw new Error(`${op}: expected x [N, C, H, W] and dy [N, C, Ho, Wo] with the same N, C, found x [${xShape.join(', ')}], dy [${dyShape.join(', ')}]`);
  }
  const Ho = dyShape[2]!, Wo = dyShape[3]!;
  if (dy.length !== N * C * Ho * Wo) throw new Error(`${op}: dy has ${dy.length} elements, shape [${dyShape.join(', ')}] needs ${N * C * Ho * Wo}`);
  return [N * C, H, W, Ho, Wo];
}

/** dx [N, C, H, W] of adaptive_avg_pool2d(x, [Ho, Wo]) from dy [N, C, Ho, Wo]. */
export function adaptiveAvgPool2dBackward(dy: Float32Array, dyShape: readonly number[], xShape: readonly number[]): Float32Array {
  const [NC, H, W, Ho, Wo] = check('adaptiveAvgPool2dBackward', dy, dyShape, xShape);
  const rowBins = Array.from({ length: H }, (_, i) => poolBinRange(i, H, Ho));
  const colBins = Array.from({ length: W }, (_, i) => poolBinRange(i, W, Wo));
  // 1 / bin size per output row and column
  const rowArea = Array.from({ length: Ho }, (_, o) => Math.ceil(((o + 1) * H) / Ho) - Math.floor((o * H) / Ho));
  const colArea = Array.from({ length: Wo }, (_, o) => Math.ceil(((o + 1) * W) / Wo) - Math.floor((o * W) / Wo));
  const dx = new Float32Array(NC * H * W);
  for (let nc = 0; nc < NC; nc++) {
    for (let iy = 0; iy < H; iy++) {
      const [y0, y1] = rowBins[iy]!;
      for (let ix = 0; ix < W; ix++) {
        const [x0, x1] = colBins[ix]!;
        let s = 0;
        for (let oy = y0; oy <= y1; oy++) {
          for (let ox = x0; ox <= x1; ox++) s += dy[(nc * Ho + oy) * Wo + ox]! / (rowArea[oy]! * colArea[ox]!);
        }
        dx[(nc * H + iy) * W + ix] = s;
      }
    }
  }
  return dx;
}

/** dx [N, C, H, W] of upsample_nearest(x, [Ho, Wo]) from dy [N, C, Ho, Wo]. */
export function upsampleNearestBackward(dy: Float32Array, dyShape: readonly number[], xShape: readonly number[]): Float32Array {
  const [NC, H, W, Ho, Wo] = check('upsampleNearestBackward', dy, dyShape, xShape);
  const rows = nearestSourceRuns(H, Ho), cols = nearestSourceRuns(W, Wo);
  const dx = new Float32Array(NC * H * W);
  for (let nc = 0; nc < NC; nc++) {
    for (let iy = 0; iy < H; iy++) {
      const [y0, y1] = rows[iy]!;
      for (let ix = 0; ix < W; ix++) {
        const [x0, x1] = cols[ix]!;
        let s = 0;
        for (let oy = y0; oy < y1; oy++) for (let ox = x0; ox < x1; ox++) s += dy[(nc * Ho + oy) * Wo + ox]!;
        dx[(nc * H + iy) * W + ix] = s;
      }
    }
  }
  return dx;
}
