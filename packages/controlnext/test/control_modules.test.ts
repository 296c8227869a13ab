// ControlNeXt control modules: the optimised paths agree with the reference path (batch-1 control under
// CFG == the repo's batch-2 control; cached timestep-independent prefix == everything every step), and
// malformed weight files fail with the loader's report. Tiny random modules (RandomWeights) on every backend.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect } from 'vitest';
import { RandomWeights, SafetensorsFile, ops, writeSafetensors, type Backend, type SafetensorsEntry, type Tensor } from '@cnx/tensor';
import {
  ControlNeXt, ControlNeXtLightModule, ControlNeXtSD15Module, detectVariant, injectControl, loadControlModule, variants,
  type ControlModule, type ControlNeXtVariant, type LightStructure, type ReleaseStructure,
} from '@cnx/controlnext';
import { describeEachBackend } from '../../../test/harness/backends.js';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';

const RELEASE: ReleaseStructure = {
  timeProjDim: 128, timeEmbedDim: 32, inChannels: [3, 8, 16], outChannels: [8, 16, 16], groups: [1, 4, 4],
  midChannels: 16, finalChannels: 24,
};
const LIGHT: LightStructure = {
  timeProjDim: 128, timeEmbedDim: 32, stemChannels: [8, 8, 16], stemPadding: 1, inChannels: [16, 8], outChannels: [8, 16],
  groups: [4, 8], midChannels: 16, finalChannels: 12, scale: 0.35,
};

function image(backend: Backend, batch: number, H: number, W: number, seed: number): Tensor {
  const one = randomArray(3 * H * W, seed, 0.5, 0.5); // [0, 1] like a control image
  const data = new Float32Array(batch * one.length);
  for (let b = 0; b < batch; b++) data.set(one, b * one.length);
  return backend.fromRaw(data, [batch, 3, H, W]);
}

function modules(backend: Backend): [string, ControlModule][] {
  return [
    ['release', new ControlNeXtSD15Module(new RandomWeights({ seed: 3 }), backend, RELEASE)],
    ['light', new ControlNeXtLightModule(new RandomWeights({ seed: 4 }), backend, LIGHT)],
  ];
}

/** Random f32 weights of a module written as a safetensors file (state-dict names). */
function saveModule(m: ControlModule & { namedParameters(): [string, Tensor][] }, path: string, edit?: (e: Record<string, SafetensorsEntry>) => void): Promise<void> {
  return (async () => {
    const entries: Record<string, SafetensorsEntry> = {};
    for (const [name, t] of m.namedParameters()) entries[name] = { dtype: 'F32', shape: [...t.shape], data: await t.data() };
    edit?.(entries);
    writeSafetensors(path, entries);
  })();
}

const dir = mkdtempSync(join(tmpdir(), 'cnx-control-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describeEachBackend('ControlNeXt control modules', (test) => {
  test('cached timestep-independent prefix == uncached forward (release and light)', async (backend) => {
    for (const [name, m] of modules(backend)) {
      const img = image(backend, 1, 32, 24, 11);
      const prepared = m.prepare(img);
      for (const t of [981, 0, 417]) {
        const ref = m.forward(img, t);
        const got = m.forwardPrepared(prepared, t);
        expect(got.out.shape).toEqual(ref.out.shape);
        expectAllClose(await got.out.data(), await ref.out.data(), tolFor('f32', 9 * 16, 4), `${name} t=${t}`);
        for (const o of [ref, got]) { o.out.dispose(); if (typeof o.scale !== 'number') o.scale.dispose(); }
      }
      prepared.dispose();
      img.dispose();
      m.dispose();
    }
  });

  test('module at batch 1 == each half of the repo\'s batch-2 [img, img] run', async (backend) => {
    for (const [name, m] of modules(backend)) {
      const one = image(backend, 1, 16, 16, 5), two = image(backend, 2, 16, 16, 5);
      const a = m.forward(one, 501), b = m.forward(two, 501);
      const ad = await a.out.data(), bd = await b.out.data();
      expect(b.out.shape[0]).toBe(2);
      const tol = tolFor('f32', 9 * 16, 4);
      expectAllClose(bd.subarray(0, ad.length), ad, tol, `${name} half 0`);
      expectAllClose(bd.subarray(ad.length), ad, tol, `${name} half 1`);
      for (const o of [a, b]) { o.out.dispose(); if (typeof o.scale !== 'number') o.scale.dispose(); }
      [one, two].forEach((t) => t.dispose());
      m.dispose();
    }
  });

  test('injection: a [1, ...] control map == the duplicated [2, ...] map, for every variant order and scale kind', async (backend) => {
    const x = backend.fromRaw(randomArray(2 * 6 * 4 * 4, 21, 2, 0.3), [2, 6, 4, 4]);
    const c1 = backend.fromRaw(randomArray(6 * 8 * 8, 22, 1.5, -0.2), [1, 6, 8, 8]);
    const c2 = ops.concat([c1, c1], 0);
    for (const v of [variants.sd15, variants.sd15_training, variants.sdxl]) {
      for (const scale of [0.7, backend.fromRaw(new Float32Array([0, 0.7]), [2])]) {
        const a = injectControl(v, x, c1, scale), b = injectControl(v, x, c2, scale);
        expectAllClose(await a.data(), await b.data(), tolFor('f32', 6 * 16, 4), `${v.name} scale ${typeof scale === 'number' ? scale : '[0, 0.7]'}`);
        [a, b].forEach((t) => t.dispose());
      }
    }
    [x, c1, c2].forEach((t) => t.dispose());
  });

  test('CFG: per-sample zero scale on the unconditional half leaves it untouched and matches the scalar on the other', async (backend) => {
    const v: ControlNeXtVariant = { ...variants.sdxl, cfg: 'uncond_zero' };
    const m = new ControlNeXtLightModule(new RandomWeights({ seed: 8 }), backend, { ...LIGHT, finalChannels: 6 });
    const cnx = new ControlNeXt(v, m, backend, { strength: 0.5 });
    const img = image(backend, 1, 16, 16, 9);
    const ctrl = cnx.control(cnx.prepare(img), 700);
    const x = backend.fromRaw(randomArray(2 * 6 * 2 * 2, 23, 1), [2, 6, 2, 2]);
    const h = cnx.hooks(ctrl, 2, { cfg: true });
    const y = h.hooks['conv_in']!(x);
    const ref = injectControl(variants.sdxl, x, ctrl.out, 0.35 * 0.5);
    const yd = await y.data(), xd = await x.data(), rd = await ref.data();
    const half = yd.length / 2;
    expectAllClose(yd.subarray(0, half), xd.subarray(0, half), { atol: 0, rtol: 0 }, 'uncond half');
    expectAllClose(yd.subarray(half), rd.subarray(half), tolFor('f32', 24, 4), 'cond half');
    h.dispose();
    [x, y, ref, ctrl.out, img].forEach((t) => t.dispose());
    cnx.dispose();
  });

  test('malformed weights fail with the loader report: missing key, wrong shape, wrong variant', async (backend) => {
    const release = new ControlNeXtSD15Module(new RandomWeights({ seed: 1 }), backend, RELEASE);
    const light = new ControlNeXtLightModule(new RandomWeights({ seed: 2 }), backend, LIGHT);
    const ok = join(dir, `release_${backend.name}.safetensors`);
    await saveModule(release, ok);
    const good = loadControlModule(ok, backend, { variant: 'sd15', groups: RELEASE.groups });
    expect(good.outChannels).toBe(RELEASE.finalChannels);
    expect(good.numParameters()).toBe(release.numParameters());
    good.dispose();

    const missing = join(dir, `missing_${backend.name}.safetensors`);
    await saveModule(release, missing, (e) => { delete e['down_res.1.time_emb_proj.weight']; });
    expect(() => loadControlModule(missing, backend, { variant: 'sd15', groups: RELEASE.groups }))
      .toThrow(/missing keys \(1\):\n\s+down_res\.1\.time_emb_proj\.weight \[16, 32\] \(nearest: down_res\.\d\.time_emb_proj\.weight\)/);

    const misShaped = join(dir, `misshaped_${backend.name}.safetensors`);
    await saveModule(light, misShaped, (e) => { e['down_res.0.norm2.weight'] = { dtype: 'F32', shape: [9], data: new Float32Array(9) }; });
    expect(() => loadControlModule(misShaped, backend, { variant: 'sdxl' }))
      .toThrow(/mis-shaped keys \(1\):\n\s+down_res\.0\.norm2\.weight: expected \[8\], found \[9\]/);

    const lightFile = join(dir, `light_${backend.name}.safetensors`);
    await saveModule(light, lightFile);
    expect(() => loadControlModule(lightFile, backend, { variant: 'sd15' })).toThrow(/wrong variant: .*light.*'embedding\.0\.weight'.*variant 'sd15' needs the release module/s);
    expect(() => loadControlModule(ok, backend, { variant: 'sdxl' })).toThrow(/wrong variant: .*SD1\.5 release.*down_res\.0\.norm1\.weight' is \[3\].*variant 'sdxl' needs the light module/s);

    const unused = join(dir, `unused_${backend.name}.safetensors`);
    await saveModule(light, unused, (e) => { e['extra.weight'] = { dtype: 'F32', shape: [2], data: new Float32Array(2) }; });
    expect(() => loadControlModule(unused, backend, { variant: 'sd15_training' })).toThrow(/unused keys \(1\):\n\s+extra\.weight/);

    // The variant from the file: release -> sd15; light -> by its config.json class, else ambiguous.
    expect(detectVariant(ok).variant).toBe('sd15');
    for (const [cfg, want] of [[{ _class_name: 'ControlNeXtModel', controlnext_scale: 0.35 }, 'sd15_training'], [{ _class_name: 'ControlNetModel', final_out_channels: 12 }, 'sdxl']] as const) {
      const folder = join(dir, `${want}_${backend.name}`);
      mkdirSync(folder, { recursive: true });
      await saveModule(light, join(folder, 'controlnet.safetensors'));
      writeFileSync(join(folder, 'config.json'), JSON.stringify(cfg));
      expect(detectVariant(folder).variant).toBe(want);
      const loaded = loadControlModule(folder, backend, { variant: want });
      // SD1.5-Training's float scale comes from config.json; SDXL's module scale is 1.0.
      const img = image(backend, 1, 16, 16, 3);
      const o = loaded.forward(img, 10);
      expect(o.scale).toBe(want === 'sd15_training' ? 0.35 : 1);
      [o.out, img].forEach((t) => t.dispose());
      loaded.dispose();
    }
    expect(() => detectVariant(lightFile)).toThrow(/nothing tells SD1\.5-Training from SDXL/);

    // The file is closed after loading (also after a failure): it can be opened again.
    SafetensorsFile.open(missing).close();
    release.dispose();
    light.dispose();
  });
});
