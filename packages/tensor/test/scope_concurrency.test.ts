// Memory scopes under concurrency (issue 17 item 2): the open scopes belong to an asynchronous context,
// so two scopeAsync bodies interleaving at their awaits each own exactly the tensors they create, and
// tensors made by unrelated code while a body awaits are not disposed with it. Before, the one
// process-wide stack gave a tensor to whichever scope was innermost at the moment it was created.

import { describe, expect, it } from 'vitest';
import { CpuBackend, keep, scope, scopeAsync, type Tensor } from '@cnx/tensor';

const cpu = new CpuBackend();
const make = (v: number): Tensor => cpu.fromRaw(Float32Array.of(v), [1]);
const tick = () => new Promise<void>((r) => setTimeout(r, 1));

describe('scopeAsync in concurrent asynchronous contexts', () => {
  it('two interleaved bodies dispose only their own tensors and return theirs intact', async () => {
    const start = cpu.memory().liveBytes;
    const made: Tensor[][] = [[], []];
    const body = (k: number) => scopeAsync(async () => {
      for (let i = 0; i < 5; i++) {
        made[k]!.push(make(k * 10 + i));
        await tick(); // the other body runs here and creates its tensors
        // Every tensor this body made is still alive: the other body's scope has not taken it.
        for (const t of made[k]!) expect(t.isDisposed).toBe(false);
      }
      return make(k * 100);
    });
    const [a, b] = await Promise.all([body(0), body(1)]);
    expect(await a.data()).toEqual(Float32Array.of(0));
    expect(await b.data()).toEqual(Float32Array.of(100));
    for (const t of [...made[0]!, ...made[1]!]) expect(t.isDisposed).toBe(true);
    a.dispose();
    b.dispose();
    expect(cpu.memory().liveBytes).toBe(start);
  });

  it('tensors made by unrelated code while a body awaits stay with their own scope', async () => {
    let outside: Tensor | undefined;
    const pending = scopeAsync(async () => {
      make(1);
      await tick();
      make(2);
    });
    // Runs while the body above is suspended.
    const kept = scope(() => { outside = make(3); return outside; });
    await pending;
    expect(outside!.isDisposed).toBe(false);
    expect(kept).toBe(outside);
    outside!.dispose();
  });

  it('nesting, keep() and the result moving to the enclosing scope work inside a context', async () => {
    let inner: Tensor | undefined, keptInner: Tensor | undefined;
    const outer = await scopeAsync(async () => {
      const r = await scopeAsync(async () => {
        inner = make(1);
        await tick();
        keptInner = keep(make(2)); // to the enclosing scopeAsync's scope
        return make(3);
      });
      expect(inner!.isDisposed).toBe(true);
      expect(keptInner!.isDisposed).toBe(false);
      await tick();
      return r;
    });
    expect(keptInner!.isDisposed).toBe(true); // the enclosing scope ended
    expect(await outer.data()).toEqual(Float32Array.of(3));
    outer.dispose();
  });
});
