// A ControlNeXt light module's config.json (groups, controlnext_scale) is checked like the model configs
// (issue 17 item 9: group counts that do not divide the widths failed later in GroupNorm, naming
// neither file nor key; a wrong-typed list was silently replaced by the class default).

import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '@cnx/tensor';
import { ControlNeXt } from '@cnx/controlnext';
import { GOLDEN_ROOT } from '../../../test/harness/golden_root.js';

const golden = GOLDEN_ROOT;
const src = join(golden, 'sd15_controlnext_training', 'controlnext');
const CONFIG = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
const tmp = mkdtempSync(join(tmpdir(), 'cnx-cfgmod-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const backend = new CpuBackend();

function moduleWith(name: string, patch: Record<string, unknown>): string {
  const dir = join(tmp, name);
  mkdirSync(dir);
  copyFileSync(join(src, 'controlnext.safetensors'), join(dir, 'controlnext.safetensors'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...CONFIG, ...patch }));
  return dir;
}

describe('ControlNeXt module config.json', () => {
  it('groups must divide each block\'s widths; a wrong-typed list is an error, not the default', () => {
    expect(() => ControlNeXt.load(moduleWith('g3', { groups: [3, 8] }), backend, { variant: 'sd15_training' }))
      .toThrow(/GroupNorm groups \[3, 8\] \(config\.json "groups"; the class default is \[4, 8\]\): entry 0 must be a positive integer dividing block 0's \d+ input and \d+ output channels, found 3/);
    expect(() => ControlNeXt.load(moduleWith('g0', { groups: [4, 0] }), backend, { variant: 'sd15_training' })).toThrow(/entry 1 must be a positive integer/);
    expect(() => ControlNeXt.load(moduleWith('gs', { groups: ['4', 8] }), backend, { variant: 'sd15_training' }))
      .toThrow(/g[s]\/?.*config\.json groups=\["4",8\]: expected a list of GroupNorm group counts/);
  });
  it('controlnext_scale must be a finite number in [-100, 100]; the release values load', () => {
    expect(() => ControlNeXt.load(moduleWith('s', { controlnext_scale: 1e300 }), backend, { variant: 'sd15_training' }))
      .toThrow(/config\.json controlnext_scale=1e\+300: expected a number in \[-100, 100\]/);
    expect(() => ControlNeXt.load(moduleWith('s2', { controlnext_scale: 'big' }), backend, { variant: 'sd15_training' })).toThrow(/controlnext_scale="big"/);
    ControlNeXt.load(moduleWith('ok', {}), backend, { variant: 'sd15_training' }).dispose();
  });
});
