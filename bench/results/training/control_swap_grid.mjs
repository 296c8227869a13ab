// Does a `cnx train` checkpoint make the pipeline FOLLOW the control? Loads the base folder and the checkpoint
// through loadPipeline (as `cnx generate --controlnext CKPT --controlnext-unet CKPT/unet.safetensors` does)
// and generates, for held-out shapes controls (indices after the training set: the first K/5 of each of the
// five shape kinds) and C colours, the prompt "a <colour> <the control's shape>" with the same noise (seed)
// in every cell. Writes:
//   control_swap_grid.png  rows: the K controls; columns: control | one generated image per colour
//   control_swap.csv       per cell: IoU of the generated image (segmented by the prompt's colour) with
//                          the cell's own control mask, and with the next row's mask (a control-free model
//                          scores the same on both; the difference is what following the control buys)
// The shape's position and size are drawn at random per sample and named nowhere in the prompt: only the
// control carries them.
//
// usage (after npm run build, from the repository root):
//   node bench/results/training/control_swap_grid.mjs BASE_DIR CHECKPOINT_DIR OUT_DIR [RESOLUTION=96] [START=1024] [K=10]

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ndarray from 'ndarray';
import { imageToTensor, loadPipeline, rgbBytesToImage, shapeIoU, shapeSample, tensorToImages, writePng, SHAPE_COLOURS, SHAPE_KINDS } from '@cnx/controlnext';
import { createBackend } from '@cnx/kernels';

const [baseDir, ckpt, outDir, resArg, startArg, kArg] = process.argv.slice(2);
if (!outDir) { console.error('usage: node control_swap_grid.mjs BASE_DIR CHECKPOINT_DIR OUT_DIR [RESOLUTION] [START] [K]'); process.exit(2); }
const R = Number(resArg ?? 96), START = Number(startArg ?? 1024), PER_KIND = Math.max(1, Math.round(Number(kArg ?? 10) / SHAPE_KINDS.length));
const COLOURS = ['red', 'green', 'blue', 'yellow', 'purple', 'white'];
const be = await createBackend('wasm');
const { pipeline } = loadPipeline(baseDir, be, { controlnext: ckpt, controlnextUnet: join(ckpt, 'unet.safetensors') });
const samples = [];
for (const kind of SHAPE_KINDS) {
  for (let i = START, n = 0; n < PER_KIND; i++) {
    const s = shapeSample(i, { size: R, seed: 0 });
    if (s.shape === kind) { samples.push(s); n++; }
  }
}
const K = samples.length;

const cells = [];   // [row][col] -> ImageArray
const rows = ['row,shape,colour,iou_own_control,iou_next_row_mask'];
for (const [k, s] of samples.entries()) {
  const control = imageToTensor(rgbBytesToImage(s.control, R, R), be);
  const row = [];
  for (const colour of COLOURS) {
    const prompt = `a ${colour} ${s.shape}`;
    const r = await pipeline.generate({ prompt, controlImage: control, seed: 7, numInferenceSteps: 20, guidanceScale: 1, height: R, width: R });
    const [img] = await tensorToImages(r.images);
    r.images.dispose(); r.latents?.dispose();
    row.push(img);
    const rgb = SHAPE_COLOURS[colour];
    const own = shapeIoU(img, { ...s, rgb }).iou;
    const next = samples[(k + 1) % K];
    const other = shapeIoU(img, { ...next, rgb }).iou;
    rows.push(`${k},${s.shape},${colour},${own.toFixed(4)},${other.toFixed(4)}`);
  }
  control.dispose();
  cells.push(row);
}
pipeline.dispose();
be.destroy();

// Grid: a 2-pixel grey gap between cells.
const G = 2, cols = COLOURS.length + 1;
const Wg = cols * R + (cols - 1) * G, Hg = K * R + (K - 1) * G;
const grid = new Float32Array(Hg * Wg * 3).fill(0.3);
const put = (img, r, c) => {
  for (let y = 0; y < R; y++) for (let x = 0; x < R; x++) for (let ch = 0; ch < 3; ch++) {
    grid[((r * (R + G) + y) * Wg + c * (R + G) + x) * 3 + ch] = img.get(y, x, ch);
  }
};
samples.forEach((s, k) => {
  put(rgbBytesToImage(s.control, R, R), k, 0);
  cells[k].forEach((img, j) => put(img, k, j + 1));
});
mkdirSync(outDir, { recursive: true });
writePng(join(outDir, 'control_swap_grid.png'), ndarray(grid, [Hg, Wg, 3]));
writeFileSync(join(outDir, 'control_swap.csv'), rows.join('\n') + '\n');
const own = rows.slice(1).map((l) => Number(l.split(',')[3])), other = rows.slice(1).map((l) => Number(l.split(',')[4]));
const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
console.log(`mean IoU with the own control ${mean(own).toFixed(3)}, with the next row's mask ${mean(other).toFixed(3)} (${own.length} images)`);
