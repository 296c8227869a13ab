// svd_controlnext (ControlNeXt-SVD v1) and svd_controlnext_v2: the control module loaded from the case's
// module folder (v1 / v2 detected and checked against the runner kind, widths from the weight shapes,
// groups from case.json's module `structure`/`constructor` or its config.json), run the way the SVD
// pipeline runs it: ONCE on the F frames of the conditional half (the case's condition is the
// CFG-duplicated [2, F, 3, H, W] the repo pipeline builds, so both halves must be the same frames), with
// the timestep-independent prefix prepared first; then the spatio-temporal UNet with the variant's
// injection hook at its site. Values computed for F frames (or one time embedding) are compared against
// the repo's doubled-batch values by repeating them (the repo computes the same rows twice).
// Names: 'controlnext.*' (module), 'inject.*' (injection), 'unet.*' (UNet), out.control (the module
// output, doubled), out.control_scale (the pipeline's controlnext_output['scale'], uncond half zeroed),
// out.sample.

import { ops, type Backend, type Tensor, type Trace } from '@cnx/tensor';
import { ControlNeXtSVD, type SvdVariantName } from '@cnx/controlnext';
import { UNetSpatioTemporalConditionModel } from '@cnx/unet';
import type { GoldenCase, Produced, Runner } from '../golden_case.js';
import { collectingTrace, modelDirOfKind } from './unet.js';

function numberArray(v: unknown): number[] | undefined {
  return Array.isArray(v) && v.every((x) => typeof x === 'number') ? v : undefined;
}

/** `v` repeated along dim 0 to `rows` rows (a no-op view when it already has them). */
export function repeatRows(v: Tensor, rows: number): Tensor {
  const n = v.shape[0]!;
  if (n === rows) return v.contiguous();
  if (rows % n !== 0) throw new Error(`repeatRows: ${v.toString()} cannot be repeated to ${rows} rows`);
  return ops.concat(Array.from({ length: rows / n }, () => v), 0);
}

/**
 * A collecting trace for values computed once per video/frame set where the reference has the CFG-doubled
 * (or per-video) batch: a value whose first dim divides the expected one is repeated to it.
 */
export function repeatingTrace(c: GoldenCase, prefix: string, out: Produced): Trace {
  const shapes: Record<string, number[]> = { ...c.json.outputs, ...(c.json.intermediates ?? {}) };
  const collect = collectingTrace(c, prefix, out);
  return (path, value) => {
    const name = path ? `${prefix}.${path}` : prefix;
    const want = shapes[name];
    if (!want || out.has(name) || want[0] === value.shape[0]) { collect(path, value); return; }
    const r = repeatRows(value, want[0]!);
    collect(path, r);
    r.dispose();
  };
}

export async function runSvdControlNeXtCase(c: GoldenCase, backend: Backend, variant: SvdVariantName): Promise<Produced> {
  const out: Produced = new Map();
  const moduleKind = variant === 'svd' ? 'controlnext_svd' : 'controlnext_svd_v2';
  const unetKind = variant === 'svd' ? 'controlnext_svd_unet' : 'controlnext_svd_v2_unet';
  const entry = Object.values(c.json.models ?? {}).find((m) => m.kind === moduleKind) as
    { structure?: { groups?: unknown }; constructor?: { groups?: unknown } } | undefined;
  const groups = numberArray(entry?.structure?.groups) ?? numberArray(entry?.constructor?.groups);
  const cnx = ControlNeXtSVD.load(modelDirOfKind(c, moduleKind), backend, { variant, groups });
  const unet = UNetSpatioTemporalConditionModel.fromFolder(modelDirOfKind(c, unetKind), backend);
  const held: Tensor[] = [];
  const take = (t: Tensor) => { held.push(t); return t; };
  try {
    const sample = take(c.input('sample', backend));
    const timestep = take(c.timestepInput('timestep', backend));
    const ctx = take(c.input('encoder_hidden_states', backend));
    const ids = take(c.input('added_time_ids', backend));
    const cond = c.expected('controlnext_condition');
    if (cond.shape.length !== 5) throw new Error(`${c.name}: expected controlnext_condition [B, F, 3, H, W], found [${cond.shape.join(', ')}]`);
    const [B, F, ...frame] = cond.shape as [number, number, number, number, number];
    const per = F * frame.reduce((a, b) => a * b, 1);
    const cfg = B === 2;
    if (B !== 1 && B !== 2) throw new Error(`${c.name}: expected a condition batch of 1 or 2 (CFG), found ${B}`);
    if (cfg && !cond.data.subarray(0, per).every((v, i) => Object.is(v, cond.data[per + i]))) {
      throw new Error(`${c.name}: the two CFG halves of controlnext_condition differ; the SVD pipelines duplicate the same frames`);
    }
    const frames = take(backend.fromRaw(cond.data.slice(cfg ? per : 0, cfg ? 2 * per : per), [F, ...frame]));

    const mtrace = repeatingTrace(c, 'controlnext', out);
    const prepared = cnx.prepare(frames, { trace: mtrace });
    const ctrl = cnx.control(prepared, timestep, { trace: mtrace });
    prepared.dispose();
    take(ctrl.out);
    if (typeof ctrl.scale !== 'number' && ctrl.scale !== (cnx.module as { scale?: Tensor }).scale) take(ctrl.scale);
    out.set('out.control', repeatRows(ctrl.out, B * F));
    out.set('out.control_scale', cnx.pipelineScale(ctrl.scale, F, cfg));
    const h = cnx.hooks(ctrl, { frames: F, cfg, trace: collectingTrace(c, 'inject', out) });
    try {
      out.set('out.sample', unet.forward(sample, timestep, ctx, ids, { hooks: h.hooks, trace: collectingTrace(c, 'unet', out) }));
    } finally {
      h.dispose();
    }
  } finally {
    held.forEach((t) => t.dispose());
    unet.dispose();
    cnx.dispose();
  }
  return out;
}

export const svdControlNeXtRunner: Runner = (c, backend) => runSvdControlNeXtCase(c, backend, 'svd');
export const svdControlNeXtV2Runner: Runner = (c, backend) => runSvdControlNeXtCase(c, backend, 'svd_v2');
