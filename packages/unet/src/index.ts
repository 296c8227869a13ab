export { Module, loadParameter } from './module.js';
export { Linear, type LinearOptions } from './layers/linear.js';
export { Conv2d, type Conv2dOptions, type Conv2dForwardOptions } from './layers/conv2d.js';
export { GroupNorm, type GroupNormOptions } from './layers/group_norm.js';
export { LayerNorm, type LayerNormOptions } from './layers/layer_norm.js';
export { ResnetBlock2D, type ResnetBlock2DOptions } from './resnet.js';
export { Downsample2D, type Downsample2DOptions } from './downsampling.js';
export { Upsample2D, type Upsample2DOptions } from './upsampling.js';
export { Timesteps, TimestepEmbedding, type TimestepsOptions, type TimestepEmbeddingOptions } from './embeddings.js';
