// Seeded fuzz test of the config parsers (issue 17: "a fuzz test in the suite, seeded, a few thousand
// mutated files, under a minute, for the config parsers and the image decoders"; the decoders are in
// packages/controlnext/test/image_fuzz.test.ts). Real config files (the golden cases' UNet, SDXL UNet,
// VAE, CLIP text, SVD UNet, temporal VAE, CLIP vision, scheduler configs, a tokenizer) are mutated as text (truncation, byte flips, token
// splices, deep nesting) and as JSON (a value replaced by one of the wrong type, sign or size, keys
// removed, hostile keys added). Each mutated file goes through what loading does with it: parse the text
// naming the file, validate, and, when accepted, build the model on shape-only weights (ShapeRecorder,
// nothing allocated) / set a scheduler's timesteps / tokenize a prompt. Each case must be
//   - a clean rejection: an Error (not a TypeError/RangeError from inside) whose message starts with the
//     file's name and is short, or
//   - accepted, with the accepted object usable: the model builds, the timesteps are finite integers in
//     range, the token ids are inside the vocabulary;
// anything else is a crash. The counts are printed and recorded in README.md's reliability section.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CpuBackend, ShapeRecorder } from '@cnx/tensor';
import {
  AutoencoderKL, AutoencoderKLTemporalDecoder, CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection, UNet2DConditionModel,
  UNetSpatioTemporalConditionModel, createScheduler, parseClipTextConfig, parseClipVisionConfig, parseConfigText, parseSchedulerConfig,
  parseSpatioTemporalUNetConfig, parseTemporalVaeConfig, parseUNetConfig, parseVaeConfig, SCHEDULER_NAMES,
} from '@cnx/unet';
import { describe, expect, it } from 'vitest';
import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';

const SEED = 0xc0f16;
const CASES = 3000;
const golden = GOLDEN_ROOT;
const read = (...p: string[]) => readFileSync(join(golden, ...p), 'utf8');
const backend = new CpuBackend();

/** mulberry32, as the safetensors fuzz test. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Kind = 'unet' | 'vae' | 'clip' | 'scheduler' | 'vocab' | 'merges' | 'svd_unet' | 'svd_vae' | 'clip_vision';
const SEEDS: [Kind, string][] = [
  ['unet', read('sd15_unet', 'unet', 'config.json')],
  ['unet', read('sdxl_unet', 'unet', 'config.json')],
  ['vae', read('sd15_vae', 'vae', 'config.json')],
  ['clip', read('clip_text', 'text_encoder', 'config.json')],
  ['svd_unet', read('svd_unet', 'unet', 'config.json')],
  ['svd_vae', read('svd_vae', 'vae', 'config.json')],
  ['clip_vision', read('clip_vision', 'image_encoder', 'config.json')],
  ['scheduler', read('sd15_pipeline_controlnext', 'scheduler', 'scheduler_config.json')],
  ['scheduler', read('sched_dpmpp_2m', 'scheduler', 'scheduler_config.json')],
  ['scheduler', read('sched_euler', 'scheduler', 'scheduler_config.json')],
  ['vocab', readFileSync(join(import.meta.dirname, 'fixtures', 'clip_tokenizer', 'vocab.json'), 'utf8')],
  ['merges', readFileSync(join(import.meta.dirname, 'fixtures', 'clip_tokenizer', 'merges.txt'), 'utf8')],
];
const MERGES = SEEDS.find(([k]) => k === 'merges')![1];
const VOCAB = SEEDS.find(([k]) => k === 'vocab')![1];

function hostileValue(r: () => number): unknown {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  return pick<() => unknown>([
    () => -1, () => 0, () => 1, () => 2, () => 3, () => 1.5, () => 1e-9, () => 1e5, () => 1e8, () => 1e12, () => 2 ** 31, () => 1e308, () => -0.5,
    () => Math.floor(r() * 5000), () => '', () => '4', () => 'x', () => 'silu', () => 'constructor', () => null, () => true, () => false,
    () => [], () => {}, () => [1, 2], () => [32, 64], () => [8, 16, 32], () => [[1, 2], [3]], () => [1, 'a'], () => ['DownBlock2D'],
    () => ['CrossAttnDownBlock2D', 'DownBlock2D'], () => Array.from({ length: 3 + Math.floor(r() * 6) }, () => Math.floor(r() * 64)),
    () => new Array(200_000).fill(0.001), () => ({ a: 1 }),
  ])();
}

/** One mutated file text from a seed. */
function mutate(kind: Kind, text: string, r: () => number): string {
  const int = (n: number) => Math.floor(r() * n);
  const op = int(10);
  if (kind === 'merges' && op < 6) { // a text file: lines edited
    const lines = text.split('\n');
    const i = int(lines.length);
    lines[i] = ['', ' ', 'a', 'a b c', '#version', '\u0000 \ud800', 'x'.repeat(10_000), `${lines[i]} ${lines[i]}`][int(8)]!;
    return lines.join('\n');
  }
  switch (op) {
    case 0: return text.slice(0, int(text.length)); // truncation
    case 1: { // byte flips
      const b = [...text];
      for (let k = 1 + int(6); k > 0; k--) { const i = int(b.length); b[i] = String.fromCharCode(b[i]!.charCodeAt(0) ^ (1 << int(7))); }
      return b.join('');
    }
    case 2: { // JSON tokens spliced in
      const tokens = ['{', '}', '[', ']', '"', ',', ':', '-', '1e999', 'NaN', 'Infinity', '-Infinity', 'null', '\\u0000'];
      let t = text;
      for (let k = 1 + int(3); k > 0; k--) { const i = int(t.length + 1); t = t.slice(0, i) + tokens[int(tokens.length)]! + t.slice(i); }
      return t;
    }
    case 3: { // deep nesting where a value goes
      const d = [8, 33, 1000, 100_000][int(4)]!;
      const deep = `${'['.repeat(d)}1${']'.repeat(d)}`;
      return int(2) === 0 ? deep : text.replace(/:\s*[^,{}[\]]+/, `: ${deep}`);
    }
    case 4: return ['[]', 'null', '1', '"x"', '{}', '', '{"a":'][int(7)]!; // not an object
    default: { // JSON level: a value replaced, a key removed or a hostile key added
      let j: Record<string, unknown>;
      try { j = JSON.parse(text) as Record<string, unknown>; } catch { return text; }
      const keys = Object.keys(j);
      const nested = kind === 'clip' ? j.text_config : kind === 'clip_vision' ? j.vision_config : undefined;
      const sub = nested && typeof nested === 'object' ? (nested as Record<string, unknown>) : j;
      const subKeys = Object.keys(sub);
      const which = int(4);
      if (which <= 1 && subKeys.length) sub[subKeys[int(subKeys.length)]!] = hostileValue(r);
      else if (which === 2 && keys.length) delete j[keys[int(keys.length)]!];
      else {
        const name = ['constructor', '__proto__', 'toString', 'unknown_key', 'only_cross_attention', 'hasOwnProperty'][int(6)]!;
        return `${text.trimEnd().replace(/}$/, '')}${keys.length ? ',' : ''} ${JSON.stringify(name)}: ${JSON.stringify(hostileValue(r))}}`;
      }
      return JSON.stringify(j);
    }
  }
}

/** What loading does with the file; throws a 'crash: ...' error when an invariant breaks. */
function load(kind: Kind, text: string, name: string): void {
  switch (kind) {
    case 'unet': {
      const c = parseUNetConfig(parseConfigText(text, name), name);
      new UNet2DConditionModel(c, new ShapeRecorder(), backend).dispose();
      return;
    }
    case 'vae': {
      const c = parseVaeConfig(parseConfigText(text, name), name);
      new AutoencoderKL(c, new ShapeRecorder(), backend).dispose();
      return;
    }
    case 'clip': {
      const raw = parseConfigText(text, name);
      parseClipTextConfig(raw, name);
      new CLIPTextModel(raw, new ShapeRecorder(), backend).dispose();
      return;
    }
    case 'svd_unet': {
      const c = parseSpatioTemporalUNetConfig(parseConfigText(text, name), name);
      new UNetSpatioTemporalConditionModel(c, new ShapeRecorder(), backend).dispose();
      return;
    }
    case 'svd_vae': {
      const c = parseTemporalVaeConfig(parseConfigText(text, name), name);
      new AutoencoderKLTemporalDecoder(c, new ShapeRecorder(), backend).dispose();
      return;
    }
    case 'clip_vision': {
      const raw = parseConfigText(text, name);
      parseClipVisionConfig(raw, name);
      new CLIPVisionModelWithProjection(raw, new ShapeRecorder(), backend).dispose();
      return;
    }
    case 'scheduler': {
      const json = parseSchedulerConfig(text, name);
      for (const short of Object.keys(SCHEDULER_NAMES)) {
        let s: ReturnType<typeof createScheduler>;
        try {
          s = createScheduler(short, json);
        } catch (e) {
          // The loader prefixes the file (node/pipeline_loading.ts); the class names the key.
          if (e instanceof Error && e.constructor === Error && /^\w+Scheduler config: /.test(e.message)) throw new Error(`${name}: ${e.message}`);
          throw e;
        }
        const n = Math.min(10, s.numTrainTimesteps);
        s.setTimesteps(n);
        const T = s.numTrainTimesteps;
        if (!s.timesteps.every((t) => Number.isFinite(t) && t >= 0 && t < T)) throw new Error(`crash: ${short} timesteps out of [0, ${T}): ${s.timesteps.slice(0, 5).join(', ')}`);
        if (!Number.isFinite(s.initNoiseSigma)) throw new Error(`crash: ${short} init_noise_sigma ${s.initNoiseSigma}`);
        s.dispose();
      }
      return;
    }
    case 'vocab':
    case 'merges': {
      const files = kind === 'vocab' ? { 'vocab.json': text, 'merges.txt': MERGES } : { 'vocab.json': VOCAB, 'merges.txt': text };
      let tok: CLIPTokenizer;
      try {
        tok = CLIPTokenizer.fromFiles(files, `${name}/`);
      } catch (e) {
        if (e instanceof Error && e.constructor === Error && e.message.startsWith(`${name}/`)) throw new Error(`${name}: ${e.message}`);
        throw e;
      }
      const ids = tok.encode('a photo of a cat, 4k!');
      if (!ids.every((id) => Number.isInteger(id) && id >= 0)) throw new Error(`crash: token ids ${ids.slice(0, 8).join(', ')}`);
    }
  }
}

type Outcome = 'rejected' | 'accepted';

function trial(kind: Kind, text: string, name: string): Outcome {
  try {
    load(kind, text, name);
    return 'accepted';
  } catch (e) {
    if (!(e instanceof Error) || e.constructor !== Error) throw new Error(`crash: ${(e as Error)?.constructor?.name}: ${String((e as Error)?.message ?? e).slice(0, 200)}`);
    if (e.message.startsWith('crash: ')) throw e;
    if (!e.message.startsWith(`${name}: `)) throw new Error(`crash: message does not name the file: ${e.message.slice(0, 200)}`);
    if (e.message.length > 1000) throw new Error(`crash: a ${e.message.length}-character message`);
    return 'rejected';
  }
}

describe('config parser fuzz', () => {
  it(`${CASES} seeded mutations of UNet, VAE, CLIP, scheduler and tokenizer files: each a clean rejection or a usable config`, () => {
    for (const [kind, text] of SEEDS) expect(trial(kind, text, `seed-${kind}.json`), kind).toBe('accepted');
    const r = rng(SEED);
    const counts = { rejected: 0, accepted: 0, crashes: 0 };
    const byKind: Record<string, { rejected: number; accepted: number }> = {};
    const crashes: string[] = [];
    let slowest = 0;
    const t0 = performance.now();
    for (let c = 0; c < CASES; c++) {
      const [kind, text] = SEEDS[Math.floor(r() * SEEDS.length)]!;
      const file = mutate(kind, text, r);
      const t = performance.now();
      try {
        const o = trial(kind, file, `fuzz-${c}.json`);
        counts[o]++;
        (byKind[kind] ??= { rejected: 0, accepted: 0 })[o]++;
      } catch (e) {
        counts.crashes++;
        if (crashes.length < 10) crashes.push(`case ${c} (${kind}): ${(e as Error).message.slice(0, 300)}`);
      }
      slowest = Math.max(slowest, performance.now() - t);
    }
    const seconds = (performance.now() - t0) / 1000;
    console.log(`config fuzz (seed ${SEED.toString(16)}): ${CASES} cases, ${counts.rejected} clean rejections, ${counts.accepted} accepted and used, ` +
      `${counts.crashes} crashes; ${seconds.toFixed(1)} s, slowest case ${slowest.toFixed(0)} ms; by kind ${JSON.stringify(byKind)}`);
    expect(crashes).toEqual([]);
    expect(counts.rejected + counts.accepted).toBe(CASES);
    expect(counts.rejected).toBeGreaterThan(CASES / 3);
    expect(counts.accepted).toBeGreaterThan(100);
    expect(slowest).toBeLessThan(5_000);
  }, 60_000);
});
