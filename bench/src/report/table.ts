// The terminal / markdown tables of a bench record.

import type { BenchRecord } from '../bench_record.js';

const ms = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(1)} ms`);
const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)}`;
const pct = (p: number) => `${p >= 0 ? '+' : ''}${p.toFixed(1)} %`;

/** Whether the record has GPU times (WebGPU with timestamp queries): then the tables show their columns. */
export function hasGpuTimes(r: BenchRecord): boolean {
  return r.variants.length > 0 && r.variants.every((v) => v.gpuMs !== undefined);
}

export function resultRows(r: BenchRecord): string[][] {
  const gpu = hasGpuTimes(r);
  const head = ['configuration', 'median/step', 'min..max', ...(gpu ? ['GPU ms/step'] : []), 'overhead', ...(gpu ? ['GPU overhead'] : []),
    'FLOP overhead', 'GFLOP/step', 'GFLOP/s', 'added params (M)', 'prefix (once)', 'peak backend MiB', 'step working MiB', 'peak RSS MiB'];
  const rows = r.variants.map((v) => [
    v.label,
    ms(v.latencyMs.median),
    `${ms(v.latencyMs.min)}..${ms(v.latencyMs.max)}`,
    ...(gpu ? [ms(v.gpuMs!.median)] : []),
    v.id === 'base' ? '-' : pct(v.overheadPct),
    ...(gpu ? [v.id === 'base' || v.gpuOverheadPct === undefined ? '-' : pct(v.gpuOverheadPct)] : []),
    v.id === 'base' ? '-' : pct(v.flopOverheadPct),
    (v.stepFlops / 1e9).toFixed(1),
    v.achievedGflops.toFixed(2),
    (v.addedParams / 1e6).toFixed(2),
    v.prefixMs !== undefined ? ms(v.prefixMs) : '-',
    mb(v.memory.backendPeakBytes),
    mb(v.memory.stepWorkingBytes),
    mb(v.memory.hostPeakRssBytes),
  ]);
  return [head, ...rows];
}

export function terminalTable(r: BenchRecord): string {
  const rows = resultRows(r);
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const fmt = (row: string[]) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  const [head, ...body] = rows;
  return [fmt(head!), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(fmt)].join('\n');
}

export function markdownTable(r: BenchRecord): string {
  const rows = resultRows(r);
  const [head, ...body] = rows;
  return [
    `| ${head!.join(' | ')} |`,
    `|${head!.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...body.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n');
}

/** '--dtype' and what it gave: 'f32', or 'f16 (f16 weights, f16 compute)' / '(..., f32 compute: no shader-f16)'. */
function precisionText(r: BenchRecord): string {
  const p = r.precision;
  if (!p || r.dtype === 'f32') return r.dtype;
  return `${r.dtype} (${p.weightDtype} weights, ${p.compute} compute${p.note ? ': no shader-f16' : ''})`;
}

export function describeRun(r: BenchRecord): string {
  const e = r.environment;
  return [
    `${r.architecture ?? 'SD1.5'} ${r.model}, ${r.resolution[0]}x${r.resolution[1]} px (latent ${r.latent[0]}x${r.latent[1]}), ` +
      `${r.images} image(s), CFG: UNet batch ${r.unetBatch}, ${precisionText(r)}, ${r.steps} timed step(s) after ${r.warmup} warm-up`,
    `backend: ${r.backend.description.startsWith(r.backend.name) ? '' : `${r.backend.name}: `}${r.backend.description}; timing: ${r.backend.timing}`,
    `${e.date}, commit ${e.gitCommit.slice(0, 12)}${e.gitDirty ? ' (dirty)' : ''}, node ${e.node}, ${e.platform}, ${e.cpu} x${e.cpuCores}`,
  ].join('\n');
}
