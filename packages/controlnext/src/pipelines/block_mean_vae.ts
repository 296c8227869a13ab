// A tiny AutoencoderKL whose weights are set BY CONSTRUCTION (nothing trained) so that it is an exact,
// known codec: encode = the 8 x 8 block means of the image (per RGB channel, standardised), decode =
// bilinear upsampling of those means back to pixels. It is what the tiny model's random VAE cannot be: a
// VAE that carries the picture (blurred to 8-pixel blocks), so that a tiny UNet and ControlNeXt module
// trained on it with `cnx train` produce images one can look at (issue 12), and it runs through the
// ordinary AutoencoderKL code path: the diffusers module tree, a real config and safetensors file.
//
// How an AutoencoderKL computes a linear codec:
// - every ResnetBlock2D and the mid-block attention are the identity: their last layer (conv2, to_out)
//   is zero, so only the residual path remains (in == out channels everywhere: no shortcut conv);
// - the encoder's stride-2 Downsample2D convs average each 2 x 2 block (taps (0,0), (0,1), (1,0), (1,1)
//   of the 3 x 3 kernel at 1/4; the asymmetric (0,1,0,1) pad is never reached); three of them give the
//   8 x 8 block mean;
// - the decoder's Upsample2D (nearest x2, then a 3 x 3 conv) with the separable kernel [1/4, 1/2, 1/4]
//   is bilinear x2 upsampling (align_corners=False) exactly, away from the border; at the border the
//   conv's zero padding pulls the outermost pixel row 1/4 of the way to 0 per stage (the price of a
//   conv-only decoder; visible as a faint frame on a black background);
// - the one non-linearity on the main path, GroupNorm + SiLU before each conv_out, is made linear to
//   ~1e-5: each group holds [x, -x, +K, -K] (conv_in makes the copies; K is a constant carried in the
//   bias), so the group mean is exactly 0 and its variance (E[x^2] + K^2) / 2 is K^2 / 2 to a relative
//   E[x^2] / K^2 <= 2e-5; the norm's weight K / sqrt(2) undoes the scale, its bias S shifts x into
//   SiLU's linear range (silu(x + S) = x + S to 1e-10 for |x| < S - 1), and conv_out subtracts S.
// Hence 12 channels in 3 groups (one group per RGB channel) in every block.
//
// Latents: [3, H/8, W/8], channel c = (blockmean_c(x) - mean_c) / std_c with x in [-1, 1] (the VAE's
// input range) and (mean_c, std_c) the statistics of the data it is meant for (e.g. the synthetic
// shapes set: blockMeanLatentStats), so that scaling_factor is 1 and the latents have unit variance,
// which the diffusion noise schedule assumes. The posterior's log-variance is -30 (diffusers' clamp),
// a standard deviation of 3e-7: sampling it is the mean.

import { type Backend, type Tensor, type WeightSource, joinWeightPath } from '@cnx/tensor';

/** Carrier constant K (see above): large against |x| <= ~1 so that the group variance is K^2 / 2. */
const CARRIER = 256;
/** SiLU shift S: silu(v) = v to 1e-10 for v > S - 1. */
const SILU_SHIFT = 24;
/** log-variance of the posterior: diffusers clamps it to [-30, 20]; -30 makes sampling deterministic. */
const LOG_VARIANCE = -30;
/** Pixels per latent along each axis: three 2x downsamplers. */
export const BLOCK_MEAN_VAE_FACTOR = 8;

/** Per-channel statistics of the 8 x 8 block means (x in [-1, 1]) that standardise the latents. */
export interface BlockMeanLatentStats {
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

/** The AutoencoderKL config (diffusers keys): four blocks of 12 channels in 3 groups, 3 latent channels. */
export function blockMeanVaeConfig(sampleSize = 64): Record<string, unknown> {
  return {
    in_channels: 3, out_channels: 3, latent_channels: 3, layers_per_block: 1, norm_num_groups: 3, sample_size: sampleSize,
    down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
    up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
    block_out_channels: [12, 12, 12, 12], act_fn: 'silu', scaling_factor: 1,
  };
}

/** Mean and standard deviation of each channel's 8 x 8 block means over images given as RGB bytes [H, W, 3]. */
export function blockMeanLatentStats(images: Iterable<{ rgb: Uint8Array; size: number }>): BlockMeanLatentStats {
  const sum = [0, 0, 0], sq = [0, 0, 0];
  let n = 0;
  for (const { rgb, size } of images) {
    if (size % BLOCK_MEAN_VAE_FACTOR !== 0) throw new Error(`blockMeanLatentStats: image size ${size} is not a multiple of ${BLOCK_MEAN_VAE_FACTOR}`);
    const b = size / BLOCK_MEAN_VAE_FACTOR;
    for (let by = 0; by < b; by++) {
      for (let bx = 0; bx < b; bx++) {
        for (let c = 0; c < 3; c++) {
          let s = 0;
          for (let y = 0; y < BLOCK_MEAN_VAE_FACTOR; y++) {
            for (let x = 0; x < BLOCK_MEAN_VAE_FACTOR; x++) s += rgb[((by * BLOCK_MEAN_VAE_FACTOR + y) * size + bx * BLOCK_MEAN_VAE_FACTOR + x) * 3 + c]!;
          }
          const m = (s / BLOCK_MEAN_VAE_FACTOR ** 2) / 127.5 - 1;
          sum[c]! += m; sq[c]! += m * m;
        }
        n++;
      }
    }
  }
  if (n === 0) throw new Error('blockMeanLatentStats: no images');
  const mean = sum.map((s) => s / n);
  const std = sq.map((s, c) => Math.sqrt(Math.max(s / n - mean[c]! ** 2, 1e-12)));
  return { mean: [mean[0]!, mean[1]!, mean[2]!], std: [std[0]!, std[1]!, std[2]!] };
}

/**
 * The block-mean codec's weights by diffusers key (a WeightSource for `new AutoencoderKL(blockMeanVaeConfig(), ...)`).
 * Every weight not named below is zero and every norm weight one (rank-1 `.weight` of a norm), so the
 * resnets and attention add nothing.
 */
export class BlockMeanVaeWeights implements WeightSource {
  constructor(private readonly stats: BlockMeanLatentStats, private readonly prefix = '') {}

  has(): boolean {
    return true;
  }

  sub(prefix: string): WeightSource {
    return new BlockMeanVaeWeights(this.stats, joinWeightPath(this.prefix, prefix));
  }

  get(path: string, shape: readonly number[], backend: Backend): Tensor {
    const key = joinWeightPath(this.prefix, path);
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const isNormWeight = /(^|\.)(norm\d*|group_norm|conv_norm_out)\.weight$/.test(key);
    if (isNormWeight) data.fill(1);
    this.fill(key, shape, data);
    return backend.fromRaw(data, shape);
  }

  /** Set the constructed entries of `key` (conv weights [O, I, kh, kw], row-major). */
  private fill(key: string, shape: readonly number[], d: Float32Array): void {
    const { mean, std } = this.stats;
    const conv = (o: number, i: number, ky: number, kx: number, v: number) => {
      d[((o * shape[1]! + i) * shape[2]! + ky) * shape[3]! + kx] = v;
    };
    const carriers = () => {
      for (let c = 0; c < 3; c++) { d[4 * c + 2] = CARRIER; d[4 * c + 3] = -CARRIER; }
    };
    if (key === 'encoder.conv_in.weight') {
      for (let c = 0; c < 3; c++) { conv(4 * c, c, 1, 1, 1); conv(4 * c + 1, c, 1, 1, -1); }
    } else if (key === 'encoder.conv_in.bias') {
      carriers();
    } else if (/^encoder\.down_blocks\.\d+\.downsamplers\.0\.conv\.weight$/.test(key)) {
      for (let j = 0; j < shape[0]!; j++) for (const [ky, kx] of [[0, 0], [0, 1], [1, 0], [1, 1]] as const) conv(j, j, ky, kx, 0.25);
    } else if (/^(encoder|decoder)\.conv_norm_out\.weight$/.test(key)) {
      for (let c = 0; c < 3; c++) d[4 * c] = CARRIER / Math.SQRT2;
    } else if (/^(encoder|decoder)\.conv_norm_out\.bias$/.test(key)) {
      for (let c = 0; c < 3; c++) d[4 * c] = SILU_SHIFT;
    } else if (key === 'encoder.conv_out.weight') {
      // channels 0-2: the latent mean; 3-5: the log-variance (weights zero, bias below)
      for (let c = 0; c < 3; c++) conv(c, 4 * c, 1, 1, 1 / std[c]!);
    } else if (key === 'encoder.conv_out.bias') {
      for (let c = 0; c < 3; c++) { d[c] = -(SILU_SHIFT + mean[c]!) / std[c]!; d[3 + c] = LOG_VARIANCE; }
    } else if (key === 'quant_conv.weight' || key === 'post_quant_conv.weight') {
      for (let j = 0; j < shape[0]!; j++) conv(j, j, 0, 0, 1);
    } else if (key === 'decoder.conv_in.weight') {
      for (let c = 0; c < 3; c++) { conv(4 * c, c, 1, 1, std[c]!); conv(4 * c + 1, c, 1, 1, -std[c]!); }
    } else if (key === 'decoder.conv_in.bias') {
      for (let c = 0; c < 3; c++) { d[4 * c] = mean[c]!; d[4 * c + 1] = -mean[c]!; }
      carriers();
    } else if (/^decoder\.up_blocks\.\d+\.upsamplers\.0\.conv\.weight$/.test(key)) {
      // x and -x: bilinear; the carriers: nearest (the centre tap), so that the zero padding cannot shrink
      // them at the border (that would lower the group variance and scale the whole image up by ~7 %).
      const k = [0.25, 0.5, 0.25];
      for (let j = 0; j < shape[0]!; j++) {
        if (j % 4 >= 2) conv(j, j, 1, 1, 1);
        else for (let ky = 0; ky < 3; ky++) for (let kx = 0; kx < 3; kx++) conv(j, j, ky, kx, k[ky]! * k[kx]!);
      }
    } else if (key === 'decoder.conv_out.weight') {
      for (let c = 0; c < 3; c++) conv(c, 4 * c, 1, 1, 1);
    } else if (key === 'decoder.conv_out.bias') {
      d.fill(-SILU_SHIFT);
    }
  }
}
