// The strict `fromFolder` loading every model class shares (CLIPTextModel, AutoencoderKL,
// UNet2DConditionModel, ControlNetModel): a folder's config.json must be there, every weight the model
// asks for must be in the store with its shape, and every key of the store must be used
// (WeightStore.finish, the loader report); on failure the model's tensors are released.
//
// Node only at call time: the files are read through node:fs looked up lazily (@cnx/tensor nodeFs), so
// this module imports nothing Node-specific and the package's main entry bundles for browsers, where
// the same models load from bytes (model_files.ts, each class's fromFiles).

import { nodeFs, nodePath, readRegularTextFile, WeightStore, type WeightStoreOptions } from '@cnx/tensor';
import type { Module } from './module.js';
import { buildStrict, parseConfigText } from './model_files.js';

const HINT = 'pass the folder\'s files as bytes to the class\'s fromFiles';

/**
 * `dir`/config.json parsed (not validated), and its path for config errors; `who` names the loader.
 * Read with the regular-file reader (@cnx/tensor model_folder_files.ts): a FIFO or a folder is refused at
 * once, the size is capped before reading.
 */
export function readConfigJson(dir: string, who: string): { raw: Record<string, unknown>; path: string } {
  const { existsSync } = nodeFs(who, HINT);
  const path = nodePath(who, HINT).join(dir, 'config.json');
  if (!existsSync(path)) throw new Error(`${who}: ${dir} has no config.json`);
  return { raw: parseConfigText(readRegularTextFile(path, who), path), path };
}

/** A text file of a folder, or undefined when absent (regular files only, size-capped; read lazily through node:fs). */
export function readFolderText(dir: string, name: string, who: string): string | undefined {
  const { existsSync } = nodeFs(who, HINT);
  const path = nodePath(who, HINT).join(dir, name);
  return existsSync(path) ? readRegularTextFile(path, who) : undefined;
}

/**
 * Open the weights at `weights` (file or folder), build the model from them and check that every key
 * was used. A build or finish error disposes what was built; the store is closed either way.
 */
export function loadStrict<M extends Module>(weights: string, opts: WeightStoreOptions, build: (store: WeightStore) => M): M {
  return buildStrict(WeightStore.open(weights, opts), build);
}
