// Runs one test body on every available backend. The CPU reference backend and the fast CPU backend
// ('wasm': WebAssembly SIMD, needs only the JavaScript engine) are always there: failing to create them
// fails the tests. WebGPU is acquired once per describe block: where no adapter exists its tests skip
// LOUDLY (a warning naming why), except with CNX_REQUIRE_WEBGPU=1 (CI), where a missing adapter fails them.

import { createBackend } from '@cnx/kernels';
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
