// A tiny SDXL diffusers folder for tests, in the real layout:
//   model_index.json (StableDiffusionXLPipeline, force_zeros_for_empty_prompt)
//   unet/, vae/, scheduler/          the sdxl_pipeline_controlnext golden case's tiny SDXL UNet (cross_attention_dim
//                                    16, text_time conditioning with pooled width 16), its VAE (scaling 0.13025,
//                                    force_upcast) and its scheduler config
//   text_encoder/ + tokenizer/       a random 2-layer CLIPTextModel of width 8 (the "ViT-L" half of the states)
//   text_encoder_2/ + tokenizer_2/   a random 2-layer CLIPTextModelWithProjection of width 8, projection 16 (the
//                                    "bigG" half and the pooled embedding); its tokenizer pads with "!" as SDXL's does
// 8 + 8 = 16 = the UNet's cross_attention_dim; 6 time ids x 8 + 16 = 64 = projection_class_embeddings_input_dim.
// The case's ControlNeXt-SDXL module and attn2.to_out delta file fit this UNet.

import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CpuBackend, RandomWeights, writeSafetensors, type SafetensorsEntry } from '@cnx/tensor';
import { bytesToUnicode, CLIPTextModel } from '@cnx/unet';

/** A byte-level CLIP vocabulary without merges (every character a token). */
export function writeByteTokenizer(dir: string, specialTokens?: Record<string, string>): number {
  mkdirSync(dir, { recursive: true });
  const vocab: Record<string, number> = {};
  for (const s of bytesToUnicode()) { vocab[s] = Object.keys(vocab).length; vocab[`${s}</w>`] = Object.keys(vocab).length; }
  vocab['<|startoftext|>'] = Object.keys(vocab).length;
  vocab['<|endoftext|>'] = Object.keys(vocab).length;
  writeFileSync(join(dir, 'vocab.json'), JSON.stringify(vocab));
  writeFileSync(join(dir, 'merges.txt'), '#version: 0.2\n');
  if (specialTokens) writeFileSync(join(dir, 'special_tokens_map.json'), JSON.stringify(specialTokens));
  return Object.keys(vocab).length;
}

async function writeClip(dir: string, config: Record<string, unknown>, seed: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const b = new CpuBackend();
  const model = new CLIPTextModel(config, new RandomWeights({ seed }), b);
  const entries: Record<string, SafetensorsEntry> = {};
  for (const [name, t] of model.namedParameters()) entries[name] = { dtype: 'F32', shape: [...t.shape], data: await t.data() };
  model.dispose();
  writeSafetensors(join(dir, 'model.safetensors'), entries);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
}

/** Build the folder at `root` from the golden case folder `sdxlCase` (sdxl_pipeline_controlnext). */
export async function buildTinySdxlFolder(root: string, sdxlCase: string, opts: { refiner?: boolean } = {}): Promise<void> {
  mkdirSync(root, { recursive: true });
  for (const p of ['unet', 'vae', 'scheduler']) symlinkSync(join(sdxlCase, p), join(root, p));
  const vocabSize = writeByteTokenizer(join(root, 'tokenizer_2'), { pad_token: '!' });
  const clip = (hidden: number, extra: Record<string, unknown>) => ({
    model_type: 'clip_text_model', vocab_size: vocabSize, hidden_size: hidden, intermediate_size: 2 * hidden, num_hidden_layers: 2,
    num_attention_heads: 2, max_position_embeddings: 77, hidden_act: 'gelu', layer_norm_eps: 1e-5,
    bos_token_id: vocabSize - 2, eos_token_id: vocabSize - 1, ...extra,
  });
  if (!opts.refiner) {
    writeByteTokenizer(join(root, 'tokenizer'));
    await writeClip(join(root, 'text_encoder'), clip(8, { architectures: ['CLIPTextModel'], hidden_act: 'quick_gelu' }), 21);
  }
  await writeClip(join(root, 'text_encoder_2'), clip(opts.refiner ? 16 : 8, { architectures: ['CLIPTextModelWithProjection'], projection_dim: 16 }), 22);
  writeFileSync(join(root, 'model_index.json'), JSON.stringify({
    _class_name: opts.refiner ? 'StableDiffusionXLImg2ImgPipeline' : 'StableDiffusionXLPipeline', _diffusers_version: '0.29.2',
    force_zeros_for_empty_prompt: !opts.refiner, ...(opts.refiner ? { requires_aesthetics_score: false } : {}),
    scheduler: ['diffusers', 'UniPCMultistepScheduler'],
    text_encoder: opts.refiner ? [null, null] : ['transformers', 'CLIPTextModel'],
    text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
    tokenizer: opts.refiner ? [null, null] : ['transformers', 'CLIPTokenizer'],
    tokenizer_2: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'],
  }));
}
