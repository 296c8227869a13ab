// Shader-compile progress (issue 15: on SwiftShader cnx generate and the golden runner were silent for
// about two minutes while shaders compiled). watchCompiles reports while a backend's compiles are
// outstanding and once when they end; the printer writes a self-rewriting line on a terminal and a few
// plain lines elsewhere. On a real WebGPU backend the counters move: a new kernel is requested, then settles.

import { describe, expect, it } from 'vitest';
import { ops } from '@cnx/tensor';
import { compileProgressPrinter, watchCompiles, type CompileProgress } from '@cnx/kernels';
import { describeEachBackend } from '../../../test/harness/backends.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('watchCompiles', () => {
  it('reports while compiles are outstanding and once when they have all settled; nothing for other backends', async () => {
    const fake = { compileStatus: { requested: 0, settled: 0 } };
    const seen: CompileProgress[] = [];
    const stop = watchCompiles(fake, (p) => seen.push(p), 5);
    await sleep(30);
    expect(seen).toEqual([]); // nothing outstanding: silent
    fake.compileStatus = { requested: 3, settled: 1 };
    await sleep(40);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((p) => !p.done && p.requested === 3 && p.settled === 1)).toBe(true);
    fake.compileStatus = { requested: 3, settled: 3 };
    await sleep(40);
    stop();
    const done = seen.filter((p) => p.done);
    expect(done).toHaveLength(1);
    expect(done[0]).toMatchObject({ requested: 3, settled: 3, done: true });
    const none: CompileProgress[] = [];
    watchCompiles({}, (p) => none.push(p), 5)();
    expect(none).toEqual([]);
  });
});

describe('compileProgressPrinter', () => {
  const p = (settled: number, seconds: number, done = false): CompileProgress => ({ requested: 40, settled, seconds, done });
  it('on a terminal: one rewritten line after the quiet period, cleared when done', () => {
    let out = '';
    const print = compileProgressPrinter({ isTTY: true, write: (s) => { out += s; return true; } });
    print(p(1, 0.5)); // quiet
    expect(out).toBe('');
    print(p(5, 3));
    print(p(9, 3.6));
    print(p(40, 4, true));
    expect(out).toBe('\rcompiling GPU pipelines 5/40 (3 s; shaders compile slowly on software adapters)\x1b[K' +
      '\rcompiling GPU pipelines 9/40 (4 s; shaders compile slowly on software adapters)\x1b[K\r\x1b[K');
  });
  it('elsewhere: a line after the quiet period, then every 10 s, and a summary', () => {
    let out = '';
    const print = compileProgressPrinter({ isTTY: false, write: (s) => { out += s; return true; } });
    for (let s = 0; s <= 25; s += 0.5) print(p(Math.floor(s), s));
    print(p(40, 26, true));
    expect(out.split('\n').filter(Boolean)).toEqual([
      'compiling GPU pipelines 2/40 (2 s; shaders compile slowly on software adapters)',
      'compiling GPU pipelines 12/40 (12 s; shaders compile slowly on software adapters)',
      'compiling GPU pipelines 22/40 (22 s; shaders compile slowly on software adapters)',
      'compiled 40 GPU pipelines in 26 s',
    ]);
    out = '';
    print(p(1, 1)); // a short burst stays silent
    print(p(40, 1.2, true));
    expect(out).toBe('');
  });
});

describeEachBackend('compile counters', (test) => {
  test('a kernel never seen before is requested, then settles', async (backend) => {
    const status = (backend as unknown as { compileStatus: { requested: number; settled: number } }).compileStatus;
    const before = status.requested;
    // An odd length this process has not dispatched yet: a new specialisation.
    const x = backend.fromRaw(Float32Array.from({ length: 977 }, (_, i) => i), [977]);
    const y = ops.reduce('max', x);
    await y.data();
    const after = (backend as unknown as { compileStatus: { requested: number; settled: number } }).compileStatus;
    expect(after.requested).toBeGreaterThan(before);
    expect(after.settled).toBe(after.requested);
    [x, y].forEach((t) => t.dispose());
  }, 300_000);
}, ['webgpu']);
