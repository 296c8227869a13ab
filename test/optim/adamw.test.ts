// The AdamW optimizer (@cnx/tensor optim/adamw.ts) on every backend: the optim_adamw golden trajectories
// (torch 1.13, per-group lr, with and without clip_grad_norm_) through the optimizer itself; a fused group
// (one flat storage, one adamw_step) updates exactly like per-parameter updates; save -> load -> continue
// is bit-identical to an uninterrupted run; memory stays flat over many steps; the in-place op seam
// (op_definition.ts `inPlace`) and the errors that name what is wrong.

import {
  adamwStepOp, AdamW, runOp, scope, Tensor, type Backend, type NamedParameter,
} from '@cnx/tensor';
import { expect } from 'vitest';
import { randomArray } from '../harness/allclose.js';
import { describeEachBackend } from '../harness/backends.js';
import { openGoldenCase } from '../harness/golden_case_data.js';
import { adamwCaseVariants, expectAdamwTrajectory, type AdamwTrajectory } from '../harness/optim_adamw_case.js';

const SHAPES = [[5, 3, 3, 3], [5], [7, 5], [7], [4, 4]] as const;

/** Named parameters from a seed (fresh tensors each call). */
function makeParams(backend: Backend, seed: number): NamedParameter[] {
  return SHAPES.map((shape, j) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return [`m.p${j}`, backend.fromRaw(randomArray(n, seed + j), shape)] as const;
  });
}

/** A model-like holder: name -> tensor, with place() re-homing into it. */
class Holder {
  readonly map = new Map<string, Tensor>();
  constructor(params: readonly NamedParameter[]) { for (const [n, t] of params) this.map.set(n, t); }
  place = (name: string, view: Tensor, old: Tensor) => { this.map.set(name, view); old.dispose(); };
  named(): NamedParameter[] { return [...this.map.entries()]; }
  async values(): Promise<Float32Array[]> { return Promise.all([...this.map.values()].map((t) => t.data())); }
  dispose() { for (const t of this.map.values()) { t.grad?.dispose(); t.dispose(); } }
}

/** Gradients of step s (deterministic), set on the holder's parameters. */
function setGrads(h: Holder, s: number): void {
  let j = 0;
  for (const t of h.map.values()) {
    t.grad?.dispose();
    t.grad = t.backend.fromRaw(randomArray(t.size, 1000 + 31 * s + j++, 0.5 + s), t.shape);
  }
}

const GROUPS = (named: NamedParameter[]) => [
  { params: named.slice(0, 3), lr: 1e-2 },
  { params: named.slice(3), lr: 3e-3, weightDecay: 0.1 },
];

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

describeEachBackend('AdamW optimizer', (test) => {
  test('replays the optim_adamw golden trajectories (fused groups, clipping)', async (backend) => {
    const gc = openGoldenCase('optim_adamw');
    try {
      for (const v of adamwCaseVariants(gc)) {
        const holder = new Holder(v.params.map((p, j) => [`p${j}`, backend.fromRaw(p, v.shapes[j]!)] as const));
        const named = holder.named();
        const opt = new AdamW(v.groups.map((g) => ({ params: g.members.map((j) => named[j]!), lr: g.lr })),
          { betas: v.betas, eps: v.eps, weightDecay: v.weightDecay, place: holder.place });
        const t: AdamwTrajectory = { totalNorm: [], clippedGrad: [], param: [], expAvg: [], expAvgSq: [] };
        for (let s = 0; s < v.steps; s++) {
          [...holder.map.values()].forEach((p, j) => { p.grad = backend.fromRaw(v.grads[s]![j]!, v.shapes[j]!); });
          if (v.clip !== null) {
            const total = opt.clipGradNorm(v.clip);
            t.totalNorm!.push((await total.data())[0]!);
            total.dispose();
            t.clippedGrad!.push(await Promise.all([...holder.map.values()].map((p) => p.grad!.data())));
          }
          opt.step();
          opt.zeroGrad();
          t.param.push(await holder.values());
          const states = named.map(([n]) => opt.state(n)!);
          t.expAvg.push(await Promise.all(states.map((st) => st.expAvg.data())));
          t.expAvgSq.push(await Promise.all(states.map((st) => st.expAvgSq.data())));
          states.forEach((st) => { st.expAvg.dispose(); st.expAvgSq.dispose(); });
        }
        expectAdamwTrajectory(gc, v, t, backend.name);
        opt.dispose();
        holder.dispose();
      }
    } finally {
      gc.close();
    }
  });

  test('a fused group (one flat storage, one dispatch) updates bit-identically to per-parameter updates', async (backend) => {
    const fusedH = new Holder(makeParams(backend, 1)), ownH = new Holder(makeParams(backend, 1));
    const fused = new AdamW(GROUPS(fusedH.named()), { place: fusedH.place });
    const own = new AdamW(GROUPS(ownH.named()));
    // fused: the parameters are views into one storage per group; unfused: untouched
    const views = [...fusedH.map.values()];
    expect(views[1]!.storage).toBe(views[0]!.storage);
    expect(views[1]!.offset).toBe(views[0]!.size);
    expect([...ownH.map.values()][1]!.offset).toBe(0);
    for (let s = 0; s < 4; s++) {
      setGrads(fusedH, s);
      setGrads(ownH, s);
      if (s === 2) {
        const [a, b] = [fused.clipGradNorm(0.5), own.clipGradNorm(0.5)];
        expect(await a.data()).toEqual(await b.data());
        a.dispose(); b.dispose();
      }
      fused.step();
      own.step();
      fused.zeroGrad({ setToNone: s % 2 === 0 });
      own.zeroGrad();
    }
    const [a, b] = [await fusedH.values(), await ownH.values()];
    a.forEach((x, j) => expect(bitsEqual(x, b[j]!), `param ${j}`).toBe(true));
    for (const [n] of fusedH.named()) {
      const [sa, sb] = [fused.state(n)!, own.state(n)!];
      expect(sa.step).toBe(4);
      expect(bitsEqual(await sa.expAvgSq.data(), await sb.expAvgSq.data()), n).toBe(true);
      for (const t of [sa.expAvg, sa.expAvgSq, sb.expAvg, sb.expAvgSq]) t.dispose();
    }
    fused.dispose(); own.dispose(); fusedH.dispose(); ownH.dispose();
  });

  test('save -> load -> continue is bit-identical to an uninterrupted run', async (backend) => {
    const STEPS = 6, CUT = 3;
    const run = async (h: Holder, opt: AdamW, from: number, to: number) => {
      for (let s = from; s < to; s++) {
        setGrads(h, s);
        const total = opt.clipGradNorm(4);
        total.dispose();
        opt.step();
        opt.zeroGrad({ setToNone: false });
      }
    };
    // uninterrupted
    const hA = new Holder(makeParams(backend, 7));
    const optA = new AdamW(GROUPS(hA.named()), { lr: 5e-3, place: hA.place });
    await run(hA, optA, 0, STEPS);
    // interrupted: CUT steps, save the parameters (the model checkpoint) and the optimizer state
    const hB = new Holder(makeParams(backend, 7));
    const optB = new AdamW(GROUPS(hB.named()), { lr: 5e-3, place: hB.place });
    await run(hB, optB, 0, CUT);
    optB.paramGroups[1]!.lr = 4e-3; // a schedule changed it: the state carries the group's hyperparameters
    const saved = await optB.saveState();
    const weights = await hB.values();
    optB.dispose(); hB.dispose();
    // a fresh process: weights first, then the optimizer (default hyperparameters), then its state
    const hC = new Holder(SHAPES.map((shape, j) => [`m.p${j}`, backend.fromRaw(weights[j]!, shape)] as const));
    const optC = new AdamW(GROUPS(hC.named()), { place: hC.place });
    optC.loadState(saved);
    expect(optC.paramGroups.map((g) => g.lr)).toEqual([1e-2, 4e-3]);
    optC.paramGroups[1]!.lr = 3e-3; // back to A's value for the comparison
    await run(hC, optC, CUT, STEPS);
    const [a, c] = [await hA.values(), await hC.values()];
    a.forEach((x, j) => expect(bitsEqual(x, c[j]!), `param ${j}`).toBe(true));
    for (const [n] of hA.named()) {
      const [sa, sc] = [optA.state(n)!, optC.state(n)!];
      expect(sc.step).toBe(STEPS);
      expect(bitsEqual(await sa.expAvg.data(), await sc.expAvg.data()), `${n} exp_avg`).toBe(true);
      expect(bitsEqual(await sa.expAvgSq.data(), await sc.expAvgSq.data()), `${n} exp_avg_sq`).toBe(true);
      for (const t of [sa.expAvg, sa.expAvgSq, sc.expAvg, sc.expAvgSq]) t.dispose();
    }
    // a state for other groups is refused, naming the difference; nothing changes
    const other = new Holder(makeParams(backend, 7).map(([n, t]) => [n.replace('p4', 'q4'), t] as const));
    const optO = new AdamW(GROUPS(other.named()), { place: other.place });
    expect(() => optO.loadState(saved)).toThrow(/group 1 has parameters \[2\] 'm\.q4'\.\.\., the state \[2\] 'm\.p4'/);
    expect(() => optO.loadState(new Uint8Array(16))).toThrow();
    optO.dispose(); other.dispose();
    optA.dispose(); optC.dispose(); hA.dispose(); hC.dispose();
  });

  test('memory is flat over many steps (gathered gradients, clipping, zeroGrad)', async (backend) => {
    const h = new Holder(makeParams(backend, 3));
    const opt = new AdamW(GROUPS(h.named()), { place: h.place });
    let atStep3 = 0;
    for (let s = 0; s < 30; s++) {
      scope(() => {
        setGrads(h, s % 3);
        opt.clipGradNorm(1).dispose();
        opt.step();
        opt.zeroGrad({ setToNone: s % 2 === 0 });
      });
      await backend.sync();
      if (s === 3) atStep3 = backend.memory().liveBytes;
    }
    // both after an odd step (zeroGrad keeping zeroed gradients): the same live bytes
    expect(atStep3).toBeGreaterThan(0);
    expect(backend.memory().liveBytes).toBe(atStep3);
    opt.dispose(); h.dispose();
  });

  test('errors name the parameter, the group or the input', async (backend) => {
    const h = new Holder(makeParams(backend, 5));
    const opt = new AdamW(GROUPS(h.named()), { place: h.place });
    const [first, second] = [...h.map.values()];
    first!.grad = backend.zeros(first!.shape);
    expect(() => opt.step()).toThrow(/parameter 'm\.p1' has no gradient while others of its fused group do/);
    second!.grad = backend.zeros([3]);
    expect(() => opt.step()).toThrow(/the gradient of 'm\.p1' must be a live f32 \[5\] tensor/);
    expect(() => new AdamW([{ params: h.named(), lr: -1 }])).toThrow(/AdamW group 0: expected lr >= 0, found -1/);
    expect(() => new AdamW([...h.named(), h.named()[0]!])).toThrow(/appears twice/);
    expect(() => new AdamW([])).toThrow(/no parameters/);
    // a strided parameter cannot be updated in place without fusing (no silent copy)
    const t = backend.fromRaw(randomArray(6, 1), [2, 3]);
    const tt = t.transpose(0, 1);
    expect(() => new AdamW([tt])).toThrow(/is a strided view or has an offset/);
    // the in-place op refuses an input it cannot write in place
    const g = backend.zeros([6]);
    const view = t.reshape([6]).slice(0, 1, 6);
    expect(() => runOp(adamwStepOp, [view, g, g, g], { step: 1, lr: 1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0 }))
      .toThrow(/adamw_step: expected grad \[5\]/);
    const v5 = [backend.zeros([5]), backend.zeros([5]), backend.zeros([5])];
    expect(() => runOp(adamwStepOp, [view, ...v5], { step: 1, lr: 1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0 }))
      .toThrow(/adamw_step: input 0 is written in place, so it must be contiguous with offset 0; found \[5\] strides \[1\] offset 1/);
    for (const x of [t, tt, g, view, ...v5]) x.dispose();
    opt.dispose(); h.dispose();
  });
});
