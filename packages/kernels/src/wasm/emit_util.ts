// Helpers shared by the kernel emitters: argument structs, vector multiply-add, and the convention
// every parallel kernel follows.
//
// Calling convention of a parallel kernel: `name(args: i32, task: i32)`. `args` points at a struct of
// 32-bit fields (i32 or f32) in the module's memory that the JavaScript side wrote before the launch
// (runtime.ts); `task` is one index of [0, tasks), handed out dynamically to the threads of the pool.
// Every task writes a disjoint part of the output, so tasks need no synchronisation.

import { f32, f32x4, get, i32, tee, type Code } from './wasm_binary.js';

/** i32 field `i` of the argument struct at local `args`. */
export const argI = (args: number, i: number): Code => i32.load(get(args), 4 * i);
/** f32 field `i` of the argument struct at local `args`. */
export const argF = (args: number, i: number): Code => f32.load(get(args), 4 * i);

export interface EmitOptions {
  /** Use f32x4.relaxed_madd (the engine validated it). */
  fma: boolean;
  /** Atomic read-modify-write is available (threads proposal); else a plain load/store (one thread). */
  atomics: boolean;
}

/** old = mem[addr]; mem[addr] = old + 1; leaves old on the stack (atomically where threads exist). */
export function fetchAdd1(o: EmitOptions, addr: Code, tmp: number): Code {
  return o.atomics
    ? i32.atomic_add(addr, i32.const(1))
    : [...tee(tmp, i32.load(addr)), ...i32.store(addr, i32.add(get(tmp), i32.const(1))), ...get(tmp)];
}

/** a * b + c on f32x4 lanes: fused when the engine has relaxed SIMD, else mul then add. */
export function madd(o: EmitOptions, a: Code, b: Code, c: Code): Code {
  return o.fma ? f32x4.relaxed_madd(a, b, c) : f32x4.add(f32x4.mul(a, b), c);
}
