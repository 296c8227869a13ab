// `cnx generate` refuses bad usage before any backend or model is created (issue 17 item 10, issue 15's
// CLI polish): every usage error exits with 2 and names the flag. Each case below was a reported defect:
// --steps 0x10 read as 16, --scheduler toString / __proto__ passing validation and crashing later,
// --output x.jpg writing PNG bytes, an unwritable output found only after generating, --adapter and
// --control-option errors exiting 1, unknown control options ignored, errors naming library fields.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main, readImage, readImageHeader } from '@cnx/controlnext';
import { greyPng } from './crafted_images.js';

const dir = mkdtempSync(join(tmpdir(), 'cnx-cliv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const out = (name: string) => join(dir, name);
const ctrl = join(dir, 'ctrl.png');
writeFileSync(ctrl, greyPng(16, 16, (y) => y * 16));

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let o = '', err = '';
  const code = await main(argv, {
    stdout: { write: (s: string) => { o += s; return true; } },
    stderr: { isTTY: false, write: (s: string) => { err += s; return true; } },
  });
  return { code, out: o, err };
}

/** A usage error: exit 2, the message, no backend created (nothing was loaded or computed). */
async function usage(argv: string[], message: RegExp): Promise<void> {
  const r = await run('generate', ...argv);
  expect(r.err, argv.join(' ')).toMatch(message);
  expect(r.code, r.err).toBe(2);
  expect(r.err).not.toMatch(/^backend:/m);
}

describe('numbers are plain decimals', () => {
  it('--steps 0x10, 1e1, " 5", Infinity are refused; --guidance takes 7.5, .5, 1e1', async () => {
    for (const bad of ['0x10', '0b11', '1e1', ' 5', '', 'Infinity', '5.0']) {
      await usage(['--steps', bad], new RegExp(`--steps must be an integer in \\[1, 1000\\], found '${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'`));
    }
    for (const bad of ['0x1', '1e', 'NaN', '.']) await usage(['--guidance', bad], /--guidance must be a number in \[0, 30\], found '/);
  });
});

describe('names are looked up as own keys', () => {
  it('--scheduler toString / __proto__ / constructor are unknown schedulers', async () => {
    for (const s of ['toString', '__proto__', 'constructor', 'hasOwnProperty']) {
      await usage(['--scheduler', s], new RegExp(`unknown scheduler '${s}' \\(known: unipc, ddim`));
    }
  });
});

describe('--output', () => {
  it('the format follows the extension: .jpg writes JPEG bytes, .png PNG; others are refused', async () => {
    await usage(['--output', out('x.gif')], /--output must end in \.png, \.jpg or \.jpeg \(the format follows the extension\), found '.*x\.gif'/);
    await usage(['--output', out('noext')], /--output must end in \.png/);
    const r = await run('generate', '--steps', '1', '--width', '16', '--height', '16', '--seed', '1', '--output', out('x.jpg'));
    expect(r.code, r.err).toBe(0);
    const bytes = readFileSync(out('x.jpg'));
    expect([bytes[0], bytes[1], bytes[2]]).toEqual([0xff, 0xd8, 0xff]);
    expect(readImageHeader(bytes)).toMatchObject({ format: 'jpeg', width: 16, height: 16 });
    expect(readImage(out('x.jpg')).shape).toEqual([16, 16, 3]);
  });
  it('an unwritable or missing folder, or a folder as the file, is refused before anything runs', async () => {
    await usage(['--output', join(dir, 'no-such-dir', 'x.png')], /--output: folder .*no-such-dir does not exist/);
    mkdirSync(out('adir.png'));
    await usage(['--output', out('adir.png')], /--output: .*adir\.png is a folder/);
    // A folder the process cannot write into (as root, permission bits do not stop writes: /sys does).
    const ro = out('ro');
    mkdirSync(ro, { mode: 0o555 });
    let roTarget = join(ro, 'x.png');
    try { writeFileSync(join(ro, 'probe'), ''); roTarget = '/sys/cnx-test.png'; } catch { /* bits respected */ }
    await usage(['--output', roTarget], /--output: cannot write into .* \((EACCES|EROFS|EPERM)\)/);
    // With several images every name is checked.
    await usage(['--output', out('many.gif'), '--num-images', '2'], /--output must end in \.png, \.jpg or \.jpeg .*many-1\.gif/);
  });
});

describe('flags that depend on other flags', () => {
  it('--adapter is validated and needs --backend webgpu', async () => {
    await usage(['--adapter', 'foo'], /--adapter must be one of gpu, swiftshader, lavapipe, llvmpipe, found 'foo'/);
    await usage(['--adapter', 'swiftshader'], /--adapter chooses a WebGPU adapter: it needs --backend webgpu \(found --backend cpu\)/);
  });
  it('control options: unknown keys and bad values are refused, naming the flag and the known options', async () => {
    await usage(['--control-image', ctrl, '--control-type', 'canny', '--control-option', 'lo=3'],
      /--control-option lo: control type 'canny' has no option 'lo' \(its options: low, high, sigma, l2; see `cnx control-types`\)/);
    await usage(['--control-image', ctrl, '--control-type', 'canny', '--control-option', 'sigma=big'], /--control-option sigma must be a number, found 'big'/);
    await usage(['--control-image', ctrl, '--control-type', 'canny', '--control-option', 'low=maybe'], /--control-option low must be 'auto' or a number, found 'maybe'/);
    await usage(['--control-image', ctrl, '--control-type', 'depth', '--control-option', 'invert=yes'], /--control-option invert must be true or false, found 'yes'/);
    await usage(['--control-image', ctrl, '--control-type', 'passthrough', '--control-option', 'x=1'], /control type 'passthrough' has no option 'x' \(it takes no options/);
    await usage(['--control-image', ctrl, '--control-type', 'canny', '--control-option', 'low=1', '--control-option', 'low=2'], /--control-option low is given twice/);
    await usage(['--control-option', 'low=3'], /--control-option applies to a control image: give --control-image FILE/);
    await usage(['--control-type', 'canny'], /--control-type applies to a control image/);
    await usage(['--control-image', ctrl, '--control-type', 'scribble'], /--control-type: .*scribble/);
  });
  it('image-to-image: --strength needs --init-image, and must leave at least one step', async () => {
    await usage(['--strength', '0.5'], /--strength applies to image-to-image: give --init-image FILE/);
    await usage(['--init-image', ctrl, '--steps', '3', '--strength', '0.3'], /--strength 0\.3 with --steps 3 runs no step \(floor\(steps x strength\) = 0\): raise --strength or --steps/);
  });
  it('control models name --control-image (not the library\'s controlImage); model-only flags need --model', async () => {
    const model = out('model');
    mkdirSync(model);
    const file = out('cnx.safetensors');
    writeFileSync(file, '');
    await usage(['--model', model, '--controlnext', file], /--controlnext needs a control image: --control-image FILE/);
    await usage(['--model', model, '--controlnet', model], /--controlnet needs a control image: --control-image FILE/);
    await usage(['--model', model, '--controlnext', file, '--controlnet', model, '--control-image', ctrl], /give --controlnext FILE \(ControlNeXt\) or --controlnet DIR \(ControlNet\), not both/);
    await usage(['--model', model, '--controlnext', out('missing.safetensors'), '--control-image', ctrl], /--controlnext: .*missing\.safetensors does not exist/);
    await usage(['--model', file], /--model: folder .*cnx\.safetensors is a file, not a folder/);
    await usage(['--fp16'], /--fp16 chooses the \.fp16 weight files of --model: it needs --model/);
  });
  it('commands without arguments refuse them; --version prints the package version', async () => {
    const s = await run('schedulers', 'extra');
    expect(s.code).toBe(2);
    expect(s.err).toMatch(/unexpected argument 'extra'/);
    const v = await run('--version');
    expect(v.code).toBe(0);
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '../package.json'), 'utf8')) as { version: string };
    expect(v.out).toBe(`cnx ${pkg.version} (@cnx/controlnext; node ${process.versions.node})\n`);
  });
  it('a valid run still works (the checks do not refuse good usage)', async () => {
    const r = await run('generate', '--control-image', ctrl, '--control-type', 'canny', '--control-option', 'low=auto', '--control-option', 'sigma=0.5',
      '--steps', '1', '--seed', '3', '--width', '16', '--height', '16', '--output', out('ok.png'));
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/wrote .*ok\.png 16x16 seed=3 steps=1/);
    expect(existsSync(out('ok.png'))).toBe(true);
  });
});
