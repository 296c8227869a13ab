export { Module, loadParameter, type LoadParameterOptions } from './module.js';
export { loadStrict, readConfigJson, readFolderText } from './load_model.js';
export * from './config_values.js';
export {
  buildStrict, checkJsonNesting, configFromFiles, fileBytes, fileText, loadStrictFromFiles, MAX_CONFIG_JSON_DEPTH, parseConfigText, subFiles, weightStoreFromFiles, type ModelFiles,
} from './model_files.js';
export { enableGradientCheckpointing } from './gradient_checkpointing.js';
export { Linear, type LinearOptions } from './layers/linear.js';
export { Conv2d, type Conv2dOptions, type Conv2dForwardOptions } from './layers/conv2d.js';
export { GroupNorm, type GroupNormOptions } from './layers/group_norm.js';
export { LayerNorm, type LayerNormOptions } from './layers/layer_norm.js';
export { ResnetBlock2D, type ResnetBlock2DOptions, type ResnetPrefix } from './resnet.js';
export { Downsample2D, type Downsample2DOptions } from './downsampling.js';
export { Upsample2D, type Upsample2DOptions } from './upsampling.js';
export { Timesteps, TimestepEmbedding, type TimestepsOptions, type TimestepEmbeddingOptions } from './embeddings.js';
export { Attention, type AttentionOptions } from './attention.js';
export { FeedForward, GEGLU, maxBindingBytes } from './feed_forward.js';
export { BasicTransformerBlock, Transformer2DModel, type BasicTransformerBlockOptions, type Transformer2DModelOptions } from './transformer_2d.js';
export {
  CrossAttnDownBlock2D, CrossAttnUpBlock2D, DownBlock2D, DownEncoderBlock2D, UNetMidBlock2D, UNetMidBlock2DCrossAttn,
  UpBlock2D, UpDecoderBlock2D, type BlockOptions, type CrossAttnOptions, type DownBlockOutput, type DownBlock2DOptions,
  type MidBlockOptions, type UpBlock2DOptions,
} from './unet_blocks.js';
export {
  applySiteHook, composeHooks, parseHookKey, splitSiteHooks, withModuleHooks, BEFORE_SUFFIX, type FeatureHook, type HookEpilogue, type Hooks,
} from './hooks.js';
export {
  blockBuilder, downBlockTypes, midBlockTypes, upBlockTypes, type DownBlockArgs, type DownBlockType, type MidBlockArgs,
  type MidBlockType, type UNetDownBlock, type UNetMidBlock, type UNetUpBlock, type UpBlockArgs, type UpBlockType,
} from './unet_block_types.js';
export {
  UNet2DConditionModel, parseUNetConfig, type UNet2DConditionConfig, type UNetForwardOptions, type UNetFromFolderOptions,
} from './unet_2d_condition.js';
export {
  AutoencoderKL, Decoder, DeprecatedAttentionNames, Encoder, diagonalGaussian, parseVaeConfig, type AutoencoderKLConfig, type DiagonalGaussian,
} from './vae.js';
export {
  AlphaBlender, SpatioTemporalResBlock, TemporalConv3d, TemporalResnetBlock, type SpatioTemporalResBlockOptions, type TemporalResnetBlockOptions,
} from './resnet_temporal.js';
export {
  AutoencoderKLTemporalDecoder, MidBlockTemporalDecoder, TemporalDecoder, UpBlockTemporalDecoder, parseTemporalVaeConfig,
  type AutoencoderKLTemporalDecoderConfig,
} from './vae_temporal_decoder.js';
export {
  CLIPTextModel, CLIPTextTransformer, CLIPTextEmbeddings, CLIPEncoder, CLIPEncoderLayer, CLIPAttention, CLIPMLP, Embedding,
  parseClipTextConfig, CLIP_ACTIVATIONS, type CLIPTextConfig, type CLIPEncoderConfig, type CLIPTextForwardOptions, type CLIPTextOutput,
} from './clip_text.js';
export {
  CLIPVisionModelWithProjection, CLIPVisionTransformer, CLIPVisionEmbeddings, parseClipVisionConfig,
  type CLIPVisionConfig, type CLIPVisionOutput,
} from './clip_vision.js';
export {
  clipImagePreprocess, resizeWithAntialiasing, gaussianKernel1d, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD,
  type ClipPreprocessed, type ImagePlanes,
} from './clip_image_processor.js';
export { CLIPTokenizer, basicClean, bytesToUnicode, type CLIPTokenizerOptions, type EncodeOptions } from './tokenizer.js';
export { sd15TextEncoderConfig, sd15UNetConfig, sd15VaeConfig, sdxlUNetConfig } from './configs/index.js';
export {
  TemporalBasicTransformerBlock, TransformerSpatioTemporalModel, type TemporalBasicTransformerBlockOptions,
  type TransformerSpatioTemporalModelOptions,
} from './transformer_temporal.js';
export {
  CrossAttnDownBlockSpatioTemporal, CrossAttnUpBlockSpatioTemporal, DownBlockSpatioTemporal, UNetMidBlockSpatioTemporal,
  UpBlockSpatioTemporal, type SpatioTemporalAttnOptions, type SpatioTemporalBlockOptions, type UpBlockSpatioTemporalOptions,
} from './unet_spatio_temporal_blocks.js';
export {
  UNetSpatioTemporalConditionModel, parseSpatioTemporalUNetConfig, type UNetSpatioTemporalConfig,
  type UNetSpatioTemporalForwardOptions,
} from './unet_spatio_temporal.js';
export { gegluOp, geglu, gegluWebgpu, gegluWgsl, type GegluParams } from './ops/geglu.js';
export { timestepEmbeddingOp, timestepEmbedding, timestepEmbeddingWebgpu, timestepEmbeddingWgsl, timestepFrequencies, type TimestepEmbeddingParams } from './ops/timestep_embedding.js';
export { gegluForwardF64, gegluBackwardF64, gegluBackward, geluErfDerivative } from './ops/geglu_backward.js';
export { gegluBackwardOp } from './ops/geglu_backward_op.js';
export * as gegluBackwardKernel from './ops/geglu_backward_wgsl.js';
export * from './schedulers/index.js';
