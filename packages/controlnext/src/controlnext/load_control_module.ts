// Loading a ControlNeXt control module from a released file (`controlnet.safetensors`, SD1.5-Training's
// `controlnext.safetensors`, or the folder holding it with its config.json), strictly:
//  1. detect the architecture from the keys (spec 15): `down_res.0.norm1.weight` of shape [3] = the
//     SD1.5 release module (its first block sees the RGB image); `embedding.0.weight` = the light module;
//  2. refuse a file whose architecture is not the requested variant's (issue #89's failure mode);
//  3. read the widths from the weight shapes (config.json is unreliable: the release module ignores it);
//     what is not in the weights (GroupNorm groups, the light module's float scale) comes from the
//     options, then config.json, then the repo's class defaults;
//  4. build the module and finish the WeightStore: any missing / mis-shaped / unused key fails with the
//     store's report (nearest key for each missing one).

import { WeightStore, type Backend } from '@cnx/tensor';
import { configFromFiles, weightStoreFromFiles, type ModelFiles } from '@cnx/unet';
import type { ControlModule } from './control_module.js';
import { ControlNeXtLightModule, inferLightStructure } from './controlnext_light.js';
import { ControlNeXtSD15Module, inferReleaseStructure } from './controlnext_sd15.js';
import { getVariant, type ControlNeXtVariant, type VariantName } from './variants.js';

export type DetectedArch = 'release' | 'light';

/** What detectModuleArch needs of a weight file. */
export interface KeyShapes {
  has(path: string): boolean;
  shapeOf(path: string): readonly number[] | undefined;
}

/** The module architecture of a weight file, with the key that decided it. */
export function detectModuleArch(w: KeyShapes, source = 'the weights'): { arch: DetectedArch; evidence: string } {
  const n1 = w.shapeOf('down_res.0.norm1.weight');
  if (w.has('embedding.0.weight')) {
    return { arch: 'light', evidence: `'embedding.0.weight' [${w.shapeOf('embedding.0.weight')!.join(', ')}] is present (the light module's stride-2 stem)` };
  }
  if (n1 && n1.length === 1 && n1[0] === 3) {
    return { arch: 'release', evidence: "'down_res.0.norm1.weight' is [3] (the SD1.5 release module's first block takes the RGB image)" };
  }
  throw new Error(`${source}: not a ControlNeXt control module: expected 'embedding.0.weight' (light module: SD1.5-Training / SDXL / SVD-v2) ` +
    `or 'down_res.0.norm1.weight' of shape [3] (SD1.5 release module); found ${n1 ? `'down_res.0.norm1.weight' [${n1.join(', ')}]` : "neither key"}`);
}

/** What may settle a light module's variant when its config.json does not (see detectVariant). */
export interface VariantHints {
  /** The base model the module is loaded with: a light module is SD1.5-Training's for 'sd', SDXL's for 'sdxl'. */
  family?: 'sd' | 'sdxl';
}

/** The variant a module file says it is, with the evidence. */
export interface DetectedVariant {
  variant: VariantName;
  evidence: string;
}

/**
 * The variant of a module file or folder, when the file says it: the release module is SD1.5's; a light
 * module is SD1.5-Training's when its config.json is a `ControlNeXtModel` (or has controlnext_scale), and
 * SDXL's when it is a `ControlNetModel` with final_out_channels (the two repos' classes, spec 4.1 / 5.1);
 * without such a config.json, the base model family of `hints` (what the module is loaded with), then the
 * weights file's name: SD1.5-Training saves `controlnext.safetensors` (`controlnext.bin`), the SDXL repos
 * `controlnet.safetensors` (spec 4.3, 5.4, 11). A light module that none of these settles (the weights are identical in layout) is
 * an error that says how to name the variant.
 */
export function detectVariant(fileOrFolder: string, hints: VariantHints = {}): DetectedVariant {
  const store = WeightStore.open(fileOrFolder, { fileNames: CONTROL_MODULE_FILE_NAMES });
  return detectStoreVariant(store, store.config, hints);
}

/** detectVariant for a module folder's files in memory (the weights file, and config.json when there). */
export function detectVariantFromFiles(files: ModelFiles, hints: VariantHints = {}): DetectedVariant {
  return detectStoreVariant(weightStoreFromFiles(files, {}, 'detectVariantFromFiles'), filesConfig(files), hints);
}

function filesConfig(files: ModelFiles): Record<string, unknown> | undefined {
  return Object.hasOwn(files, 'config.json') ? configFromFiles(files, 'ControlNeXt module').raw : undefined;
}

function detectStoreVariant(store: WeightStore, cfg: Record<string, unknown> | undefined, hints: VariantHints): DetectedVariant {
  try {
    const { arch, evidence } = detectModuleArch(store, store.source);
    if (arch === 'release') return { variant: 'sd15', evidence };
    const cls = cfg?._class_name;
    if (cls === 'ControlNeXtModel' || typeof cfg?.controlnext_scale === 'number') {
      return { variant: 'sd15_training', evidence: `${evidence}; config.json _class_name ${JSON.stringify(cls)} (ControlNeXt-SD1.5-Training)` };
    }
    if (cls === 'ControlNetModel' && cfg?.final_out_channels !== undefined) {
      return { variant: 'sdxl', evidence: `${evidence}; config.json ControlNetModel with final_out_channels (ControlNeXt-SDXL)` };
    }
    if (hints.family) {
      const v = hints.family === 'sdxl' ? 'sdxl' : 'sd15_training';
      return { variant: v, evidence: `${evidence}; loaded with an ${hints.family === 'sdxl' ? 'SDXL' : 'SD 1.x'} model (a light module there is ${v})` };
    }
    // The first weights file's name (a store over several files names them joined by ' + ').
    const name = (store.source.split(' + ')[0] ?? '').split(/[\\/]/).pop() ?? '';
    if (/^controlnext\./i.test(name)) return { variant: 'sd15_training', evidence: `${evidence}; file name ${name} (ControlNeXt-SD1.5-Training saves controlnext.*)` };
    if (/^controlnet\./i.test(name)) return { variant: 'sdxl', evidence: `${evidence}; file name ${name} (the SDXL releases are controlnet.safetensors)` };
    throw new Error(`${store.source}: a light ControlNeXt module (${evidence}), but nothing tells SD1.5-Training from SDXL / SVD-v2 ` +
      `(config.json ${cfg ? `_class_name ${JSON.stringify(cls)}` : 'absent'}, file name ${name}); name the variant (cnx: --variant sd15_training or --variant sdxl)`);
  } finally {
    store.close();
  }
}

export interface LoadControlModuleOptions {
  /** The variant the module is for; its architecture must match the file's. */
  variant: VariantName | ControlNeXtVariant;
  /** GroupNorm groups of down_res.i (not stored in the file). */
  groups?: readonly number[];
  /** Light module's float scale (SD1.5-Training's controlnext_scale); default: config.json, else 1. */
  scale?: number;
}

function numberArray(v: unknown): number[] | undefined {
  // A list of anything else is not silently ignored: inferDownPathStructure names it.
  return Array.isArray(v) && v.length <= 64 && v.every((x) => typeof x === 'number') ? (v as number[]) : undefined;
}

/**
 * The weights file of a module FOLDER when it is not a diffusers name: the repos' own names (SD1.5-Training
 * saves controlnext.bin, the SDXL / SD1.5 releases ship controlnet.safetensors). A training checkpoint
 * folder (cnx train) holds the module as controlnext.safetensors beside the UNet files.
 */
export const CONTROL_MODULE_FILE_NAMES: readonly string[] = ['controlnext.safetensors', 'controlnet.safetensors'];

/** Load and strictly check a control module (see the header). */
export function loadControlModule(fileOrFolder: string, backend: Backend, opts: LoadControlModuleOptions): ControlModule {
  const store = WeightStore.open(fileOrFolder, { fileNames: CONTROL_MODULE_FILE_NAMES });
  return loadFromStore(store, store.config, backend, opts);
}

/** The same from the module folder's files in memory (the weights file, and config.json when there). */
export function loadControlModuleFromFiles(files: ModelFiles, backend: Backend, opts: LoadControlModuleOptions): ControlModule {
  return loadFromStore(weightStoreFromFiles(files, {}, 'loadControlModuleFromFiles'), filesConfig(files), backend, opts);
}

function loadFromStore(store: WeightStore, config: Record<string, unknown> | undefined, backend: Backend, opts: LoadControlModuleOptions): ControlModule {
  const variant = typeof opts.variant === 'string' ? getVariant(opts.variant) : opts.variant;
  let module: ControlModule | undefined;
  try {
    const { arch, evidence } = detectModuleArch(store, store.source);
    const wanted = variant.moduleArch;
    if (arch !== wanted) {
      throw new Error(`${store.source}: wrong variant: this is a ${arch === 'release' ? 'SD1.5 release' : 'light (SD1.5-Training / SDXL / SVD-v2)'} ` +
        `control module (${evidence}), but variant '${variant.name}' needs the ${wanted} module (${variant.moduleSource})`);
    }
    const shapeOf = (p: string) => store.shapeOf(p);
    const cfg = config ?? {};
    if (arch === 'release') {
      // config.json of the release is ignored by its class (spec 3.1): only explicit groups count.
      module = new ControlNeXtSD15Module(store, backend, inferReleaseStructure(shapeOf, opts.groups));
    } else {
      const rawScale = Object.hasOwn(cfg, 'controlnext_scale') ? cfg.controlnext_scale : undefined;
      if (rawScale !== undefined && rawScale !== null && (typeof rawScale !== 'number' || !Number.isFinite(rawScale) || Math.abs(rawScale) > 100)) {
        throw new Error(`${store.source}: config.json controlnext_scale=${JSON.stringify(rawScale)?.slice(0, 80)}: expected a number in [-100, 100]`);
      }
      const cfgScale = typeof rawScale === 'number' ? rawScale : undefined;
      const rawGroups = Object.hasOwn(cfg, 'groups') && cfg.groups !== null ? cfg.groups : undefined;
      if (rawGroups !== undefined && numberArray(rawGroups) === undefined) {
        throw new Error(`${store.source}: config.json groups=${JSON.stringify(rawGroups)?.slice(0, 80)}: expected a list of GroupNorm group counts, one per down_res block`);
      }
      const structure = inferLightStructure(shapeOf, {
        groups: opts.groups ?? numberArray(cfg.groups),
        stemPadding: variant.stemPadding,
        scale: opts.scale ?? cfgScale ?? 1,
      });
      module = new ControlNeXtLightModule(store, backend, structure);
    }
    store.finish();
    return module;
  } catch (e) {
    module?.dispose();
    throw e;
  } finally {
    store.close();
  }
}
