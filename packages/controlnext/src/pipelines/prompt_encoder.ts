// The prompt encoder of Stable Diffusion 1.x/2.x pipelines: CLIP tokenizer + CLIPTextModel.

import type { Tensor } from '@cnx/tensor';
import type { CLIPTextModel, CLIPTokenizer } from '@cnx/unet';
import type { PromptEncoder } from './pipeline.js';

/** CLIP tokenizer + CLIPTextModel: last_hidden_state of the padded 77-token prompt (SD 1.x). */
export class ClipPromptEncoder implements PromptEncoder {
  constructor(readonly tokenizer: CLIPTokenizer, readonly model: CLIPTextModel) {}

  encode(prompts: readonly string[]): Tensor {
    const out = this.model.forward(this.tokenizer.encodeBatch(prompts));
    out.pooledOutput.dispose();
    out.textEmbeds?.dispose();
    return out.lastHiddenState;
  }

  dispose(): void { this.model.dispose(); }
}
