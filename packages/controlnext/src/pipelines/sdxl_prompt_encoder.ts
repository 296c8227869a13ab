// SDXL's prompt encoding (diffusers v0.29.2 StableDiffusionXLPipeline.encode_prompt; the ControlNeXt-SDXL
// repo's StableDiffusionXLControlNeXtPipeline.encode_prompt is the same code): two CLIP text encoders,
//   text_encoder   = CLIPTextModel (ViT-L, width 768)             with tokenizer
//   text_encoder_2 = CLIPTextModelWithProjection (OpenCLIP bigG, 1280, projection 1280) with tokenizer_2
// each run on its own tokenisation of the prompt (prompt_2 for the second; default: the same prompt),
// padded to max_length. The UNet's text states are the PENULTIMATE hidden states (hidden_states[-2],
// before the last layer, no final layer norm) of both, concatenated on the feature axis (768 + 1280 =
// 2048); the pooled embedding is the LAST encoder's first output, i.e. text_encoder_2's text_embeds
// (text_projection of its EOS state).
//
// A pipeline without text_encoder (SDXL's refiner) has only [tokenizer_2, text_encoder_2]; diffusers
// then zips [prompt, prompt_2] with that one-entry list, so the second encoder sees `prompt` (prompt_2 is
// ignored). Reproduced as is.

import { ops, type Tensor } from '@cnx/tensor';
import type { CLIPTextModel, CLIPTokenizer } from '@cnx/unet';

/** Text states and pooled embeddings of a batch of prompts. */
export interface SDXLPromptEmbeddings {
  /** [B, L, D1 + D2]: penultimate hidden states of the encoders, concatenated. */
  states: Tensor;
  /** [B, P]: the last encoder's projected pooled output. */
  pooled: Tensor;
}

/** Turns prompts into SDXL's text states and pooled embeddings. */
export interface SDXLPromptEncoder {
  /** prompts2: the second encoder's prompts (diffusers prompt_2; default: prompts). */
  encode(prompts: readonly string[], prompts2?: readonly string[]): SDXLPromptEmbeddings;
  dispose(): void;
}

/** One tokenizer + CLIP text model pair. */
export interface ClipTextPair {
  tokenizer: CLIPTokenizer;
  model: CLIPTextModel;
}

/** The two CLIP encoders of SDXL (or only the second one, as in the refiner). */
export class SDXLClipPromptEncoder implements SDXLPromptEncoder {
  readonly encoders: readonly ClipTextPair[];

  /** `first` may be undefined (no text_encoder: the refiner layout); `second` must have text_projection. */
  constructor(first: ClipTextPair | undefined, readonly second: ClipTextPair) {
    if (!second.model.text_projection) {
      throw new Error('SDXLClipPromptEncoder: text_encoder_2 must be a CLIPTextModelWithProjection (config architectures ' +
        '["CLIPTextModelWithProjection"] with projection_dim); its projected pooled output is SDXL\'s pooled text embedding');
    }
    this.encoders = first ? [first, second] : [second];
  }

  /** Width of the pooled embedding (text_encoder_2's projection_dim). */
  get pooledDim(): number { return this.second.model.config.projection_dim!; }

  encode(prompts: readonly string[], prompts2: readonly string[] = prompts): SDXLPromptEmbeddings {
    if (prompts2.length !== prompts.length) {
      throw new Error(`SDXL prompt encoding: ${prompts2.length} second-encoder prompts for ${prompts.length} prompts`);
    }
    const lists = [prompts, prompts2];
    const states: Tensor[] = [];
    let pooled: Tensor | undefined;
    this.encoders.forEach(({ tokenizer, model }, i) => {
      const out = model.forward(tokenizer.encodeBatch(lists[i]!), { outputHiddenStates: true });
      const hidden = out.hiddenStates!;
      // hidden_states[-2]: the output of the last-but-one layer.
      states.push(hidden[hidden.length - 2]!);
      hidden.forEach((h, j) => { if (j !== hidden.length - 2) h.dispose(); });
      out.lastHiddenState.dispose();
      out.pooledOutput.dispose();
      // "We are only ALWAYS interested in the pooled output of the final text encoder."
      pooled?.dispose();
      pooled = out.textEmbeds;
    });
    const L = states[0]!.shape[1];
    if (states.some((s) => s.shape[1] !== L)) {
      throw new Error(`SDXL prompt encoding: the tokenizers give different lengths (${states.map((s) => s.shape[1]).join(' vs ')}); both must pad to the same model_max_length`);
    }
    const cat = states.length === 1 ? states[0]! : ops.concat(states, -1);
    if (cat !== states[0]) states.forEach((s) => s.dispose());
    return { states: cat, pooled: pooled! };
  }

  dispose(): void {
    for (const { model } of this.encoders) model.dispose();
  }
}
