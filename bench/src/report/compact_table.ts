// The default terminal table of `npm run bench`: one short line per configuration, under 100 columns
// (the full table, every column, is `--wide`, latest.md and the JSON record). Spread = (max - min) /
// median of the configuration's samples, so an overhead smaller than it reads as noise at a glance.

import type { BenchRecord } from '../bench_record.js';
import { relativeSpreadPct } from '../spread_warnings.js';
import { hasGpuTimes } from './table.js';

/** Short names of the standard configurations; others keep their label, cut to fit. */
const SHORT: Readonly<Record<string, string>> = {
  'base': 'UNet (base)',
  'controlnet': '+ ControlNet',
  'release-ref': '+ ControlNeXt release, ref',
  'release-opt': '+ ControlNeXt release, ours',
  'light-ref': '+ ControlNeXt light, ref',
  'light-opt': '+ ControlNeXt light, ours',
};
const MAX_LABEL = 30;

export function shortLabel(id: string, label: string): string {
  const s = SHORT[id] ?? label;
  return s.length <= MAX_LABEL ? s : `${s.slice(0, MAX_LABEL - 1)}…`;
}

const time = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);
const pct = (p: number) => `${p >= 0 ? '+' : ''}${p.toFixed(1)} %`;

export function compactRows(r: BenchRecord): string[][] {
  const gpu = hasGpuTimes(r);
  const head = ['configuration', 'median/step', 'spread', 'overhead', ...(gpu ? ['GPU/step', 'GPU ovh'] : []), 'FLOP ovh', '+params M', 'peak MiB'];
  const rows = r.variants.map((v) => [
    shortLabel(v.id, v.label),
    time(v.latencyMs.median),
    `${relativeSpreadPct(v.samplesMs).toFixed(1)} %`,
    v.id === 'base' ? '-' : pct(v.overheadPct),
    ...(gpu ? [time(v.gpuMs!.median), v.id === 'base' || v.gpuOverheadPct === undefined ? '-' : pct(v.gpuOverheadPct)] : []),
    v.id === 'base' ? '-' : pct(v.flopOverheadPct),
    (v.addedParams / 1e6).toFixed(2),
    (v.memory.backendPeakBytes / 2 ** 20).toFixed(0),
  ]);
  return [head, ...rows];
}

export function compactTable(r: BenchRecord): string {
  const rows = compactRows(r);
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const fmt = (row: string[]) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  const [head, ...body] = rows;
  return [fmt(head!), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(fmt)].join('\n');
}
