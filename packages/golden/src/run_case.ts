// Runs one golden case on one backend and checks every output and intermediate it lists.

import type { Backend, Tensor } from '@cnx/tensor';
import { f16WeightTolerance, formatShape, shapesEqual } from '@cnx/tensor';
import { compareArrays, unravel } from './compare.js';
import { GoldenCase, type DerivedCheck, type ToleranceSpec } from './golden_case.js';
import { runners } from './registry.js';

export interface CheckResult {
  name: string;
  ok: boolean;
  maxAbs: number;
  relL2: number;
  tol: ToleranceSpec;
  message?: string;
}

export interface CaseResult {
  caseName: string;
  runner: string;
  backend: string;
  ok: boolean;
  error?: string;
  checks: CheckResult[];
  /** Listed outputs the runner replayed as inputs (GoldenCase.replayed): not compared, not counted. */
  replayed: { name: string; note: string }[];
  seconds: number;
  /**
   * Why this case does not apply to the backend's precision (then it was not run, and is neither passed
   * nor failed): see F32_ONLY_RUNNERS.
   */
  notApplicable?: string;
}

/**
 * Runner kinds whose cases check an f32 trajectory that f16 weight storage cannot reproduce, with the
 * reason. A ControlNeXt training step trains f32 master weights loaded from the f32 checkpoint; on an
 * f16-storage backend the trainer widens the stored, already rounded weights (ControlNeXtTrainer), so
 * every parameter starts u16-relative away from the reference and AdamW's normalised steps do not shrink
 * that: the checked updates and checkpoints are outside the f16 error model by construction. f16 weight
 * storage is an inference setting here; training cases run with f32 storage (every other run).
 */
export const F32_ONLY_RUNNERS: Readonly<Record<string, string>> = {
  train_controlnext: 'a training step checks f32 master weights loaded from the f32 checkpoint; with f16 weight storage the trainer starts from the rounded weights (f16 storage is for inference)',
};

/**
 * Tolerance for a name: the case's suggestion, else a default that rel_l2 1e-4 of a well-conditioned f32
 * result meets. On a backend that stores weights in f16 the case's suggestion gets the allowance of the
 * f16 weight-rounding error model (@cnx/tensor f16WeightTolerance).
 */
function toleranceFor(c: GoldenCase, name: string, ref: Float32Array, backend: Backend): ToleranceSpec {
  const t = c.json.tolerance?.[name];
  let m = 0;
  for (const v of ref) m = Math.max(m, Math.abs(v));
  if (t) return backend.weightDtype === 'f16' ? { ...t, ...f16WeightTolerance(t, m) } : t;
  return { max_abs: 1e-4 * Math.max(m, 1), rel_l2: 1e-4 };
}

export async function runCase(dir: string, backend: Backend): Promise<CaseResult> {
  const t0 = performance.now();
  let c: GoldenCase | undefined;
  const result: CaseResult = { caseName: dir, runner: '?', backend: backend.name, ok: false, checks: [], replayed: [], seconds: 0 };
  try {
    c = new GoldenCase(dir);
    result.caseName = c.name;
    result.runner = c.json.runner;
    const runner = runners[c.json.runner];
    if (!runner) {
      throw new Error(`unknown runner kind '${c.json.runner}' (known: ${Object.keys(runners).sort().join(', ')})`);
    }
    const f32Only = F32_ONLY_RUNNERS[c.json.runner];
    if (f32Only && backend.weightDtype === 'f16') {
      result.notApplicable = `f16 weight storage: ${f32Only}`;
      return result;
    }
    const output = await runner(c, backend);
    const produced = output instanceof Map ? output : output.produced;
    for (const name of c.checkedNames()) {
      const note = c.replayed.get(name);
      if (note !== undefined) {
        result.replayed.push({ name, note });
        continue;
      }
      const ref = c.expected(name);
      const tol = toleranceFor(c, name, ref.data, backend);
      const value = produced.get(name);
      if (value === undefined) {
        result.checks.push({ name, ok: false, maxAbs: NaN, relL2: NaN, tol, message: 'not produced by the runner' });
        continue;
      }
      let got: Float32Array;
      if (value instanceof Float32Array) got = value;
      else {
        const t = value as Tensor;
        if (!shapesEqual(t.shape, ref.shape)) {
          result.checks.push({ name, ok: false, maxAbs: NaN, relL2: NaN, tol, message: `shape ${formatShape(t.shape)}, expected ${formatShape(ref.shape)}` });
          continue;
        }
        got = await t.data();
      }
      if (got.length !== ref.data.length) {
        result.checks.push({ name, ok: false, maxAbs: NaN, relL2: NaN, tol, message: `${got.length} elements, expected ${ref.data.length}` });
        continue;
      }
      const cmp = compareArrays(got, ref.data, tol.max_abs);
      const ok = cmp.nanCount === 0 && cmp.maxAbs <= tol.max_abs && cmp.relL2 <= tol.rel_l2;
      let message: string | undefined;
      if (!ok) {
        message = cmp.nanCount ? `${cmp.nanCount} NaN mismatches; ` : '';
        message += 'first mismatches: ' + cmp.firstBad
          .map((b) => `[${unravel(b.index, ref.shape).join(',')}] got ${b.got} ref ${b.ref}`).join('; ');
      }
      result.checks.push({ name, ok, maxAbs: cmp.maxAbs, relL2: cmp.relL2, tol, message });
    }
    for (const d of output instanceof Map ? [] : output.derived) result.checks.push(derivedCheck(d));
    for (const v of produced.values()) if (!(v instanceof Float32Array)) v.dispose();
    result.ok = result.checks.length > 0 && result.checks.every((k) => k.ok);
  } catch (e) {
    result.error = e instanceof Error ? (e.stack ?? e.message) : String(e);
  } finally {
    c?.close();
    result.seconds = (performance.now() - t0) / 1000;
  }
  return result;
}

/** Check a runner's derived quantity: elementwise against `atol` when given, else max_abs; then rel_l2. */
function derivedCheck(d: DerivedCheck): CheckResult {
  const { name, got, ref, tol } = d;
  if (got.length !== ref.length || (d.atol && d.atol.length !== ref.length)) {
    return { name, ok: false, maxAbs: NaN, relL2: NaN, tol, message: `${got.length} elements, reference ${ref.length}` };
  }
  const cmp = compareArrays(got, ref, tol.max_abs);
  const bad: string[] = [];
  let over = 0;
  for (let i = 0; i < ref.length; i++) {
    const lim = d.atol ? d.atol[i]! : tol.max_abs;
    if (!(Math.abs(got[i]! - ref[i]!) <= lim)) {
      over++;
      if (bad.length < 5) bad.push(`[${unravel(i, d.shape).join(',')}] got ${got[i]} ref ${ref[i]} (bound ${lim.toExponential(2)})`);
    }
  }
  const ok = cmp.nanCount === 0 && over === 0 && cmp.relL2 <= tol.rel_l2;
  const message = ok ? undefined
    : `${cmp.nanCount ? `${cmp.nanCount} NaN mismatches; ` : ''}${over} element(s) over the ${d.atol ? 'elementwise ' : ''}bound: ${bad.join('; ')}`;
  return { name, ok, maxAbs: cmp.maxAbs, relL2: cmp.relL2, tol, message };
}
