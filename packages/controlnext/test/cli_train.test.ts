// `cnx train` through main(), on the tiny built-in model and a tiny synthetic shapes set on the CPU backend:
// what a run writes (checkpoints, loss.csv / loss.svg, validation grids with the shape IoU, parseable
// progress lines); resume after k steps gives byte-identical weights, optimizer state and loss rows to an
// uninterrupted run; the final folder loads as a ControlNeXt module folder and runs in the pipeline of a
// `cnx tiny-model` folder; bad options exit 2 naming the flag.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend, SafetensorsFile } from '@cnx/tensor';
import { ControlNeXt, detectVariant, loadPipeline, main, parseStepLogCsv, readImage, writeTinyModel } from '@cnx/controlnext';

const dir = mkdtempSync(join(tmpdir(), 'cnx-train-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function runOn(isTTY: boolean, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await main(argv, {
    stdout: { write: (s: string) => { out += s; return true; } },
    stderr: { isTTY, write: (s: string) => { err += s; return true; } },
  });
  return { code, out, err };
}

function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  return runOn(false, argv);
}

/** The tiny recipe of these tests: 8 samples at 64 px, batch 2, CPU. */
const BASE = ['--shapes', '8', '--resolution', '64', '--batch-size', '2', '--learning-rate', '1e-4', '--backend', 'cpu'];

describe('cnx train', () => {
  it('--help names every option', async () => {
    const h = await run('train', '--help');
    expect(h.code).toBe(0);
    for (const opt of ['--dataset', '--shapes', '--model', '--variant', '--resolution', '--batch-size', '--steps', '--learning-rate',
      '--control-lr-multiplier', '--seed', '--backend', '--output', '--checkpoint-every', '--resume', '--validation-prompt',
      '--validation-image', '--validation-every', '--validation-steps', '--injection', '--unet-trainable', '--gradient-checkpointing',
      '--max-train-samples', '--proportion-empty-prompts', '--init-module']) {
      expect(h.out, opt).toContain(opt);
    }
    expect((await run('--help')).out).toContain('train');
  });

  it('bad options exit 2 naming the flag, before any model loads', async () => {
    const out = join(dir, 'bad');
    const nonEmpty = join(dir, 'non-empty');
    mkdirSync(nonEmpty);
    writeFileSync(join(nonEmpty, 'loss.csv'), 'step,loss\n');
    const cases: [string[], RegExp][] = [
      [['--shapes', '8', '--output', out, '--variant', 'sdxl'], /--variant: only sd15_training .*found 'sdxl'/],
      [['--shapes', '8', '--output', out, '--steps', '0'], /--steps must be an integer in \[1, /],
      [['--output', out], /no training data: give --dataset DIR .* or --shapes N/],
      [['--dataset', join(dir, 'nope'), '--output', out], /--dataset: folder .*nope does not exist/],
      [['--shapes', '8', '--dataset', dir, '--output', out], /--dataset DIR or --shapes N, not both/],
      [['--shapes', '8', '--output', out, '--validation-image', 'x.png'], /--validation-image needs a --validation-prompt/],
      [['--shapes', '8', '--output', out, '--validation-prompt', 'a', '--validation-prompt', 'b', '--validation-image', 'x.png'], /pair up: found 2 prompt\(s\) and 1 image/],
      [['--shapes', '8', '--output', out, '--resolution', '60'], /--resolution must be a multiple of 8 .*found 60/],
      [['--shapes', '8'], /--output DIR is missing/],
      [['--shapes', '8', '--output', out, '--resume', dir], /--resume: .* is not a training checkpoint folder/],
      [['--shapes', '8', '--output', nonEmpty], /--output: .*non-empty is not empty \(it holds a training run: continue it with --resume/],
      [['--shapes', '8', '--output', out, '--injection', 'add'], /--injection must be one of cross_norm, zero_conv, found 'add'/],
      [['--shapes', '8', '--output', out, '--latents', 'mode'], /--latents must be one of sample, mean, found 'mode'/],
      [['--shapes', '8', '--output', out, '--learning-rate', 'fast'], /--learning-rate must be a number/],
      [['--shapes', '8', '--output', out, '--unet-trainable', '/(/'], /--unet-trainable: \/\(\/ is not a regular expression/],
      [['--shapes', '8', '--output', out, '--adapter', 'gpu'], /--adapter .* needs --backend webgpu/],
      [['--shapes', '8', '--output', out, '--model', join(dir, 'no-model')], /--model: folder .*no-model does not exist/],
      [['--shapes', '8', '--output', out, '--init-module', join(dir, 'm.safetensors')], /--init-module: .*m.safetensors does not exist/],
      [['--shapes', '8', '--output', out, '--stepz', '3'], /unknown option --stepz \(did you mean --steps\?\)/],
    ];
    for (const [argv, msg] of cases) {
      const r = await run('train', ...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err, argv.join(' ')).toMatch(msg);
      expect(r.err).toContain('usage: cnx train');
    }
    expect(existsSync(out), 'nothing written for a usage error').toBe(false);
  });

  it('a run writes checkpoints, loss.csv / loss.svg, validation grids with the shape IoU, and parseable lines', async () => {
    const out = join(dir, 'run');
    const r = await run('train', ...BASE, '--output', out, '--steps', '3', '--checkpoint-every', '2', '--validation-every', '2',
      '--validation-samples', '2', '--validation-steps', '2');
    expect(r.code, r.err).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines.filter((l) => /^step=\d+\/3 loss=[0-9.e+-]+ it_per_s=[0-9.]+ eta_s=\d+$/.test(l))).toHaveLength(3);
    expect(lines).toContain(`checkpoint step=2 dir=${join(out, 'checkpoint-2')}`);
    expect(lines.filter((l) => l.startsWith('validation step=')).map((l) => /step=(\d+)/.exec(l)![1])).toEqual(['0', '2', '3']);
    expect(lines.at(-1)).toMatch(new RegExp(`^done steps=3 loss=[0-9.]+ seconds=[0-9.]+ final=${join(out, 'final')}$`));
    for (const d of ['checkpoint-2', 'checkpoint-3', 'final']) {
      for (const f of ['controlnext.safetensors', 'unet.safetensors', 'unet_weight_increasements.safetensors', 'optimizer.safetensors',
        'trainer_state.json', 'config.json']) {
        expect(existsSync(join(out, d, f)), `${d}/${f}`).toBe(true);
      }
    }
    expect(existsSync(join(out, 'final', 'diffusion_pytorch_model.safetensors')), 'the module is stored once').toBe(false);
    expect(JSON.parse(readFileSync(join(out, 'checkpoint-2', 'trainer_state.json'), 'utf8')).step).toBe(2);
    expect(readFileSync(join(out, 'final', 'controlnext.safetensors'))).toEqual(readFileSync(join(out, 'checkpoint-3', 'controlnext.safetensors')));
    const log = parseStepLogCsv(readFileSync(join(out, 'loss.csv'), 'utf8'));
    expect(log.columns).toEqual(['step', 'loss', 'lr', 'it_per_s', 'elapsed_s']);
    expect(log.rows.map((x) => x['step'])).toEqual([1, 2, 3]);
    for (const row of log.rows) expect(Number.isFinite(row['loss']) && (row['loss'] as number) > 0).toBe(true);
    expect(readFileSync(join(out, 'loss.svg'), 'utf8')).toMatch(/^<svg[^>]*>[\s\S]*<\/svg>\n$/);
    // Grids: 2 samples x [control, generated, target through the VAE, target, generated latents, target latents], 2-px gutters.
    for (const k of [0, 2, 3]) {
      const g = readImage(join(out, 'validation', `step-${k}.png`));
      expect(g.shape.slice(0, 2), `step-${k}`).toEqual([2 * 64 + 3 * 2, 6 * 64 + 7 * 2]);
    }
    const val = readFileSync(join(out, 'validation.csv'), 'utf8').trim().split('\n');
    expect(val[0]).toBe('step,mean_iou,min_iou,max_iou,mean_iou_vae_colours,vae_round_trip_iou,latent_correlation,file');
    expect(val).toHaveLength(4);
    for (const l of val.slice(1)) {
      const [, mean, min, max] = l.split(',').map(Number);
      expect(min! <= mean! && mean! <= max! && min! >= 0 && max! <= 1, l).toBe(true);
    }
  });

  it('on a terminal: a self-rewriting bar with step, loss, it/s and ETA on stderr, no step lines on stdout', async () => {
    const r = await runOn(true, ['train', ...BASE, '--output', join(dir, 'tty'), '--steps', '2', '--validation-samples', '0']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/\r\[#+\.*\] step 1\/2 {2}loss [0-9.]+ {2}[0-9.]+ (it|s)\/(s|it) {2}ETA \d+s\x1b\[K/);
    expect(r.err).toMatch(/\r\[#{24}\] step 2\/2 /);
    expect(r.out).not.toMatch(/^step=/m);
    expect(r.out).toMatch(/^done steps=2 /m);
  });

  it('resume after 2 steps reproduces an uninterrupted 4-step run byte for byte (weights, optimizer, loss rows)', async () => {
    const full = join(dir, 'full'), split = join(dir, 'split');
    const common = [...BASE, '--validation-samples', '0', '--checkpoint-every', '2'];
    expect((await run('train', ...common, '--output', full, '--steps', '4')).code).toBe(0);
    expect((await run('train', ...common, '--output', split, '--steps', '2')).code).toBe(0);
    // Refused: the checkpoint already has the steps asked; a seed other than the checkpoint's.
    const done = await run('train', ...common, '--output', split, '--steps', '2', '--resume', join(split, 'checkpoint-2'));
    expect(done.code).toBe(2);
    expect(done.err).toMatch(/--steps 2: the checkpoint .* is already at step 2/);
    const seed = await run('train', ...common, '--output', split, '--steps', '4', '--seed', '5', '--resume', join(split, 'checkpoint-2'));
    expect(seed.code).toBe(2);
    expect(seed.err).not.toContain('data:'); // refused before the model and the data load
    expect(seed.err).toMatch(/--resume: the checkpoint was trained with --seed 0, this run has 5/);
    const r = await run('train', ...common, '--output', split, '--steps', '4', '--resume', join(split, 'checkpoint-2'));
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^step=3\/4 /m);
    expect(r.out).not.toMatch(/^step=[12]\/4 /m);
    for (const f of ['controlnext.safetensors', 'unet.safetensors', 'unet_weight_increasements.safetensors', 'optimizer.safetensors', 'trainer_state.json']) {
      expect(readFileSync(join(split, 'final', f)).equals(readFileSync(join(full, 'final', f))), f).toBe(true);
    }
    const rows = (d: string) => parseStepLogCsv(readFileSync(join(d, 'loss.csv'), 'utf8')).rows.map((x) => [x['step'], x['loss']]);
    expect(rows(split)).toEqual(rows(full));
    expect(rows(full)).toHaveLength(4);
  });

  it('the final folder loads as a ControlNeXt module (sd15_training) and generates in the tiny-model pipeline', async () => {
    const out = join(dir, 'run'); // written by the run test above
    if (!existsSync(join(out, 'final'))) throw new Error('the run test must run first (it writes the folder this test loads)');
    const final = join(out, 'final');
    expect(detectVariant(final).variant).toBe('sd15_training');
    const cpu = new CpuBackend();
    const cnx = ControlNeXt.load(final, cpu, { variant: 'sd15_training' });
    const saved = SafetensorsFile.open(join(final, 'controlnext.safetensors'));
    const params = (cnx.module as unknown as { namedParameters(): [string, { data(): Promise<Float32Array> }][] }).namedParameters();
    expect(params.length).toBe(saved.keys().length);
    for (const [k, t] of params) expect(await t.data(), k).toEqual(saved.readFloat32(k).data);
    saved.close();
    cnx.dispose();

    const base = join(dir, 'tiny-base');
    await writeTinyModel(base, { seed: 0 });
    const loaded = loadPipeline(base, cpu, { controlnext: final, controlnextUnet: join(final, 'unet.safetensors') });
    expect(loaded.variant?.name).toBe('sd15_training');
    expect(loaded.partialUnet?.mode).toBe('replace');
    const control = cpu.fromRaw(new Float32Array(3 * 64 * 64).fill(0.5), [1, 3, 64, 64]);
    const res = await loaded.pipeline.generate({ prompt: 'a red circle', controlImage: control, height: 64, width: 64, numInferenceSteps: 2, seed: 1 });
    expect(res.images.shape).toEqual([1, 3, 64, 64]);
    expect((await res.images.data()).every(Number.isFinite)).toBe(true);
    res.images.dispose(); res.latents.dispose(); control.dispose();
    loaded.pipeline.dispose();
  });
});
