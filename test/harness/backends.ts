// Runs one test body on every available backend. The CPU reference backend and the fast CPU backend
// ('wasm': WebAssembly SIMD, needs only the JavaScript engine) are always there: failing to create them
// fails the tests. WebGPU is acquired once per describe block: where no adapter exists its tests skip
// LOUDLY (a warning naming why), except with CNX_REQUIRE_WEBGPU=1 (CI), where a missing adapter fails them.

import { ADAPTER_KINDS, createBackend, type CreateBackendOptions, type WebgpuBackend } from '@cnx/kernels';
import type { Backend } from '@cnx/tensor';
import { afterAll, beforeAll, describe, it, type TestContext } from 'vitest';

/** A backend name createBackend knows ('cpu', 'webgpu', ...). */
export type BackendName = string;
/** `ctx` lets a body skip LOUDLY (console.warn naming why, then ctx.skip()) when it cannot run its subject. */
export type BackendTest = (name: string, fn: (backend: Backend, ctx: TestContext) => Promise<void> | void, timeout?: number) => void;

const requireWebgpu = process.env.CNX_REQUIRE_WEBGPU === '1';

/** describe(`title [backend]`) once per backend; the body declares tests with the `test` it is given. */
export function describeEachBackend(title: string, body: (test: BackendTest, name: BackendName) => void, only?: BackendName[]): void {
  for (const name of only ?? (['cpu', 'wasm', 'webgpu'] as const)) {
    describe(`${title} [${name}]`, () => {
      let backend: Backend | undefined;
      let unavailable: string | undefined;
      beforeAll(async () => {
        try {
          backend = await createBackend(name);
          if (name === 'webgpu') console.log(`[webgpu] ${backend.description}`);
        } catch (e) {
          unavailable = e instanceof Error ? e.message : String(e);
          if (!requireWebgpu && name === 'webgpu') console.warn(`\n*** SKIPPING "${title} [${name}]": ${unavailable} ***\n`);
        }
      });
      afterAll(() => backend?.destroy());
      const test: BackendTest = (testName, fn, timeout) => {
        it(testName, async (ctx) => {
          if (!backend) {
            if (name !== 'webgpu') throw new Error(`the ${name} backend could not be created: ${unavailable}`);
            if (requireWebgpu) throw new Error(`WebGPU is required (CNX_REQUIRE_WEBGPU=1) but unavailable: ${unavailable}`);
            ctx.skip();
            return;
          }
          await fn(backend, ctx);
        }, timeout);
      };
      body(test, name);
    });
  }
}

/** CI promises an adapter with `shader-f16` (lavapipe, Mesa 25+): f16-compute tests fail instead of skipping. */
export const requireShaderF16 = process.env.CNX_REQUIRE_SHADER_F16 === '1';

/**
 * A WebGPU backend computing in f16 (f16 operands, f32 accumulation: f16_compute.ts) on an adapter with
 * `shader-f16`: CNX_ADAPTER's if set, else the first of the adapter kinds (gpu, swiftshader, lavapipe,
 * llvmpipe) whose device has it. SwiftShader and OpenGL ES llvmpipe have none; lavapipe (Mesa 25+) does.
 * Otherwise `unavailable` says, per adapter, why not.
 */
export async function createShaderF16Backend(opts: Omit<CreateBackendOptions, 'compute' | 'adapter'> = {}): Promise<{ backend?: WebgpuBackend; unavailable?: string }> {
  const reasons: string[] = [];
  const kinds = process.env.CNX_ADAPTER ? [process.env.CNX_ADAPTER] : ADAPTER_KINDS;
  for (const adapter of kinds) {
    try {
      const b = (await createBackend('webgpu', { ...opts, compute: 'f16', adapter })) as WebgpuBackend;
      if (b.computeDtype === 'f16') return { backend: b };
      reasons.push(`${adapter}: ${b.description}: ${b.computeNote}`);
      b.destroy();
    } catch (e) {
      reasons.push(`${adapter}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return { unavailable: `no adapter with shader-f16 (${reasons.join('; ')})` };
}
