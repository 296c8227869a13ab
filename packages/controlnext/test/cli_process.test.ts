// The `cnx` binary run as a process (issue 17's test list and issue 15's CLI polish): exit codes (0 ok,
// 2 usage, 1 runtime), the progress bar on a terminal (through `script`, which gives the child a pty),
// --init-image, --num-images, --fp16 (the .fp16 files are the ones read), the finite check with its
// flag, --version, a closed pipe (EPIPE) ending quietly, a run before the build saying so, and
// --backend webgpu with its compile progress and without Dawn's driver-probe warning where no Vulkan
// driver is installed.

import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import ndarray from 'ndarray';
import { readImage, writePng } from '@cnx/controlnext';
import { goldenControlNeXt, writeModelFolder } from './sd_model_folder.js';

const bin = resolve(import.meta.dirname, '../bin/cnx.js');
const dir = mkdtempSync(join(tmpdir(), 'cnx-proc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run { code: number | null; out: string; err: string }

/** Run cnx with `args` (stdin closed, not a terminal). */
function cnx(args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Run {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const picture = (h: number, w: number) => ndarray(Float32Array.from({ length: h * w * 3 }, (_, i) => ((i * 13) % 29) / 28), [h, w, 3]);

describe('cnx as a process: exit codes and output', () => {
  it('0 with one "wrote" line on stdout; 2 for usage errors; 1 for runtime errors', () => {
    const ok = cnx(['generate', '--prompt', 'x', '--steps', '1', '--width', '16', '--height', '16', '--seed', '9', '--output', join(dir, 'a.png')]);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toMatch(/^wrote .*a\.png 16x16 seed=9 steps=1 scheduler=unipc seconds=[0-9.]+\n$/);
    expect(ok.err).not.toMatch(/step 1\/1/); // no progress bar into a pipe
    const usage = cnx(['generate', '--steps', '0x10']);
    expect(usage.code).toBe(2);
    expect(usage.err).toMatch(/cnx generate: error: --steps must be an integer in \[1, 1000\], found '0x10'\nusage: cnx generate/);
    const bad = join(dir, 'bad.png');
    writeFileSync(bad, 'garbage');
    const runtime = cnx(['generate', '--control-image', bad, '--output', join(dir, 'b.png')]);
    expect(runtime.code).toBe(1);
    expect(runtime.err).toMatch(/cnx generate: error: .*bad\.png: not a PNG or JPEG image/);
    expect(runtime.err).not.toMatch(/\n\s+at /); // no stack trace
    expect(cnx(['frobnicate']).code).toBe(2);
    const v = cnx(['--version']);
    expect(v.code).toBe(0);
    expect(v.out).toMatch(/^cnx \d+\.\d+\.\d+ \(@cnx\/controlnext; node /);
  });

  it('a terminal gets the progress bar (step, it/s, ETA); a pipe does not', (ctx) => {
    const script = spawnSync('script', ['--version'], { encoding: 'utf8' });
    if (script.status !== 0) {
      console.warn(`\n*** SKIPPING the terminal progress test: no util-linux 'script' to give the child a pty (${script.error?.message ?? script.stderr}) ***\n`);
      ctx.skip();
    }
    const out = join(dir, 'tty.png');
    const cmd = [process.execPath, bin, 'generate', '--steps', '3', '--width', '16', '--height', '16', '--seed', '1', '--output', out].map((a) => `'${a}'`).join(' ');
    const r = spawnSync('script', ['-qefc', cmd, '/dev/null'], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\r\[#+\.*\] step 1\/3 {2}[0-9.]+ (it\/s|s\/it) {2}ETA /);
    expect(r.stdout).toMatch(/\r\[#{24}\] step 3\/3 /);
    expect(r.stdout).toMatch(/wrote .*tty\.png 16x16/);
  });

  it('--init-image sets the size, --num-images writes numbered files with one line each', () => {
    const init = join(dir, 'init.png');
    writePng(init, picture(24, 40));
    const r = cnx(['generate', '--init-image', init, '--strength', '0.5', '--steps', '4', '--num-images', '2', '--seed', '3', '--output', join(dir, 'img.png')]);
    expect(r.code, r.err).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^wrote .*img-1\.png 40x24 seed=3 steps=2 /); // strength 0.5 of 4 steps
    expect(lines[1]).toMatch(/^wrote .*img-2\.png 40x24 /);
    expect(readImage(join(dir, 'img-2.png')).shape).toEqual([24, 40, 3]);
  });

  it('--fp16 reads the .fp16 weight files (the fp32 files here are broken); without it the fp32 file is named', () => {
    const model = writeModelFolder(join(dir, 'sd-fp16'), { fp16: true, brokenFp32: ['unet', 'vae', 'text_encoder'] });
    const ctrl = join(dir, 'ctrl.png');
    writePng(ctrl, picture(64, 64));
    const args = ['generate', '--model', model, '--controlnext', goldenControlNeXt, '--control-image', ctrl, '--steps', '2', '--seed', '1', '--width', '64', '--height', '64', '--output', join(dir, 'fp16.png')];
    const r = cnx([...args, '--fp16']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/wrote .*fp16\.png 64x64/);
    const plain = cnx(args);
    expect(plain.code).toBe(1);
    expect(plain.err).toMatch(/unet\/diffusion_pytorch_model\.safetensors/);
  });

  it('NaN from an overflowing model stops with the step named and exit 1; --no-check-finite runs to the end', () => {
    // conv_out weights of 3e38: the first UNet output overflows to infinity.
    const model = writeModelFolder(join(dir, 'sd-overflow'), { edit: { unet: { 'conv_out.weight': (w) => w.map(() => 3e38) } } });
    const ctrl = join(dir, 'ctrl2.png');
    writePng(ctrl, picture(64, 64));
    const args = ['generate', '--model', model, '--controlnext', goldenControlNeXt, '--control-image', ctrl, '--steps', '3', '--seed', '1', '--width', '64', '--height', '64', '--output', join(dir, 'nan.png')];
    const r = cnx(args);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cnx generate: error: the latents after step 1 of 3 \(timestep \d+\) holds NaN or infinite values, so the image would come out black or as noise \(--no-check-finite skips this check\)/);
    expect(existsSync(join(dir, 'nan.png'))).toBe(false);
    const off = cnx([...args, '--no-check-finite']);
    expect(off.code, off.err).toBe(0);
  });
});

describe('cnx as a process: pipes and installation', () => {
  it('a reader closing the pipe early (cnx control-types | head -c 10) ends quietly with 0, no EPIPE stack', () => {
    for (let i = 0; i < 3; i++) {
      const r = spawnSync('bash', ['-c', `'${process.execPath}' '${bin}' control-types | head -c 10 >/dev/null; echo "rc=\${PIPESTATUS[0]}"`], { encoding: 'utf8' });
      expect(r.stdout.trim()).toBe('rc=0');
      expect(r.stderr).not.toMatch(/EPIPE|Unhandled/);
    }
  });

  it('run before a build: says to build, exit 1, no module-resolution stack', () => {
    const pkg = join(dir, 'unbuilt', 'packages', 'controlnext');
    mkdirSync(join(pkg, 'bin'), { recursive: true });
    copyFileSync(bin, join(pkg, 'bin', 'cnx.js'));
    writeFileSync(join(pkg, 'package.json'), '{"type": "module"}');
    const r = spawnSync(process.execPath, [join(pkg, 'bin', 'cnx.js'), 'schedulers'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('cnx: error: the package is not built yet (no packages/controlnext/dist/node.js): run `npm run build` in the repository root first\n');
  });

  it('--backend webgpu: generates, reports shader compiles instead of sitting silent, and no Dawn driver-probe warning without drivers', async (ctx) => {
    const out = join(dir, 'gpu.png');
    const r = await new Promise<Run>((done) => {
      const child = spawn(process.execPath, [bin, 'generate', '--backend', 'webgpu', '--steps', '2', '--width', '16', '--height', '16', '--seed', '2', '--output', out]);
      let o = '', e = '';
      child.stdout.on('data', (d) => { o += d; });
      child.stderr.on('data', (d) => { e += d; });
      child.on('close', (code) => done({ code, out: o, err: e }));
    });
    if (r.code !== 0 && /webgpu: no adapter/.test(r.err) && process.env.CNX_REQUIRE_WEBGPU !== '1') {
      console.warn(`\n*** SKIPPING cnx --backend webgpu: ${r.err.trim().split('\n').pop()} ***\n`);
      ctx.skip();
    }
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/^backend: webgpu: /m);
    expect(r.out).toMatch(/wrote .*gpu\.png 16x16 seed=2 steps=2/);
    // A software adapter compiles for seconds to minutes: the wait is announced, then summarised.
    if (/swiftshader|llvmpipe/i.test(r.err)) expect(r.err).toMatch(/compiling GPU pipelines \d+\/\d+ \(\d+ s; shaders compile slowly on software adapters\)\n[^]*compiled \d+ GPU pipelines in \d+ s/);
    // Where the Vulkan loader has no driver manifest, Dawn is not probed for a GPU, so it prints nothing.
    const manifests = ['/etc/vulkan/icd.d', '/usr/share/vulkan/icd.d', '/usr/local/share/vulkan/icd.d', '/etc/xdg/vulkan/icd.d']
      .some((d) => existsSync(d) && readdirSync(d).some((f) => f.endsWith('.json')));
    if (!manifests && !process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES) {
      expect(r.err).not.toMatch(/vkCreateInstance/);
      expect(r.err).toMatch(/gpu: no Vulkan driver installed/);
    }
    expect(readImage(out).shape).toEqual([16, 16, 3]);
  }, 900_000);
});
