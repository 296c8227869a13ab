// The golden model cases with the models' weights stored in f16 (issue 16), through the same runCase as
// `npm run golden -- <case> --weight-dtype f16`. Tolerances: each output's case tolerance plus the f16
// error model's allowance (@cnx/tensor f16WeightTolerance, documented in bench/README.md "f16"), applied
// by runCase because the backend's weightDtype is 'f16'. Never widened per case.
//
//  - CPU reference: every model case below (a few seconds each).
//  - WebGPU, f16 weight storage (any adapter): the UNet / ControlNeXt cases the issue names (SwiftShader
//    runs at ~1 GFLOP/s and compiles every pipeline, a minute or two per case).
//  - WebGPU, f16 compute (f16 operands, f32 accumulation, f16_compute.ts): every case of the tree but the
//    training steps (N/A under f16 storage, run_case.ts F32_ONLY_RUNNERS) on an adapter with `shader-f16` (createShaderF16Backend: a GPU, or Mesa's lavapipe 25+, which CI installs and
//    requires with CNX_REQUIRE_SHADER_F16=1); where there is none this block is skipped LOUDLY (warning
//    naming each adapter and why), never counted as passed. The error model covers it too: f16 compute
//    rounds the operands of matmul / conv2d / attention to f16, again relative perturbations of size u16
//    in a subset of the operations whose u32 response the case's fp32_vs_fp64 figures measure.
// Each run prints, per case, the worst ratio of error to tolerance (the margin the model leaves).

import { GOLDEN_ROOT } from '../harness/golden_root.js';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createBackend } from '@cnx/kernels';
import { createShaderF16Backend, requireShaderF16 } from '../harness/backends.js';
import { F32_ONLY_RUNNERS, runCase, type CaseResult } from '@cnx/golden';
import type { Backend } from '@cnx/tensor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = GOLDEN_ROOT;

/** Cases whose models read weights through matmul / conv2d / norms (everything f16 storage changes). */
const CPU_CASES = [
  'sd15_unet', 'sd15_controlnext', 'sdxl_unet', 'sd15_controlnet', 'sd15_vae', 'sdxl_controlnext',
  'sd15_controlnext_training', 'sd15_controlnext_unet_merge', 'sd15_lora', 'clip_text', 'clip_vision', 'sd15_pipeline_controlnext',
];
const WEBGPU_CASES = ['sd15_unet', 'sd15_controlnext', 'sdxl_unet'];
/**
 * On the shader-f16 adapter: every case of the tree (ops, gradients, schedulers, models, pipelines),
 * except the kinds that f16 weight storage does not apply to (F32_ONLY_RUNNERS: asserted N/A below).
 */
const ALL_F16_CASES = existsSync(root)
  ? readdirSync(root).filter((d) => existsSync(join(root, d, 'case.json'))).sort()
    .filter((d) => !((JSON.parse(readFileSync(join(root, d, 'case.json'), 'utf8')) as { runner: string }).runner in F32_ONLY_RUNNERS))
  : [];

function margin(r: CaseResult): string {
  let rel = 0, abs = 0;
  for (const k of r.checks) {
    rel = Math.max(rel, k.relL2 / k.tol.rel_l2);
    abs = Math.max(abs, k.maxAbs / k.tol.max_abs);
  }
  const out = r.checks.filter((k) => k.name.startsWith('out.'))
    .map((k) => `${k.name} rel_l2 ${k.relL2.toExponential(2)} (tol ${k.tol.rel_l2.toExponential(2)}) max_abs ${k.maxAbs.toExponential(2)} (tol ${k.tol.max_abs.toExponential(2)})`);
  return `worst error/tolerance: rel_l2 ${rel.toFixed(3)}, max_abs ${abs.toFixed(3)}; ${out.join('; ')}`;
}

interface Variant { title: string; backend: 'cpu' | 'webgpu'; compute?: 'f16'; cases: readonly string[] }

const variants: Variant[] = [
  { title: 'f16 weight storage [cpu]', backend: 'cpu', cases: CPU_CASES },
  { title: 'f16 weight storage [webgpu]', backend: 'webgpu', cases: WEBGPU_CASES },
  { title: 'f16 weight storage + f16 compute [webgpu, shader-f16]', backend: 'webgpu', compute: 'f16', cases: ALL_F16_CASES },
];

for (const v of variants) {
  describe(`golden ${v.title}`, () => {
    let backend: Backend | undefined;
    let unavailable: string | undefined;
    beforeAll(async () => {
      if (v.compute) {
        ({ backend, unavailable } = await createShaderF16Backend({ weightDtype: 'f16' }));
      } else {
        try {
          backend = await createBackend(v.backend, { weightDtype: 'f16' });
        } catch (e) {
          unavailable = e instanceof Error ? e.message : String(e);
        }
      }
      if (backend) console.log(`[golden f16] ${backend.description}`);
      if (unavailable) console.warn(`\n*** SKIPPING "golden ${v.title}": ${unavailable} ***\n`);
    });
    afterAll(() => backend?.destroy());
    for (const name of v.cases) {
      it(name, async (ctx) => {
        if (!existsSync(join(root, name, 'case.json'))) throw new Error(`golden case ${name} not found under ${root} (set CNX_GOLDEN_DIR)`);
        if (!backend) {
          if (process.env.CNX_REQUIRE_WEBGPU === '1' && !v.compute) throw new Error(`WebGPU is required (CNX_REQUIRE_WEBGPU=1) but unavailable: ${unavailable}`);
          if (requireShaderF16 && v.compute) throw new Error(`an adapter with shader-f16 is required (CNX_REQUIRE_SHADER_F16=1): ${unavailable}`);
          return ctx.skip();
        }
        const r = await runCase(join(root, name), backend);
        console.log(`[golden f16] ${name} on ${v.title}: ${r.ok ? 'PASS' : 'FAIL'} (${r.seconds.toFixed(1)} s); ${margin(r)}`);
        const bad = r.checks.filter((k) => !k.ok).map((k) => `${k.name}: max_abs ${k.maxAbs} (tol ${k.tol.max_abs}) rel_l2 ${k.relL2} (tol ${k.tol.rel_l2}) ${k.message ?? ''}`);
        expect(r.error ?? '', `${name} errored`).toBe('');
        expect(bad, `${name} mismatches`).toEqual([]);
        expect(r.ok).toBe(true);
      }, 900_000);
    }
  });
}

// A training case under f16 weight storage is reported as not applicable (never run, never counted as
// passed), with the reason (run_case.ts F32_ONLY_RUNNERS); with f32 storage it runs (golden.test.ts).
describe('golden training cases under f16 weight storage', () => {
  it('train_controlnext_step is not applicable, not passed, and says why', async () => {
    const b = await createBackend('cpu', { weightDtype: 'f16' });
    try {
      const r = await runCase(join(root, 'train_controlnext_step'), b);
      expect(r.ok).toBe(false);
      expect(r.checks).toEqual([]);
      expect(r.notApplicable).toMatch(/^f16 weight storage: a training step checks f32 master weights/);
    } finally {
      b.destroy();
    }
  });
});
