// Node only: write the tiny random-weight model folder (pipelines/tiny_model_files.ts) to disk, for
// `cnx tiny-model DIR`, the README's first run and tests, with an example control image beside the
// ControlNeXt files (controlnext/example_condition.png: a depth-map-like radial gradient, as ControlNeXt's
// repository ships example conditions). Refuses to write into a folder that already
// holds files unless asked to overwrite, so a typo cannot scatter files over a real model folder.

import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import ndarray from 'ndarray';
import { TINY_IMAGE_SIZE } from '../pipelines/tiny_model.js';
import { tinyModelFiles, type TinyModelFilesOptions } from '../pipelines/tiny_model_files.js';
import { encodePng } from './image_files.js';

export interface WriteTinyModelOptions extends TinyModelFilesOptions {
  /** Write into a folder that already holds files (same-named files are replaced). */
  overwrite?: boolean;
}

/** Write the tiny model folder to `dir`; returns the relative paths written with their sizes in bytes. */
export async function writeTinyModel(dir: string, opts: WriteTinyModelOptions = {}): Promise<{ path: string; bytes: number }[]> {
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new Error(`${dir} is a file; the tiny model needs a folder`);
    if (!opts.overwrite && readdirSync(dir).length > 0) throw new Error(`${dir} is not empty; choose a new folder (or overwrite: --overwrite)`);
  }
  const files = await tinyModelFiles(opts);
  const written: { path: string; bytes: number }[] = [];
  for (const [rel, content] of Object.entries(files)) {
    const p = join(dir, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, content);
    written.push({ path: rel, bytes: typeof content === 'string' ? Buffer.byteLength(content) : content.byteLength });
  }
  const png = encodePng(exampleCondition(TINY_IMAGE_SIZE));
  writeFileSync(join(dir, 'controlnext', 'example_condition.png'), png);
  written.push({ path: 'controlnext/example_condition.png', bytes: png.byteLength });
  return written;
}

/** A size x size RGB image in [0, 1]: near (bright) in the middle, far (dark) at the corners. */
export function exampleCondition(size: number): ndarray.NdArray<Float32Array> {
  const data = new Float32Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const r = Math.hypot(x - size / 2, y - size / 2) / (size / Math.SQRT2);
      data.fill(Math.max(0, 1 - r), (y * size + x) * 3, (y * size + x) * 3 + 3);
    }
  }
  return ndarray(data, [size, size, 3]);
}
