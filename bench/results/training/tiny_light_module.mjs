// Write the fresh tiny light ControlNeXt module that `cnx train --model tiny` starts from
// (ControlNeXtLightModule(RandomWeights({ seed }), TINY_LIGHT_CONTROLNEXT_STRUCTURE)) as a module folder, so that
// a run on another base folder (here: the tiny model with a recalibrated VAE scaling factor) can start from it
// with --init-module (a folder's default is the released-width module, far too slow for a CPU experiment).
// usage: node bench/results/training/tiny_light_module.mjs OUT_DIR [SEED=0]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ControlNeXtLightModule, TINY_LIGHT_CONTROLNEXT_STRUCTURE } from '@cnx/controlnext';
import { CpuBackend, RandomWeights, encodeSafetensors } from '@cnx/tensor';

const [out, seedArg] = process.argv.slice(2);
if (!out) { console.error('usage: node tiny_light_module.mjs OUT_DIR [SEED]'); process.exit(2); }
const be = new CpuBackend();
const s = TINY_LIGHT_CONTROLNEXT_STRUCTURE;
const m = new ControlNeXtLightModule(new RandomWeights({ seed: Number(seedArg ?? 0) }), be, s);
const entries = {};
for (const [k, t] of m.namedParameters()) entries[k] = { dtype: 'F32', shape: t.shape, data: await t.data() };
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'diffusion_pytorch_model.safetensors'), encodeSafetensors(entries));
writeFileSync(join(out, 'config.json'), JSON.stringify({ _class_name: 'ControlNeXtModel', controlnext_scale: s.scale, groups: s.groups }, null, 2) + '\n');
m.dispose();
console.log(`wrote ${out}: ${Object.keys(entries).length} tensors`);
