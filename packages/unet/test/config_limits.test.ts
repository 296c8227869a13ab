// Config files are validated before anything is built (issue 17 items 3 and 9): every number has a type,
// integrality, sign and a documented maximum (config_values.ts, scheduler_config.ts), and every error
// names the file and the key. Each reproduction of the issue is a case here and must end in a precise
// error within bounded time: layers_per_block 1e5 (minutes, 3.4 GB before), num_train_timesteps 1e8
// (118 s, 1.66 GB), cross_attention_dim 1e12 (a bare RangeError), norm_eps "x" (an all-black image),
// in_channels "4", sample_size -1, norm_eps -1, a key named constructor (TypeError: ok.some is not a
// function), a truncated config.json or vocab.json (no file named), config.json = [] (an empty config),
// non-integer channels and group counts that do not divide (errors naming neither file nor key).

import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CpuBackend, MAX_PLACEHOLDER_ELEMENTS, WeightStore } from '@cnx/tensor';
import {
  AutoencoderKL, CLIPTextModel, CLIPTokenizer, UNet2DConditionModel, createScheduler, parseClipTextConfig, parseClipVisionConfig, parseSchedulerConfig,
  parseSpatioTemporalUNetConfig, parseTemporalVaeConfig, parseUNetConfig, parseVaeConfig, readSchedulerConfigFile,
} from '@cnx/unet';
import { afterAll, describe, expect, it } from 'vitest';
import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';

const golden = GOLDEN_ROOT;
const unetDir = join(golden, 'sd15_unet', 'unet');
const vaeDir = join(golden, 'sd15_pipeline_controlnext', 'vae');
const schedulerFile = join(golden, 'sd15_pipeline_controlnext', 'scheduler', 'scheduler_config.json');
const json = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
const UNET = json(join(unetDir, 'config.json'));
const VAE = json(join(vaeDir, 'config.json'));
const SCHED = json(schedulerFile);

const tmp = mkdtempSync(join(tmpdir(), 'cnx-cfg-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const backend = new CpuBackend();

/** A copy of a model folder whose config.json is `text` (the weights are the golden ones). */
function folderWithConfig(src: string, name: string, text: string): string {
  const dir = join(tmp, name);
  mkdirSync(dir);
  copyFileSync(join(src, 'diffusion_pytorch_model.safetensors'), join(dir, 'diffusion_pytorch_model.safetensors'));
  writeFileSync(join(dir, 'config.json'), text);
  return dir;
}

/** fn must throw matching `message` within `ms` milliseconds. */
function refusesFast(fn: () => unknown, message: RegExp, ms = 500): void {
  const t0 = performance.now();
  expect(fn).toThrow(message);
  expect(performance.now() - t0).toBeLessThan(ms);
}

describe('the reproductions of issue 17 end in a precise error at once', () => {
  it('layers_per_block: 1e5 (ran for minutes at 3.4 GB)', () => {
    const dir = folderWithConfig(unetDir, 'layers', JSON.stringify({ ...UNET, layers_per_block: 1e5 }));
    refusesFast(() => UNet2DConditionModel.fromFolder(dir, backend),
      /layers\/config\.json: UNet2DConditionModel layers_per_block=100000: expected an integer in \[1, 32\]/);
  });
  it('num_train_timesteps: 1e8 (accepted after 118 s at 1.66 GB)', () => {
    const file = join(tmp, 'scheduler_config.json');
    writeFileSync(file, JSON.stringify({ ...SCHED, num_train_timesteps: 1e8 }));
    refusesFast(() => createScheduler('unipc', readSchedulerConfigFile(file)),
      /UniPCMultistepScheduler config: "num_train_timesteps" must be an integer >= 2 and <= 100000, found 100000000/);
  });
  it('cross_attention_dim: 1e12 (a bare RangeError naming no file)', () => {
    const dir = folderWithConfig(unetDir, 'xattn', JSON.stringify({ ...UNET, cross_attention_dim: 1e12 }));
    refusesFast(() => UNet2DConditionModel.fromFolder(dir, backend),
      /xattn\/config\.json: UNet2DConditionModel cross_attention_dim=1000000000000: expected an integer in \[1, 16384\]/);
  });
  it('norm_eps: "x" (an all-black image, exit 0), norm_eps: -1, in_channels: "4", sample_size: -1', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ norm_eps: 'x' }, /norm_eps="x": expected a number in \(0, 1\]/],
      [{ norm_eps: -1 }, /norm_eps=-1: expected a number in \(0, 1\]/],
      [{ in_channels: '4' }, /in_channels="4": expected an integer in \[1, 1024\]/],
      [{ sample_size: -1 }, /sample_size=-1: expected an integer in \[1, 4096\]/],
      [{ sample_size: [64, 0] }, /sample_size\[1\]=0: expected an integer/],
      [{ block_out_channels: [32.5, 64] }, /block_out_channels\[0\]=32\.5: expected an integer in \[1, 16384\]/],
      [{ norm_num_groups: 7 }, /norm_num_groups=7: expected a divisor of every block_out_channels entry \(block 0 has 32 channels\)/],
      [{ attention_head_dim: 3 }, /attention_head_dim=3: expected heads that divide the block's channels \(block 0: 32 channels, 3 heads\)/],
      [{ center_input_sample: 0 }, /center_input_sample=0: expected true or false/],
      [{ down_block_types: [] }, /down_block_types=\[\]: expected a list of 1 to 8 entries, found 0/],
      [{ transformer_layers_per_block: [1, [1, 99]] }, /transformer_layers_per_block\[1\]\[1\]=99: expected an integer in \[1, 32\]/],
    ];
    for (const [patch, message] of cases) {
      expect(() => parseUNetConfig({ ...UNET, ...patch }, 'unet/config.json'), JSON.stringify(patch))
        .toThrow(new RegExp(`^unet/config\\.json: UNet2DConditionModel ${message.source}`));
    }
  });
  it('a key named constructor (TypeError: ok.some is not a function), toString, __proto__', () => {
    for (const key of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      const raw = JSON.parse(`{"${key}": 1}`) as Record<string, unknown>;
      expect(() => parseUNetConfig({ ...UNET, ...raw }, 'u.json')).toThrow(`u.json: unknown UNet2DConditionModel config key '${key}'`);
      expect(() => parseVaeConfig({ ...VAE, ...raw }, 'v.json')).toThrow(`v.json: unknown AutoencoderKL config key '${key}'`);
    }
    expect(() => parseClipTextConfig({ hidden_act: 'constructor' }, 't.json')).toThrow(/t\.json: CLIPTextConfig hidden_act="constructor" is not supported/);
    expect(() => createScheduler('unipc', JSON.parse('{"constructor": 5, "__proto__": {"num_train_timesteps": 1e9}}') as Record<string, unknown>)).not.toThrow();
  });
  it('a truncated config.json, vocab.json or tokenizer config names its file', () => {
    const text = JSON.stringify(UNET);
    const dir = folderWithConfig(unetDir, 'cut', text.slice(0, text.length / 2));
    refusesFast(() => UNet2DConditionModel.fromFolder(dir, backend), /cut\/config\.json: not valid JSON/);
    const tok = join(tmp, 'tok');
    mkdirSync(tok);
    writeFileSync(join(tok, 'vocab.json'), '{"a": 0, "b"');
    writeFileSync(join(tok, 'merges.txt'), '#version: 0.2\n');
    expect(() => CLIPTokenizer.fromFolder(tok)).toThrow(/tok\/vocab\.json: not valid JSON/);
    writeFileSync(join(tok, 'vocab.json'), '{"a": 0, "b": "one"}');
    expect(() => CLIPTokenizer.fromFolder(tok)).toThrow(/tok\/vocab\.json: the id of token "b" must be an integer in \[0, 1000000\), found "one"/);
    writeFileSync(join(tok, 'vocab.json'), '{"a": 0}');
    writeFileSync(join(tok, 'tokenizer_config.json'), '[1, 2');
    expect(() => CLIPTokenizer.fromFolder(tok)).toThrow(/tok\/tokenizer_config\.json: not valid JSON/);
  });
  it('config.json = [] is not an empty config (model folders, WeightStore.open, scheduler and tokenizer files)', () => {
    const dir = folderWithConfig(unetDir, 'array', '[]');
    expect(() => UNet2DConditionModel.fromFolder(dir, backend)).toThrow(/array\/config\.json: expected a JSON object/);
    expect(() => WeightStore.open(dir)).toThrow(/array\/config\.json: expected a JSON object, found an array/);
    expect(() => parseSchedulerConfig('[]', 's.json')).toThrow(/s\.json: expected a JSON object/);
    const tok = join(tmp, 'tok2');
    mkdirSync(tok);
    writeFileSync(join(tok, 'vocab.json'), '[]');
    writeFileSync(join(tok, 'merges.txt'), '');
    expect(() => CLIPTokenizer.fromFolder(tok)).toThrow(/tok2\/vocab\.json: expected a JSON object/);
  });
});

describe('every config number is bounded', () => {
  it('VAE: types, ranges, group divisibility, per-latent statistics', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ latent_channels: 0 }, /latent_channels=0: expected an integer in \[1, 1024\]/],
      [{ scaling_factor: 'big' }, /scaling_factor="big": expected a number in \(0, 1000000\]/],
      [{ layers_per_block: 1e5 }, /layers_per_block=100000: expected an integer in \[1, 32\]/],
      [{ norm_num_groups: 3 }, /norm_num_groups=3: expected a divisor of every block_out_channels entry/],
      [{ block_out_channels: [8, 16, 1e9, 16] }, /block_out_channels\[2\]=1000000000: expected an integer in \[1, 16384\]/],
      [{ latents_std: [1, 1, 1, 0] }, /latents_std\[3\]=0: expected a number in \(0, 1000000\]/],
    ];
    for (const [patch, message] of cases) {
      expect(() => parseVaeConfig({ ...VAE, ...patch }, 'vae/config.json'), JSON.stringify(patch)).toThrow(new RegExp(`^vae/config\\.json: AutoencoderKL ${message.source}`));
    }
  });
  it('CLIP text: integers and ranges, eos id inside the vocabulary', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ num_hidden_layers: 1e6 }, /num_hidden_layers=1000000: expected an integer in \[1, 128\]/],
      [{ hidden_size: 32.5 }, /hidden_size=32\.5: expected an integer in \[1, 16384\]/],
      [{ layer_norm_eps: 0 }, /layer_norm_eps=0: expected a number in \(0, 1\]/],
      [{ vocab_size: 10, eos_token_id: 10 }, /eos_token_id=10: expected an integer in \[0, 9\]/],
    ];
    for (const [patch, message] of cases) {
      expect(() => parseClipTextConfig(patch, 'te/config.json'), JSON.stringify(patch)).toThrow(new RegExp(`^te/config\\.json: CLIPTextConfig ${message.source}`));
    }
  });
  it('schedulers: betas in [0, 0.999], offsets and orders bounded, NaN and infinities refused', () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['ddim', { beta_end: 1.5 }, /"beta_end" must be a number in \[0, 0\.999\], found 1\.5/],
      ['ddim', { clip_sample_range: 0 }, /"clip_sample_range" must be a number in \(0, inf \(finite\)\], found 0/],
      ['euler', { sigma_max: -1 }, /"sigma_max" must be a number in \[0, inf \(finite\)\] or null, found -1/],
      ['unipc', { solver_order: 50 }, /"solver_order" must be an integer >= 1 and <= 8, found 50/],
      ['unipc', { steps_offset: 1e9 }, /"steps_offset" must be an integer >= 0 and <= 100000, found 1000000000/],
      ['pndm', { trained_betas: [0.1, Infinity] }, /"trained_betas" must be an array of at most 100000 entries, each a number in \[0, 0\.999\], or null/],
      ['dpmpp_2m', { lambda_min_clipped: NaN }, /"lambda_min_clipped" must be a number \(not NaN\), found NaN/],
    ];
    for (const [name, patch, message] of cases) expect(() => createScheduler(name, { ...SCHED, ...patch }), name).toThrow(message);
    // Python's -Infinity still reads where diffusers writes it.
    expect(() => createScheduler('dpmpp_2m', parseSchedulerConfig('{"lambda_min_clipped": -Infinity}'))).not.toThrow();
  });
  it('config files are regular files: a FIFO named config.json or scheduler_config.json is refused at once, never blocks', () => {
    const dir = join(tmp, 'fifo');
    mkdirSync(dir);
    execFileSync('mkfifo', [join(dir, 'config.json'), join(dir, 'scheduler_config.json')]);
    refusesFast(() => UNet2DConditionModel.fromFolder(dir, backend), /config\.json: expected a regular file, found a FIFO/);
    refusesFast(() => readSchedulerConfigFile(join(dir, 'scheduler_config.json')), /scheduler_config\.json: expected a regular file, found a FIFO/);
    refusesFast(() => CLIPTextModel.fromFolder(dir, backend), /config\.json: expected a regular file, found a FIFO/);
  });
});

describe('the SVD models\' configs are checked the same way', () => {
  const SVD_UNET = json(join(golden, 'svd_unet', 'unet', 'config.json'));
  const SVD_VAE = json(join(golden, 'svd_vae', 'vae', 'config.json'));
  const VISION = json(join(golden, 'clip_vision', 'image_encoder', 'config.json'));
  it('spatio-temporal UNet, temporal VAE and CLIP vision name the file and the key (the config fuzz test found 36 crashes here)', () => {
    expect(() => parseSpatioTemporalUNetConfig({ ...SVD_UNET, num_attention_heads: 3 }, 'svd/unet.json'))
      .toThrow(/^svd\/unet\.json: UNetSpatioTemporalConditionModel num_attention_heads=3: expected heads that divide the block's channels/);
    expect(() => parseSpatioTemporalUNetConfig({ ...SVD_UNET, transformer_layers_per_block: { a: 1 } }, 'svd/unet.json'))
      .toThrow(/transformer_layers_per_block=\{"a":1\}: expected an integer in \[1, 32\]/);
    expect(() => parseTemporalVaeConfig({ ...SVD_VAE, in_channels: '' }, 'svd/vae.json'))
      .toThrow(/^svd\/vae\.json: AutoencoderKLTemporalDecoder in_channels="": expected an integer in \[1, 1024\]/);
    expect(() => parseClipVisionConfig({ ...VISION, patch_size: -8 }, 'svd/enc.json'))
      .toThrow(/^svd\/enc\.json: CLIPVisionConfig patch_size=-8: expected an integer in \[1, 4096\]/);
    for (const key of ['constructor', '__proto__']) {
      const raw = JSON.parse(`{"${key}": 1}`) as Record<string, unknown>;
      expect(() => parseSpatioTemporalUNetConfig({ ...SVD_UNET, ...raw }, 's.json')).toThrow(`s.json: unknown UNetSpatioTemporalConditionModel config key '${key}'`);
      expect(() => parseTemporalVaeConfig({ ...SVD_VAE, ...raw }, 's.json')).toThrow(`s.json: unknown AutoencoderKLTemporalDecoder config key '${key}'`);
    }
  });
});

describe('declared shapes the weights do not hold', () => {
  it('stop the loader report early instead of allocating zero placeholders of every declared shape', () => {
    // Within every per-key range, but 4096-wide: the golden 32/64-wide weights miss nearly everything.
    const dir = folderWithConfig(unetDir, 'wide', JSON.stringify({ ...UNET, block_out_channels: [4096, 4096], norm_num_groups: 8, cross_attention_dim: 4096 }));
    const rss0 = process.memoryUsage().rss;
    refusesFast(() => UNet2DConditionModel.fromFolder(dir, backend),
      new RegExp(`the model and the weights disagree \\(stopped early: zero placeholders for these keys would exceed ${MAX_PLACEHOLDER_ELEMENTS} elements`), 20_000);
    expect((process.memoryUsage().rss - rss0) / 2 ** 20).toBeLessThan(4 * MAX_PLACEHOLDER_ELEMENTS * 4 / 2 ** 20);
  });
  it('a VAE folder with a valid config still loads (the checks refuse nothing real)', () => {
    AutoencoderKL.fromFolder(vaeDir, backend).dispose();
    UNet2DConditionModel.fromFolder(unetDir, backend).dispose();
  });
});
