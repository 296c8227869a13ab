// fill50k-layout datasets (node/fill50k_dataset.ts): the shapes writer produces the layout atomically and
// the reader gives back the generator's exact images and prompts; every kind of bad dataset is refused
// with prompt.json's path and the offending line (and the image file where one is at fault).

import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  imageToRgbBytes, openFill50kDataset, readFill50kIndex, readShapesDatasetInfo, shapeSample, validateFill50kDataset, writeShapesDataset,
  encodePng, rgbBytesToImage, ClipPromptEncoder, TrainingDataCache, controlPixels, disposeTrainingBatch, tinyModels,
} from '@cnx/controlnext';
import { CpuBackend } from '@cnx/tensor';

const root = mkdtempSync(join(tmpdir(), 'cnx-fill50k-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const shapeOpts = { size: 16, seed: 3 };
const good = join(root, 'good');
let made = false;
async function goodDataset(): Promise<string> {
  if (!made) { await writeShapesDataset(good, { ...shapeOpts, count: 6 }); made = true; }
  return good;
}

/** A copy of the good dataset with prompt.json replaced by `lines` (joined with '\n'). */
async function variant(name: string, lines: string[] | string, edit?: (dir: string) => void): Promise<string> {
  const dir = join(root, name);
  cpSync(await goodDataset(), dir, { recursive: true });
  writeFileSync(join(dir, 'prompt.json'), typeof lines === 'string' ? lines : lines.join('\n') + '\n');
  edit?.(dir);
  return dir;
}

const line = (i: number, extra: Record<string, unknown> = {}) => JSON.stringify({ source: `source/${i}.png`, target: `target/${i}.png`, prompt: `p${i}`, ...extra });

describe('fill50k datasets', () => {
  it('writeShapesDataset writes the layout; the reader gives back the exact samples', async () => {
    const dir = await goodDataset();
    expect(readdirSync(dir).sort()).toEqual(['prompt.json', 'shapes_dataset.json', 'source', 'target']);
    const lines = readFileSync(join(dir, 'prompt.json'), 'utf8').trim().split('\n');
    expect(lines.length).toBe(6);
    expect(JSON.parse(lines[2]!)).toEqual({ source: 'source/2.png', target: 'target/2.png', prompt: shapeSample(2, shapeOpts).prompt });
    const ds = await openFill50kDataset(dir);
    expect(ds.length).toBe(6);
    expect(ds.sizes).toEqual({ '16x16': 6 });
    for (let i = 0; i < 6; i++) {
      const s = shapeSample(i, shapeOpts), ex = ds.get(i);
      expect(ex.prompt).toBe(s.prompt);
      expect(ex.line).toBe(i + 1);
      expect(Buffer.from(imageToRgbBytes(ex.target)).equals(Buffer.from(s.target))).toBe(true);
      expect(Buffer.from(imageToRgbBytes(ex.control)).equals(Buffer.from(s.control))).toBe(true);
    }
    expect(() => ds.get(6)).toThrow(/sample 6 out of range \[0, 6\)/);
    expect(readShapesDatasetInfo(dir)).toMatchObject({ start: 0, count: 6, size: 16, seed: 3, control: 'outline' });
    // A held-out continuation from the same seed: indices 6.. .
    const held = join(root, 'held');
    await writeShapesDataset(held, { ...shapeOpts, count: 2, start: 6, control: 'mask' });
    const h = await openFill50kDataset(held);
    expect(h.entries.map((e) => e.source)).toEqual(['source/6.png', 'source/7.png']);
    expect(Buffer.from(imageToRgbBytes(h.get(1).control)).equals(Buffer.from(shapeSample(7, { ...shapeOpts, control: 'mask' }).control))).toBe(true);
  });

  it('writes atomically: refuses a non-empty folder, replaces it only with overwrite, leaves nothing on failure', async () => {
    const dir = join(root, 'atomic');
    mkdirSync(dir);
    writeFileSync(join(dir, 'keep.txt'), 'x');
    await expect(writeShapesDataset(dir, { ...shapeOpts, count: 2 })).rejects.toThrow(/exists and is not empty; choose a new folder \(or overwrite\)/);
    expect(readdirSync(dir)).toEqual(['keep.txt']);
    await writeShapesDataset(dir, { ...shapeOpts, count: 2, overwrite: true });
    expect(existsSync(join(dir, 'keep.txt'))).toBe(false);
    expect((await validateFill50kDataset(dir)).count).toBe(2);
    // A failure half-way (here the progress callback at sample 100) leaves no folder and no temporary.
    const failing = join(root, 'failing');
    await expect(writeShapesDataset(failing, { size: 8, seed: 1, count: 150, onProgress: () => { throw new Error('disk full'); } }))
      .rejects.toThrow(/cannot write .*failing: disk full/);
    expect(existsSync(failing)).toBe(false);
    expect(readdirSync(root).filter((n) => n.includes('.tmp-'))).toEqual([]);
    await expect(writeShapesDataset(join(root, 'bad'), { size: 4, seed: 1, count: 2 })).rejects.toThrow(/size must be an integer in \[8, 4096\], found 4/);
    await expect(writeShapesDataset(join(root, 'bad'), { size: 8, seed: 1, count: 0 })).rejects.toThrow(/count must be an integer in \[1, 10000000\], found 0/);
    expect(existsSync(join(root, 'bad'))).toBe(false);
  });

  it('accepts CRLF line ends, a byte-order mark, blank lines and unknown keys', async () => {
    const dir = await variant('lenient', '\uFEFF' + [line(0, { extra: 1 }), '', line(1)].join('\r\n') + '\r\n');
    const s = await validateFill50kDataset(dir);
    expect(s.entries.map((e) => [e.line, e.prompt])).toEqual([[1, 'p0'], [3, 'p1']]);
  });

  const cases: Array<[string, string[] | string, RegExp, ((dir: string) => void)?]> = [
    ['bad JSON', [line(0), '', '{"source": "source/1.png",'], /prompt\.json line 3: invalid JSON/],
    ['missing key', [line(0), JSON.stringify({ source: 'source/1.png', prompt: 'x' })], /prompt\.json line 2: missing key "target" \(expected keys source, target, prompt; found "source", "prompt"\)/],
    ['non-string key', [JSON.stringify({ source: 'source/0.png', target: 'target/0.png', prompt: 3 })], /prompt\.json line 1: key "prompt" must be a string, found a number/],
    ['not an object', [line(0), '["source/1.png"]'], /prompt\.json line 2: expected a JSON object with keys source, target, prompt, found an array/],
    ['path outside', [line(0), line(1, { source: '../good/source/1.png' })], /prompt\.json line 2: "source" is "\.\.\/good\/source\/1\.png", a path outside the folder/],
    ['absolute path', [line(0, { target: '/etc/passwd' })], /prompt\.json line 1: "target" is "\/etc\/passwd", an absolute path/],
    ['missing image', [line(0), line(1), line(9)], /prompt\.json line 3: "source" image .*source\/9\.png: no such file/],
    ['corrupt image', [line(0), line(1)], /prompt\.json line 2: "target" image .*target\/1\.png: not a PNG or JPEG image/,
      (d) => writeFileSync(join(d, 'target', '1.png'), 'not an image at all')],
    ['image is a folder', [line(0), line(1)], /prompt\.json line 2: "source" image .*source\/1\.png: .*expected a regular file, found a directory/,
      (d) => { rmSync(join(d, 'source', '1.png')); mkdirSync(join(d, 'source', '1.png')); }],
    ['size mismatch', [line(0), line(1)], /prompt\.json line 2: source .*source\/1\.png is 16x16 but target .*target\/1\.png is 16x12/,
      (d) => writeFileSync(join(d, 'target', '1.png'), encodePng(rgbBytesToImage(new Uint8Array(16 * 12 * 3), 12, 16)))],
    ['long line', [line(0), line(1, { prompt: 'x'.repeat(70_000) })], /prompt\.json line 2: longer than 65536 bytes/],
    ['bad UTF-8', Buffer.concat([Buffer.from(line(0) + '\n'), Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x0a])]).toString('latin1'), /prompt\.json line 2: not valid UTF-8/,
      (d) => writeFileSync(join(d, 'prompt.json'), Buffer.concat([Buffer.from(line(0) + '\n'), Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x0a])]))],
    ['no samples', ['', ''], /prompt\.json: no samples/],
  ];
  for (const [name, lines, message, edit] of cases) {
    it(`refuses a dataset with ${name}, naming the file and line`, async () => {
      const dir = await variant(name.replace(/ /g, '_'), lines, edit);
      await expect(validateFill50kDataset(dir)).rejects.toThrow(message);
    });
  }

  it('finds corrupt image data when decoding, names missing folders and files, caps entries', async () => {
    const truncated = await variant('truncated', [line(0), line(1)], (d) => {
      const png = readFileSync(join(d, 'target', '1.png'));
      writeFileSync(join(d, 'target', '1.png'), png.subarray(0, 40)); // header intact, data cut
    });
    expect((await validateFill50kDataset(truncated)).count).toBe(2); // headers only
    await expect(validateFill50kDataset(truncated, { decode: true })).rejects.toThrow(/prompt\.json line 2: "target" image .*target\/1\.png: cannot decode PNG image/);
    const ds = await openFill50kDataset(truncated);
    expect(() => ds.get(1)).toThrow(/prompt\.json line 2: "target" image/);
    await expect(validateFill50kDataset(join(root, 'nowhere'))).rejects.toThrow(/dataset folder .*nowhere: no such folder/);
    const empty = join(root, 'empty');
    mkdirSync(empty);
    await expect(validateFill50kDataset(empty)).rejects.toThrow(/no prompt\.json \(expected the fill50k layout/);
    const many = await variant('many', [line(0), line(1), line(2)]);
    await expect(validateFill50kDataset(many, { maxEntries: 2 })).rejects.toThrow(/prompt\.json line 3: more than 2 samples/);
  });

  it('streams a long index with line numbers intact', async () => {
    const dir = join(root, 'long');
    mkdirSync(dir);
    const n = 30_000;
    // Lines straddle the reader's 64 KiB chunks; every 7th line is blank.
    const text = Array.from({ length: n }, (_, i) => (i % 7 === 3 ? '' : line(i, { prompt: `prompt ${i} ${'y'.repeat(i % 50)}` }))).join('\n');
    writeFileSync(join(dir, 'prompt.json'), text); // no final line end
    let count = 0, lastLine = 0;
    for await (const e of readFill50kIndex(dir)) {
      const i = e.line - 1;
      expect(e.prompt).toBe(`prompt ${i} ${'y'.repeat(i % 50)}`);
      expect(e.line).toBeGreaterThan(lastLine);
      lastLine = e.line; count++;
    }
    expect(lastLine).toBe(n);
    expect(count).toBe(n - Math.floor((n - 4) / 7) - 1);
  });

  it('an opened dataset feeds the training cache (the cnx train path)', async () => {
    const backend = new CpuBackend();
    const models = tinyModels(backend, { control: false });
    const ds = await openFill50kDataset(await goodDataset());
    const cache = await TrainingDataCache.build(ds, {
      backend, vae: models.vae, textEncoder: new ClipPromptEncoder(models.tokenizer, models.textModel), resolution: 16, batchSize: 3, seed: 1,
    });
    expect(cache.length).toBe(6);
    const b = cache.batch(0);
    expect(b.prompts).toEqual(b.indices.map((i) => shapeSample(i, shapeOpts).prompt));
    const ctl = await b.controlImage.data();
    const first = shapeSample(b.indices[0]!, shapeOpts);
    expect(Array.from(ctl.slice(0, 3 * 16 * 16))).toEqual(Array.from(controlPixels(rgbBytesToImage(first.control, 16, 16), 16)));
    disposeTrainingBatch(b);
  });
});
