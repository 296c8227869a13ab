// UNet2DConditionModel built from configs: SD1.5's parameter count without allocating weights, and
// config validation that names the offending key.
import { CpuBackend, ShapeRecorder } from '@cnx/tensor';
import {
  AutoencoderKL, CLIPTextModel, UNet2DConditionModel, parseUNetConfig, parseVaeConfig, sd15TextEncoderConfig, sd15UNetConfig,
  sd15VaeConfig, sdxlUNetConfig,
} from '@cnx/unet';
import { describe, expect, it } from 'vitest';

describe('UNet2DConditionModel config', () => {
  const backend = new CpuBackend();

  it('builds SD1.5 with 859,520,964 parameters (shape-only weights)', () => {
    const rec = new ShapeRecorder();
    const unet = new UNet2DConditionModel(sd15UNetConfig(), rec, backend);
    // The model's own parameter walk and the recorder's requests agree (one key per parameter).
    expect(unet.numParameters()).toBe(859_520_964);
    expect(rec.parameterCount()).toBe(859_520_964);
    expect(unet.namedParameters().length).toBe(rec.shapes().size);
    // Key examples from spec section 13.1, with their shapes.
    const shapes = rec.shapes();
    expect(shapes.get('down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight')).toEqual([320, 320]);
    expect(shapes.get('down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight')).toEqual([320, 768]);
    expect(shapes.get('down_blocks.1.resnets.0.conv_shortcut.weight')).toEqual([640, 320, 1, 1]);
    expect(shapes.get('up_blocks.1.attentions.2.proj_out.weight')).toEqual([1280, 1280, 1, 1]);
    expect(shapes.get('mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight')).toEqual([10240, 1280]);
    expect(shapes.get('up_blocks.0.upsamplers.0.conv.weight')).toEqual([1280, 1280, 3, 3]);
    expect(shapes.get('up_blocks.3.resnets.0.conv1.weight')).toEqual([320, 960, 3, 3]); // 640 + 320 skip
    expect(shapes.get('time_embedding.linear_1.weight')).toEqual([1280, 320]);
    expect(shapes.has('down_blocks.3.downsamplers.0.conv.weight')).toBe(false);
    unet.dispose();
  });

  it('reads attention_head_dim as the number of heads, per block', () => {
    // SD2.x: attention_head_dim [5, 10, 20, 20] heads of 64 channels, linear projections.
    const cfg = { ...sd15UNetConfig(), attention_head_dim: [5, 10, 20, 20], use_linear_projection: true, cross_attention_dim: 1024 };
    const rec = new ShapeRecorder();
    const unet = new UNet2DConditionModel(cfg, rec, backend);
    expect(unet.down_blocks[0]!.resnets.length).toBe(2);
    const blk = (unet.down_blocks[1] as { attentions: { transformer_blocks: { attn1: { heads: number } }[] }[] }).attentions[0]!;
    expect(blk.transformer_blocks[0]!.attn1.heads).toBe(10);
    expect(rec.shapes().get('down_blocks.0.attentions.0.proj_in.weight')).toEqual([320, 320]); // Linear, not 1x1 conv
    expect(unet.numParameters()).toBe(865_910_724); // SD2.x's published UNet size
    unet.dispose();
  });

  it('builds SDXL base (text_time, transformer_layers_per_block [1, 2, 10]) with 2,567,463,684 parameters', () => {
    const rec = new ShapeRecorder();
    const unet = new UNet2DConditionModel(sdxlUNetConfig(), rec, backend);
    expect(unet.numParameters()).toBe(2_567_463_684);
    // 6 time ids x Timesteps(256) + the 1280-wide pooled text embedding = 2816 (spec section 13.2).
    expect(rec.shapes().get('add_embedding.linear_1.weight')).toEqual([1280, 2816]);
    expect(rec.shapes().has('mid_block.attentions.0.transformer_blocks.9.attn2.to_k.weight')).toBe(true);
    expect(rec.shapes().has('mid_block.attentions.0.transformer_blocks.10.norm1.weight')).toBe(false);
    expect(rec.shapes().has('down_blocks.0.attentions.0.norm.weight')).toBe(false); // DownBlock2D first
    unet.dispose();
  });

  it('rejects configuration it does not implement, naming the key', () => {
    expect(() => parseUNetConfig({ ...sd15UNetConfig(), class_embed_type: 'timestep' })).toThrow(/class_embed_type="timestep" is not supported/);
    expect(() => parseUNetConfig({ ...sd15UNetConfig(), down_block_types: ['SimpleCrossAttnDownBlock2D', 'DownBlock2D', 'DownBlock2D', 'DownBlock2D'] }))
      .toThrow(/down_block_types.*SimpleCrossAttnDownBlock2D/);
    expect(() => parseUNetConfig({ ...sd15UNetConfig(), some_new_option: 1 })).toThrow(/unknown UNet2DConditionModel config key 'some_new_option'/);
    expect(() => parseUNetConfig({ ...sd15UNetConfig(), addition_embed_type: 'text' })).toThrow(/addition_embed_type/);
    expect(() => parseUNetConfig({ ...sd15UNetConfig(), norm_num_groups: null })).toThrow(/norm_num_groups=null/);
  });
});

describe('SD1.5 VAE and text encoder configs', () => {
  const backend = new CpuBackend();

  it('builds the SD1.5 VAE with 83,653,863 parameters and the CLIP ViT-L/14 text tower with 123,060,480', () => {
    const vae = new AutoencoderKL(sd15VaeConfig(), new ShapeRecorder(), backend);
    expect(vae.numParameters()).toBe(83_653_863);
    expect(vae.scalingFactor).toBe(0.18215);
    const rec = new ShapeRecorder();
    const clip = new CLIPTextModel(sd15TextEncoderConfig(), rec, backend);
    expect(clip.numParameters()).toBe(123_060_480);
    expect(rec.shapes().get('text_model.embeddings.token_embedding.weight')).toEqual([49408, 768]);
    expect(clip.text_projection).toBeUndefined(); // CLIPTextModel, not ...WithProjection
    vae.dispose();
    clip.dispose();
    expect(() => parseVaeConfig({ ...sd15VaeConfig(), down_block_types: ['DownBlock2D'] })).toThrow(/down_block_types/);
    expect(() => parseVaeConfig({ ...sd15VaeConfig(), norm_type: 'spatial' })).toThrow(/unknown AutoencoderKL config key 'norm_type'/);
  });
});
