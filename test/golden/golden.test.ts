// Every public golden case in golden/ (or CNX_GOLDEN_DIR: test/harness/golden_root.ts), on every available backend, through
// the same code path as `npm run golden`. A case whose runner kind is not registered fails here (no
// silent skip), except the cases of PENDING: kinds that an open issue implements. Those are printed as
// pending, run as todo (never counted as passed), and leave the list when their issue lands.

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { runCase } from '@cnx/golden';
import { expect, it } from 'vitest';
import { describeEachBackend } from '../harness/backends.js';
import { GOLDEN_ROOT } from '../harness/golden_root.js';

/** Case folder -> the issue that implements its kind. */
const PENDING: Readonly<Record<string, string>> = {};

/** Cases slower than the default 10 minutes on a software adapter (SwiftShader: ~5-14 min on a busy 2-core box). */
const TIMEOUT_MS: Readonly<Record<string, number>> = { svd_pipeline_controlnext: 1_800_000 };

const root = GOLDEN_ROOT;
const cases = existsSync(root)
  ? readdirSync(root).filter((d) => existsSync(join(root, d, 'case.json'))).sort()
  : [];

if (cases.length === 0) throw new Error(`no golden cases found under ${root} (set CNX_GOLDEN_DIR)`);
const pending = cases.filter((c) => c in PENDING);
if (pending.length) {
  console.log(`[golden] PENDING (not run, not counted as passed): ${pending.map((c) => `${c} (${PENDING[c]})`).join(', ')}`);
}

describeEachBackend('golden', (test) => {
  for (const name of cases) {
    if (name in PENDING) {
      it.todo(`${name}: pending, ${PENDING[name]}`);
      continue;
    }
    test(name, async (backend) => {
      const r = await runCase(join(root, name), backend);
      const bad = r.checks.filter((k) => !k.ok).map((k) => `${k.name}: max_abs ${k.maxAbs} rel_l2 ${k.relL2} ${k.message ?? ''}`);
      expect(r.error ?? '', `${name} errored`).toBe('');
      expect(bad, `${name} mismatches`).toEqual([]);
      expect(r.ok).toBe(true);
    }, TIMEOUT_MS[name] ?? 600_000);
  }
});
