// Research task: inject ControlNeXt's light module after down_blocks.1 (instead of SD1.5-Training's
// down_blocks.0) with PER-CHANNEL statistics (instead of per-sample), as one file outside the library.
//
// Three seams, all public API: the UNet hook site is a string ('down_blocks.1'); the injection method is
// an object (check + inject) the variant carries; the variant is a plain object built from a released one.
//
//   c      = adaptive_avg_pool2d(control, (h, w))
//   mu, sigma per (sample, channel) over h*w (unbiased std), for x and for c
//   y      = x + s * ((c - mu_c) * sigma_x / (sigma_c + eps) + mu_x)
//
// The method is written with ops.* only, so it runs on every backend (and records for autograd).
// test/examples.test.ts checks it against a float64 loop and runs it in the tiny pipeline.

import { ops, scope, RandomWeights, type Backend, type Tensor } from '@cnx/tensor';
import {
  ControllableDiffusionPipeline, ControlNeXt, ControlNeXtControl, ControlNeXtLightModule, tinyPipeline, TINY_UNET_CONFIG, variants,
  type ControlNeXtVariant, type InjectionMethod, type LightStructure,
} from '@cnx/controlnext';

/** Per-(sample, channel) mean and unbiased std of t [N, C, h, w], as [N, C, 1, 1]. */
function channelStats(t: Tensor): { mean: Tensor; std: Tensor } {
  const [N, C, h, w] = t.shape as [number, number, number, number];
  const flat = t.reshape([N, C, h * w]);
  const mean = ops.mean(flat, 2, true);
  const ss = ops.sum(ops.unary('square', ops.sub(flat, mean)), 2, true);
  const std = ops.sqrt(ops.affine(ss, 1 / (h * w - 1)));
  return { mean: mean.reshape([N, C, 1, 1]), std: std.reshape([N, C, 1, 1]) };
}

export const perChannelCrossNorm: InjectionMethod = {
  name: 'per_channel_cross_norm',
  check(feature, control, variant) {
    if (feature.shape[1] !== control.shape[1]) {
      throw new Error(`${variant.name}: per-channel statistics pair channel i of the control with channel i of the feature at ` +
        `'${variant.site}': expected ${feature.shape[1]} control channels, found ${control.shape[1]}`);
    }
    if (feature.shape[2]! * feature.shape[3]! < 2) {
      throw new Error(`${variant.name}: per-channel std needs at least 2 positions per channel, the feature at '${variant.site}' is ${feature.shape[2]}x${feature.shape[3]}`);
    }
  },
  inject(x, control, scale, { variant }) {
    return scope(() => {
      const [N, , h, w] = x.shape as [number, number, number, number];
      const c = ops.adaptiveAvgPool2d(control, [h, w]);
      const sx = channelStats(x), sc = channelStats(c);
      const k = ops.div(sx.std, ops.affine(sc.std, 1, variant.eps));
      const cHat = ops.add(ops.mul(ops.sub(c, sc.mean), k), sx.mean); // [N, C, h, w] (a batch-1 control broadcasts)
      const s = typeof scale === 'number' ? ops.scale(cHat, scale) : ops.mul(cHat, scale.reshape([N, 1, 1, 1]));
      return ops.add(x, s);
    });
  },
};

/** SD1.5-Training's light-module variant, moved to down_blocks.1 with per-channel statistics. */
export const lightDownBlock1Variant: ControlNeXtVariant = {
  ...variants.sd15_training,
  name: 'light_down_blocks_1_per_channel',
  description: 'light module after down_blocks.1, per-channel cross normalisation (research variant)',
  site: 'down_blocks.1',
  method: perChannelCrossNorm,
};

/** A small light module whose output width is `channels` (the UNet width at the site). */
export function lightModuleStructure(channels: number): LightStructure {
  return {
    timeProjDim: 32, timeEmbedDim: 32, stemChannels: [8, 8, 16], stemPadding: 1, inChannels: [16, 16], outChannels: [16, 16],
    groups: [4, 8], midChannels: 16, finalChannels: channels, scale: 1,
  };
}

/** The tiny random pipeline with a random light module injected by `variant` (default: the one above). */
export function tinyLightPipeline(backend: Backend, variant: ControlNeXtVariant = lightDownBlock1Variant, seed = 0): ControllableDiffusionPipeline {
  const base = tinyPipeline(backend, { seed, control: false });
  // The UNet width after down_blocks.1 of the tiny config (block_out_channels[1]).
  const width = TINY_UNET_CONFIG.block_out_channels[1]!;
  const module = new ControlNeXtLightModule(new RandomWeights({ seed: seed * 16 + 9 }), backend, lightModuleStructure(width));
  return new ControllableDiffusionPipeline({ ...base.components, control: new ControlNeXtControl(new ControlNeXt(variant, module, backend)) });
}
