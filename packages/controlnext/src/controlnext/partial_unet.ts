// ControlNeXt's partial UNet weights (`unet.safetensors` beside `controlnet.safetensors`), spec 10:
//  - SD1.5 release files hold every `to_out` tensor of the UNet's attention layers and REPLACE the base
//    values (run_controlnext.py: load_state_dict(strict=False));
//  - SDXL files hold DELTAS of the tensors matching `.*attn2.*to_out.*` and are ADDED to the base
//    (pipeline load_controlnext_unet_weights(..., load_weight_increasement=True): W = W0 + dW);
//  - SD1.5-Training writes either full values (`unet.bin`) or deltas (`unet_weight_increasements.bin`).
// The mode comes from, in order: the explicit option; the variant's rule (variants.ts unetMerge); the
// file itself (a file named *increasement* is a delta file; a file whose keys are exactly the SDXL
// training selection attn2.*to_out is a delta file; otherwise replace).
//
// All-or-nothing: every key and shape is checked against the base UNet (Module.getParameter) before
// anything changes; keys the base does not have (or SGM-named keys) and shape mismatches are refused
// with one report naming each key (and the nearest base key).

import { SafetensorsFile, editDistance, findNonFinite, formatShape, numel, ops, type Backend } from '@cnx/tensor';
import type { Module } from '@cnx/unet';
import { getVariant, type VariantName } from './variants.js';

export type MergeMode = 'replace' | 'add';

export interface PartialUnetOptions {
  /** Explicit merge mode; overrides the variant and the file. */
  mode?: MergeMode;
  /** The ControlNeXt variant the file belongs to (sd15 / sd15_training: replace; sdxl: add). */
  variant?: VariantName;
}

export interface PartialUnetReport {
  source: string;
  mode: MergeMode;
  /** Why this mode was chosen. */
  reason: string;
  /** State-dict keys whose values were replaced or to which the delta was added. */
  keys: string[];
  /** Parameter elements touched. */
  elements: number;
  /** Storage dtypes of the file's tensors (e.g. { F16: 140 }). */
  dtypes: Record<string, number>;
}

const SDXL_SELECTION = /.*attn2.*to_out.*/;

/** The merge mode of a partial UNet file and the reason, without touching any model. */
export function detectMergeMode(file: SafetensorsFile, opts: PartialUnetOptions = {}): { mode: MergeMode; reason: string } {
  if (opts.mode) return { mode: opts.mode, reason: `explicit mode '${opts.mode}'` };
  if (opts.variant) {
    const v = getVariant(opts.variant);
    if (v.unetMerge === 'replace' || v.unetMerge === 'add') {
      return { mode: v.unetMerge, reason: `variant ${v.name}: its released UNet files ${v.unetMerge === 'add' ? 'are deltas (W = W0 + dW)' : 'replace the base values'}` };
    }
    throw new Error(`variant ${v.name}: its UNet is released as a full model (${v.unetMerge}), not as a partial file; load it as a UNet folder`);
  }
  const name = file.source.split(/[\\/]/).pop() ?? file.source;
  if (/increasement/i.test(name)) return { mode: 'add', reason: `file name '${name}' (the repo's *_weight_increasements files are deltas)` };
  const keys = file.keys();
  if (keys.length > 0 && keys.every((k) => SDXL_SELECTION.test(k))) {
    return { mode: 'add', reason: 'every key matches .*attn2.*to_out.* (the SDXL training selection, released as deltas)' };
  }
  return { mode: 'replace', reason: 'no delta marker (file name, SDXL attn2-only selection): full values replace the base (strict=False load)' };
}

function nearest(path: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const n of names) {
    const d = editDistance(path, n, bestD);
    if (d < bestD) { bestD = d; best = n; }
  }
  return best;
}

/**
 * Merge a partial UNet file into `unet` (see the header); returns what was done. A path is read in Node;
 * in a browser pass SafetensorsFile.fromBytes(bytes, name) (closed here either way).
 */
export function applyPartialUnet(unet: Module, pathOrFile: string | SafetensorsFile, backend: Backend, opts: PartialUnetOptions = {}): PartialUnetReport {
  const file = typeof pathOrFile === 'string' ? SafetensorsFile.open(pathOrFile) : pathOrFile;
  const path = file.source;
  try {
    const { mode, reason } = detectMergeMode(file, opts);
    const names = unet.namedParameters().map(([n]) => n);
    const known = new Set(names);
    const problems: string[] = [];
    const dtypes: Record<string, number> = {};
    const keys = file.keys();
    if (keys.length === 0) throw new Error(`${path}: partial UNet file holds no tensors`);
    if (keys.some((k) => k.startsWith('input_blocks') || k.startsWith('model.diffusion_model.'))) {
      throw new Error(`${path}: keys use the SGM (single-file checkpoint) naming (e.g. '${keys.find((k) => k.startsWith('input_blocks') || k.startsWith('model.'))}'); convert them to diffusers names first`);
    }
    for (const k of keys) {
      const info = file.info(k);
      dtypes[info.dtype] = (dtypes[info.dtype] ?? 0) + 1;
      if (!known.has(k)) {
        const n = nearest(k, names);
        problems.push(`  ${k}: not a parameter of the base UNet${n ? ` (nearest: ${n})` : ''}`);
        continue;
      }
      const base = unet.getParameter(k);
      if (formatShape(base.shape) !== formatShape(info.shape)) {
        problems.push(`  ${k}: file has ${formatShape(info.shape)}, the base UNet has ${formatShape(base.shape)}`);
      }
      if (!['F32', 'F16', 'BF16'].includes(info.dtype)) problems.push(`  ${k}: dtype ${info.dtype} is not a float type`);
      else {
        // NaN or infinities would spread through every later step (an all-black image): checked here,
        // before anything is merged, at the cost of reading each tensor twice.
        const bad = findNonFinite(file.readRaw(k));
        if (bad) problems.push(`  ${k}: ${bad.count} of ${numel(info.shape)} elements are NaN or infinite, the first at index ${bad.firstIndex} (${bad.firstValue})`);
      }
    }
    if (problems.length > 0) {
      throw new Error(`${path}: partial UNet weights do not match the base UNet (${problems.length} of ${keys.length} keys; nothing was changed):\n${problems.join('\n')}`);
    }
    let elements = 0;
    for (const k of keys) {
      // Widened to f32 (the compute dtype; an fp16 delta added to an fp32 base is promoted, spec 15).
      const t = file.tensor(k, backend, 'f32');
      elements += t.size;
      if (mode === 'replace') unet.setParameter(k, t);
      else {
        // A 16-bit base (f16 weight storage) is widened for the sum; setParameter rounds it back.
        const base = ops.cast(unet.getParameter(k), 'f32');
        const sum = ops.add(base, t);
        [base, t].forEach((x) => x.dispose());
        unet.setParameter(k, sum);
      }
    }
    return { source: path, mode, reason, keys, elements, dtypes };
  } finally {
    file.close();
  }
}

/** One line per report, for CLIs and logs. */
export function describePartialUnet(r: PartialUnetReport): string {
  const dt = Object.entries(r.dtypes).map(([d, n]) => `${n} ${d}`).join(', ');
  return `${r.source}: ${r.mode === 'replace' ? 'replaced' : 'added deltas to'} ${r.keys.length} UNet tensors (${r.elements} values; ${dt}) — ${r.reason}`;
}
