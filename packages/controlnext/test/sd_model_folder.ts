// A Stable Diffusion folder in the diffusers layout built from the golden cases' tiny models (UNet, VAE,
// scheduler of sd15_pipeline_controlnext; the clip_text text encoder; a byte-level tokenizer written
// here), as copies, optionally with .fp16 weight files next to the fp32 ones and with a tensor changed,
// for tests that run `cnx generate --model` as a process.

import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile, numberToF16Bits, writeSafetensors, type SafetensorsEntry } from '@cnx/tensor';
import { bytesToUnicode } from '@cnx/unet';
import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';

export const golden = GOLDEN_ROOT;
const pipeCase = join(golden, 'sd15_pipeline_controlnext');

/** The ControlNeXt module of the same golden case (a folder with controlnet.safetensors). */
export const goldenControlNeXt = join(pipeCase, 'controlnext');

export interface ModelFolderOptions {
  /** Also write diffusion_pytorch_model.fp16.safetensors / model.fp16.safetensors (F16 copies). */
  fp16?: boolean;
  /** Replace the fp32 weights of these parts by a file that is not safetensors (only the .fp16 files load). */
  brokenFp32?: readonly ('unet' | 'vae' | 'text_encoder')[];
  /** Change keys of a part's config.json (undefined removes the key). */
  config?: Partial<Record<'unet' | 'vae' | 'text_encoder', Record<string, unknown>>>;
  /** Change tensors of a part's fp32 weights: part -> key -> new values (same length). */
  edit?: Partial<Record<'unet' | 'vae' | 'text_encoder', Record<string, (old: Float32Array) => Float32Array>>>;
}

function copyWeights(src: string, dst: string, fp16: boolean, edit: Record<string, (old: Float32Array) => Float32Array> | undefined): void {
  const f = SafetensorsFile.open(src);
  const f32: Record<string, SafetensorsEntry> = {}, f16: Record<string, SafetensorsEntry> = {};
  for (const k of f.keys()) {
    const t = f.readFloat32(k);
    const data = edit?.[k] ? edit[k]!(t.data) : t.data;
    f32[k] = { dtype: 'F32', shape: t.shape, data };
    f16[k] = { dtype: 'F16', shape: t.shape, data: Uint16Array.from(data, (x) => numberToF16Bits(x)) };
  }
  f.close();
  writeSafetensors(dst, f32);
  if (fp16) writeSafetensors(dst.replace(/\.safetensors$/, '.fp16.safetensors'), f16);
}

/** Write the folder at `root` (created); returns root. */
export function writeModelFolder(root: string, opts: ModelFolderOptions = {}): string {
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionPipeline' }));
  const parts = {
    unet: [join(pipeCase, 'unet'), 'diffusion_pytorch_model.safetensors'],
    vae: [join(pipeCase, 'vae'), 'diffusion_pytorch_model.safetensors'],
    text_encoder: [join(golden, 'clip_text', 'text_encoder'), 'model.safetensors'],
  } as const;
  for (const [part, [src, weights]] of Object.entries(parts) as [keyof typeof parts, readonly [string, string]][]) {
    const dir = join(root, part);
    mkdirSync(dir);
    const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, ...opts.config?.[part] }));
    copyWeights(join(src, weights), join(dir, weights), opts.fp16 ?? false, opts.edit?.[part]);
    if (opts.brokenFp32?.includes(part)) writeFileSync(join(dir, weights), 'not a safetensors file');
  }
  mkdirSync(join(root, 'scheduler'));
  for (const f of readdirSync(join(pipeCase, 'scheduler'))) copyFileSync(join(pipeCase, 'scheduler', f), join(root, 'scheduler', f));
  mkdirSync(join(root, 'tokenizer'));
  const vocab: Record<string, number> = {};
  for (const s of bytesToUnicode()) { vocab[s] = Object.keys(vocab).length; vocab[`${s}</w>`] = Object.keys(vocab).length; }
  vocab['<|startoftext|>'] = Object.keys(vocab).length;
  vocab['<|endoftext|>'] = Object.keys(vocab).length;
  writeFileSync(join(root, 'tokenizer', 'vocab.json'), JSON.stringify(vocab));
  writeFileSync(join(root, 'tokenizer', 'merges.txt'), '#version: 0.2\n');
  return root;
}
