// What the JavaScript engine offers the fast CPU kernels, detected once at start by validating tiny
// probe modules (never by user-agent sniffing):
//  - simd: the fixed-width 128-bit SIMD proposal (required: the kernels are written in it);
//  - relaxedSimd: f32x4.relaxed_madd (fused multiply-add where the hardware has it). Node 22+ and
//    current browsers ship it; Node 20 (V8 11.3) implements it behind --experimental-wasm-relaxed-simd,
//    which enableNodeWasmFeatures() turns on (Node only, before the first probe; CNX_WASM_RELAXED_SIMD=0
//    keeps it off). The GEMM micro-kernel runs ~25 % faster with it on this project's dev box (AMD
//    EPYC, Zen 4). Without it the kernels use f32x4.mul + f32x4.add;
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

interface NodeProcessLike {
  getBuiltinModule?: (id: string) => unknown;
  env?: Record<string, string | undefined>;
  versions?: Record<string, string | undefined>;
}

/**
 * In Node, switch on V8's relaxed-SIMD implementation where it is still behind a flag (V8 before 11.4,
 * i.e. Node 20; V8 11.4+ ships it). V8 fixes its wasm features at the process's first validation or
 * compilation, so this only helps when it runs before any WebAssembly is touched (the backend calls it
 * first); otherwise the probe says no and the kernels use mul + add.
 */
export function enableNodeWasmFeatures(): void {
  const proc = (globalThis as { process?: NodeProcessLike }).process;
  if (proc?.env?.CNX_WASM_RELAXED_SIMD === '0' || cached) return;
  const [major = 0, minor = 0] = (proc?.versions?.v8 ?? '').split('.').map(Number);
  if (!(major < 11 || (major === 11 && minor < 4))) return; // shipped (or not V8)
  const v8 = proc?.getBuiltinModule?.('node:v8') as { setFlagsFromString?: (flags: string) => void } | undefined;
  try {
    v8?.setFlagsFromString?.('--experimental-wasm-relaxed-simd');
  } catch {
    // an engine without the flag: the probe decides
  }
}

export function detectWasmFeatures(): WasmFeatures {
  if (cached) return cached;
  enableNodeWasmFeatures();
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
