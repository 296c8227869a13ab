// The strict `fromFolder` loading every model class shares (CLIPTextModel, AutoencoderKL,
// UNet2DConditionModel, ControlNetModel): a folder's config.json must be there, every weight the model
// asks for must be in the store with its shape, and every key of the store must be used
// (WeightStore.finish, the loader report); on failure the model's tensors are released.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WeightStore, type WeightStoreOptions } from '@cnx/tensor';
import type { Module } from './module.js';

/** How a model keeps its weights in memory (module.ts HalfPrecisionWeights). */
export interface WeightStorageOptions {
  /** 'f16': matrix / convolution weights stored as f16 (half the memory), widened per op; default 'f32'. */
  weightDtype?: 'f32' | 'f16';
}

/** `dir`/config.json parsed (not validated), and its path for config errors; `who` names the loader. */
export function readConfigJson(dir: string, who: string): { raw: Record<string, unknown>; path: string } {
  const path = join(dir, 'config.json');
  if (!existsSync(path)) throw new Error(`${who}: ${dir} has no config.json`);
  return { raw: JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>, path };
}

/**
 * Open the weights at `weights` (file or folder), build the model from them and check that every key
 * was used. A build or finish error disposes what was built; the store is closed either way.
 */
export function loadStrict<M extends Module>(weights: string, opts: WeightStoreOptions, build: (store: WeightStore) => M): M {
  const store = WeightStore.open(weights, opts);
  try {
    const model = build(store);
    try {
      store.finish();
    } catch (e) {
      model.dispose();
      throw e;
    }
    return model;
  } finally {
    store.close();
  }
}
