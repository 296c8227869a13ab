// What the JavaScript engine offers the fast CPU kernels, detected once at start by validating tiny
// probe modules (never by user-agent sniffing):
//  - simd: the fixed-width 128-bit SIMD proposal (required: the kernels are written in it);
//  - relaxedSimd: f32x4.relaxed_madd (fused multiply-add where the hardware has it). Node 20 (V8 11.3)
//    has it only behind --experimental-wasm-relaxed-simd; Node 22+ and current browsers ship it.
//    Without it the kernels use f32x4.mul + f32x4.add;
//  - threads: shared WebAssembly.Memory + atomics, and SharedArrayBuffer usable here (a browser page
//    needs cross-origin isolation for that). Without it everything runs on the calling thread.

import { ModuleBuilder, ValType, f32x4, v128, i32 } from './wasm_binary.js';

export interface WasmFeatures {
  simd: boolean;
  relaxedSimd: boolean;
  threads: boolean;
}

function probe(shared: boolean, body: (m: ModuleBuilder) => void): boolean {
  try {
    const m = new ModuleBuilder({ module: 'env', name: 'memory', initialPages: 1, maximumPages: 1, shared });
    body(m);
    return WebAssembly.validate(m.bytes());
  } catch {
    return false;
  }
}

let cached: WasmFeatures | undefined;

export function detectWasmFeatures(): WasmFeatures {
  if (cached) return cached;
  const hasWasm = typeof WebAssembly === 'object' && typeof WebAssembly.validate === 'function';
  const simd = hasWasm && probe(false, (m) => {
    m.func('f', [], [ValType.v128]).emit(f32x4.add(v128.const_f32x4(1), v128.const_f32x4(2)));
  });
  const relaxedSimd = simd && probe(false, (m) => {
    m.func('f', [], [ValType.v128]).emit(f32x4.relaxed_madd(v128.const_f32x4(1), v128.const_f32x4(2), v128.const_f32x4(3)));
  });
  const g = globalThis as { SharedArrayBuffer?: unknown; crossOriginIsolated?: boolean };
  const sabUsable = typeof g.SharedArrayBuffer === 'function' && g.crossOriginIsolated !== false;
  const threads = hasWasm && sabUsable && probe(true, (m) => {
    m.func('f', [], [ValType.i32]).emit(i32.atomic_add(i32.const(0), i32.const(1)));
  });
  cached = { simd, relaxedSimd, threads };
  return cached;
}
