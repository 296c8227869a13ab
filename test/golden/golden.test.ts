// Every public golden case in ../shared/golden, on every available backend, through the same code path
// as `npm run golden`. A case whose runner kind is not registered yet fails here (no silent skip).

import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { runCase } from '@cnx/golden';
import { expect } from 'vitest';
import { describeEachBackend } from '../harness/backends.js';

const root = resolve(process.env.CNX_GOLDEN_DIR ?? join(import.meta.dirname, '../../../shared/golden'));
const cases = existsSync(root)
  ? readdirSync(root).filter((d) => existsSync(join(root, d, 'case.json'))).sort()
  : [];

if (cases.length === 0) throw new Error(`no golden cases found under ${root} (set CNX_GOLDEN_DIR)`);

describeEachBackend('golden', (test) => {
  for (const name of cases) {
    test(name, async (backend) => {
      const r = await runCase(join(root, name), backend);
      const bad = r.checks.filter((k) => !k.ok).map((k) => `${k.name}: max_abs ${k.maxAbs} rel_l2 ${k.relL2} ${k.message ?? ''}`);
      expect(r.error ?? '', `${name} errored`).toBe('');
      expect(bad, `${name} mismatches`).toEqual([]);
      expect(r.ok).toBe(true);
    }, 600_000);
  }
});
