// Reading a golden case folder (golden/<case>, located by golden_root.ts: case.json + io.safetensors) from unit tests,
// and the golden runner's acceptance rule: max abs error <= tolerance.max_abs and relative L2 error
// <= tolerance.rel_l2 (packages/golden/src/run_case.ts), NaN never passing.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '@cnx/tensor';
import { expect } from 'vitest';
import { GOLDEN_ROOT } from './golden_root.js';

export { GOLDEN_ROOT };

export interface GoldenTolerance { max_abs: number; rel_l2: number }

export interface GoldenCaseData {
  json: {
    args: { variants: Record<string, unknown>[] } & Record<string, unknown>;
    config?: Record<string, unknown>;
    tolerance: Record<string, GoldenTolerance>;
    outputs: Record<string, number[]>;
    inputs: Record<string, number[]>;
  };
  /** Tensor by name as f32 values and shape. */
  get(name: string): { shape: number[]; data: Float32Array };
  has(name: string): boolean;
  close(): void;
}

export function openGoldenCase(name: string): GoldenCaseData {
  const dir = join(GOLDEN_ROOT, name);
  const json = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8')) as GoldenCaseData['json'];
  const file = SafetensorsFile.open(join(dir, 'io.safetensors'));
  return { json, get: (n) => file.readFloat32(n), has: (n) => file.has(n), close: () => file.close() };
}

/** The golden runner's rule, with a message naming the tensor and both errors. */
export function expectGoldenClose(what: string, got: ArrayLike<number>, ref: ArrayLike<number>, tol: GoldenTolerance | undefined): void {
  if (!tol) expect.fail(`${what}: the case has no tolerance entry`);
  if (got.length !== ref.length) expect.fail(`${what}: ${got.length} values, reference ${ref.length}`);
  let maxAbs = 0, num = 0, den = 0, nan = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i]! - ref[i]!);
    if (Number.isNaN(d)) nan++;
    maxAbs = Math.max(maxAbs, d);
    num += d * d;
    den += ref[i]! * ref[i]!;
  }
  const relL2 = den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
  if (nan || !(maxAbs <= tol.max_abs) || !(relL2 <= tol.rel_l2)) {
    expect.fail(`${what}: max_abs ${maxAbs.toExponential(3)} (tol ${tol.max_abs}), rel_l2 ${relL2.toExponential(3)} (tol ${tol.rel_l2}), NaN ${nan}`);
  }
}
