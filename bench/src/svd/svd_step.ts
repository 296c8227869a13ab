// One denoising step of Stable Video Diffusion (SVD-xt's UNet) for one window of F frames under
// classifier-free guidance (UNet batch 2F), alone and with ControlNeXt-SVD, real architectures with
// random weights (latency does not depend on weight values):
//   svd-base      UNetSpatioTemporalConditionModel on [uncond; cond] x F frames
//   svd-v2-ref    + the ControlNeXt-SVD-v2 module as the repo pipeline runs it: on the CFG-doubled frames
//                 (2F), the whole module every step, injected with the per-sample strengths (uncond 0)
//   svd-v2-ours   + the same module once on the F frames, its timestep-independent prefix (stem and the
//                 first ResNet's conv1 / shortcut) prepared once per window and generation, the [F] map
//                 injected into the conditional half (controlnext/src/controlnext/controlnext_svd.ts)
//   svd-v1-ref / svd-v1-ours   the same for ControlNeXt-SVD (v1), injected before the mid block
// Sizes: SVD-xt's unet/config.json; the modules' released widths (spec 6.1, 7.1).

import type { Backend, Tensor, WeightSource } from '@cnx/tensor';
import { ControlNeXtSVD, ControlNeXtSVDv1Module, ControlNeXtSVDv2Module, type PreparedControl } from '@cnx/controlnext';
import { UNetSpatioTemporalConditionModel } from '@cnx/unet';

/** stabilityai/stable-video-diffusion-img2vid-xt unet/config.json (diffusers). */
export const SVD_XT_UNET_CONFIG = {
  in_channels: 8, out_channels: 4,
  down_block_types: ['CrossAttnDownBlockSpatioTemporal', 'CrossAttnDownBlockSpatioTemporal', 'CrossAttnDownBlockSpatioTemporal', 'DownBlockSpatioTemporal'],
  up_block_types: ['UpBlockSpatioTemporal', 'CrossAttnUpBlockSpatioTemporal', 'CrossAttnUpBlockSpatioTemporal', 'CrossAttnUpBlockSpatioTemporal'],
  block_out_channels: [320, 640, 1280, 1280], addition_time_embed_dim: 256, projection_class_embeddings_input_dim: 768,
  layers_per_block: 2, cross_attention_dim: 1024, transformer_layers_per_block: 1, num_attention_heads: [5, 10, 20, 20], num_frames: 25,
};

const STEM = { timeProjDim: 128, timeEmbedDim: 256, stemChannels: [64, 64, 128] as [number, number, number], stemPadding: 0, midChannels: 256 };
/** ControlNeXt-SVD-v2's module (3,526,400 parameters). */
export const SVD_V2_STRUCTURE = { ...STEM, inChannels: [128, 128], outChannels: [128, 256], groups: [4, 8], finalChannels: 320, scale: 1 };
/** ControlNeXt-SVD (v1)'s module (5,610,177 parameters). */
export const SVD_V1_STRUCTURE = { ...STEM, inChannels: [128, 128, 256], outChannels: [128, 256, 256], groups: [4, 8, 8], finalChannels: 1280 };

export const SVD_CONFIG_IDS = ['svd-base', 'svd-v2-ref', 'svd-v2-ours', 'svd-v1-ref', 'svd-v1-ours'] as const;
export type SvdConfigId = (typeof SVD_CONFIG_IDS)[number];

export const SVD_LABELS: Record<SvdConfigId, string> = {
  'svd-base': 'SVD UNet (base)',
  'svd-v2-ref': '+ ControlNeXt-SVD-v2, reference (CFG batch 2F, whole module every step)',
  'svd-v2-ours': '+ ControlNeXt-SVD-v2, ours (F frames, prefix cached)',
  'svd-v1-ref': '+ ControlNeXt-SVD v1, reference',
  'svd-v1-ours': '+ ControlNeXt-SVD v1, ours',
};

export interface SvdGeometry {
  height: number;
  width: number;
  frames: number;
}

export interface SvdModels {
  unet: UNetSpatioTemporalConditionModel;
  v2?: ControlNeXtSVD;
  v1?: ControlNeXtSVD;
}

export function buildSvdModels(backend: Backend, ws: (k: number) => WeightSource, ids: readonly SvdConfigId[]): SvdModels {
  const unet = new UNetSpatioTemporalConditionModel(SVD_XT_UNET_CONFIG, ws(1), backend);
  const m: SvdModels = { unet };
  if (ids.some((i) => i.startsWith('svd-v2'))) m.v2 = new ControlNeXtSVD('svd_v2', new ControlNeXtSVDv2Module(ws(2), backend, SVD_V2_STRUCTURE), backend);
  if (ids.some((i) => i.startsWith('svd-v1'))) m.v1 = new ControlNeXtSVD('svd', new ControlNeXtSVDv1Module(ws(3), backend, SVD_V1_STRUCTURE), backend);
  return m;
}

export interface SvdInputs {
  sample: Tensor;
  ctx: Tensor;
  ids: Tensor;
  /** The window's pose frames [F, 3, H, W] and the repo's doubled video [2, F, 3, H, W]. */
  frames: Tensor;
  video: Tensor;
}

export function makeSvdInputs(backend: Backend, g: SvdGeometry): SvdInputs {
  const h = g.height / 8, w = g.width / 8, F = g.frames;
  const fill = (n: number, f: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => f(i));
  return {
    sample: backend.fromRaw(fill(2 * F * 8 * h * w, (i) => Math.sin(i * 0.37)), [2, F, 8, h, w]),
    ctx: backend.fromRaw(fill(2 * 1024, (i) => (i < 1024 ? 0 : Math.cos(i))), [2, 1, 1024]),
    ids: backend.fromRaw(Float32Array.of(6, 128, 0.02, 6, 128, 0.02), [2, 3]),
    frames: backend.fromRaw(fill(F * 3 * g.height * g.width, (i) => ((i * 2654435761) % 7 === 0 ? 1 : 0)), [F, 3, g.height, g.width]),
    video: backend.zeros([2, F, 3, g.height, g.width]),
  };
}

export function disposeSvdInputs(x: SvdInputs): void {
  Object.values(x).forEach((t) => (t as Tensor).dispose());
}

/** One configuration: an optional once-per-generation preparation, then steps. */
export interface SvdStepRunner {
  /** The prefix (ours): once per window and generation; returns nothing, keeps its state. */
  prepare?(): void;
  /** One denoising step at c_noise `t`; returns the UNet output (the caller disposes it). */
  step(t: number): Tensor;
  dispose(): void;
}

export function svdRunner(id: SvdConfigId, m: SvdModels, x: SvdInputs, backend: Backend): SvdStepRunner {
  const F = x.frames.shape[0]!;
  const tT = (t: number) => backend.fromRaw(Float32Array.of(t), [1]);
  if (id === 'svd-base') {
    return {
      step(t) {
        const tt = tT(t);
        const y = m.unet.forward(x.sample, tt, x.ctx, x.ids);
        tt.dispose();
        return y;
      },
      dispose() {},
    };
  }
  const cnx = id.startsWith('svd-v2') ? m.v2! : m.v1!;
  if (id.endsWith('-ref')) {
    return {
      step(t) {
        const tt = tT(t);
        const ctrl = cnx.module.forwardVideo(x.video, tt);
        const h = cnx.referenceHooks(ctrl, { frames: F, cfg: true });
        const y = m.unet.forward(x.sample, tt, x.ctx, x.ids, { hooks: h.hooks });
        h.dispose();
        ctrl.out.dispose();
        tt.dispose();
        return y;
      },
      dispose() {},
    };
  }
  let prepared: PreparedControl | undefined;
  return {
    prepare() {
      prepared?.dispose();
      prepared = cnx.prepare(x.frames);
    },
    step(t) {
      if (!prepared) throw new Error(`${id}: prepare() first`);
      const tt = tT(t);
      const ctrl = cnx.control(prepared, tt);
      const h = cnx.hooks(ctrl, { frames: F, cfg: true });
      const y = m.unet.forward(x.sample, tt, x.ctx, x.ids, { hooks: h.hooks });
      h.dispose();
      ctrl.out.dispose();
      tt.dispose();
      return y;
    },
    dispose() { prepared?.dispose(); },
  };
}
