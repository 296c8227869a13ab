// The CLI through its main(): help for every command, the documented errors (missing model folder,
// bad image file, unknown scheduler, out-of-range option: each naming the option or file), a run of the
// tiny built-in model writing a PNG with a parseable result line, and the progress line format.

import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main, parseOptions, progressLine, readImage, UsageError } from '@cnx/controlnext';

const dir = mkdtempSync(join(tmpdir(), 'cnx-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await main(argv, {
    stdout: { write: (s: string) => { out += s; return true; } },
    stderr: { isTTY: false, write: (s: string) => { err += s; return true; } },
  });
  return { code, out, err };
}

describe('help', () => {
  it('top level and every command', async () => {
    const top = await run('--help');
    expect(top.code).toBe(0);
    for (const cmd of ['generate', 'schedulers', 'control-types']) {
      expect(top.out).toContain(cmd);
      const h = await run(cmd, '--help');
      expect(h.code, cmd).toBe(0);
      expect(h.out).toMatch(new RegExp(`usage: cnx ${cmd}`));
    }
    const g = await run('generate', '--help');
    for (const opt of ['--model', '--prompt', '--negative-prompt', '--control-image', '--control-type', '--control-scale', '--scheduler',
      '--steps', '--guidance', '--seed', '--width', '--height', '--lora', '--output', '--backend', '--adapter']) {
      expect(g.out).toContain(opt);
    }
    expect((await run('frobnicate')).code).toBe(2);
  });
  it('lists schedulers and control types', async () => {
    expect((await run('schedulers')).out).toMatch(/unipc\s+UniPCMultistepScheduler/);
    expect((await run('control-types')).out).toMatch(/canny/);
  });
});

describe('errors', () => {
  it('a missing model folder', async () => {
    const r = await run('generate', '--model', join(dir, 'no-such-model'), '--prompt', 'x');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--model: folder .*no-such-model does not exist \(expected a Stable Diffusion diffusers folder: model_index\.json, unet\//);
  });
  it('a model folder without its parts names the missing files', async () => {
    const m = join(dir, 'half-model');
    mkdirSync(join(m, 'unet'), { recursive: true });
    const r = await run('generate', '--model', m, '--prompt', 'x');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/model folder .*half-model is missing unet\/config\.json, vae\/config\.json, text_encoder\/config\.json/);
  });
  it('a bad image file', async () => {
    const bad = join(dir, 'bad.png');
    writeFileSync(bad, 'not an image');
    const r = await run('generate', '--control-image', bad, '--prompt', 'x');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/bad\.png: not a PNG or JPEG image/);
  });
  it('an unknown scheduler', async () => {
    const r = await run('generate', '--scheduler', 'eulr');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown scheduler 'eulr' \(known: unipc, ddim, euler/);
  });
  it('out-of-range options name the option, the range and the value', async () => {
    expect((await run('generate', '--steps', '0')).err).toMatch(/--steps must be an integer in \[1, 1000\], found 0/);
    expect((await run('generate', '--guidance', '31')).err).toMatch(/--guidance must be a number in \[0, 30\], found 31/);
    expect((await run('generate', '--seed', '-3')).err).toMatch(/--seed must be an integer in \[0, 4294967295\], found -3/);
    expect((await run('generate', '--width', '100')).err).toMatch(/--width must be a multiple of 8 in \[8, 4096\], found 100/);
    expect((await run('generate', '--steps', 'many')).err).toMatch(/--steps must be an integer in \[1, 1000\], found 'many'/);
    expect((await run('generate', '--backend', 'tpu')).err).toMatch(/--backend must be one of cpu, wasm, webgpu, found 'tpu'/);
    expect((await run('generate', '--lora', join(dir, 'x.safetensors:2'))).err).toMatch(/--lora: file .*x\.safetensors does not exist/);
    expect((await run('generate', '--stepz', '3')).err).toMatch(/unknown option --stepz \(did you mean --steps\?\)/);
    expect(() => parseOptions(['--steps'], [{ name: 'steps', type: 'integer', description: '' }])).toThrow(UsageError);
  });
});

describe('tiny built-in model', () => {
  it('writes a PNG, says the weights are random, and prints one parseable line', async () => {
    const outPath = join(dir, 'tiny.png');
    const r = await run('generate', '--prompt', 'a red cube', '--steps', '2', '--width', '16', '--height', '16', '--seed', '5', '--output', outPath);
    expect(r.err).toMatch(/RANDOM weights.*noise from random weights/);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(new RegExp(`^wrote ${outPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} 16x16 seed=5 steps=2 scheduler=unipc seconds=[0-9.]+\\n$`));
    expect(r.err).not.toMatch(/step 1\/2/); // no progress bar without a terminal
    expect(existsSync(outPath)).toBe(true);
    expect(readImage(outPath).shape).toEqual([16, 16, 3]);
  });
});

describe('progress line', () => {
  it('shows the bar, the step, the rate and the ETA', () => {
    expect(progressLine(5, 20, 2.5, 20)).toBe('[#####...............] step 5/20  2.00 it/s  ETA 8s');
    expect(progressLine(1, 4, 3, 4)).toBe('[#...] step 1/4  3.00 s/it  ETA 9s');
  });
});
