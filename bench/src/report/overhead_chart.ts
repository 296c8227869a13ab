// A hand-written SVG bar chart of the per-step overheads over the base UNet: measured latency overhead
// next to the analytic FLOP overhead, one pair of bars per configuration (no plotting dependency), and a
// third bar for the GPU-time overhead where the record has GPU times (WebGPU timestamp queries).

import type { BenchRecord, VariantResult } from '../bench_record.js';
import { hasGpuTimes } from './table.js';

/** One bar per configuration: its value (% over the base), colour and legend text. */
type Series = [(v: VariantResult) => number, string, string];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function overheadChartSvg(r: BenchRecord): string {
  const rows = r.variants.filter((v) => v.id !== 'base');
  const gpu = hasGpuTimes(r);
  const series: Series[] = [
    [(v) => v.overheadPct, '#d9534f', gpu ? 'measured latency (median, wall)' : 'measured latency (median)'],
    ...(gpu ? [[(v) => v.gpuOverheadPct ?? 0, '#f0ad4e', 'GPU time (median)'] satisfies Series] : []),
    [(v) => v.flopOverheadPct, '#5b8def', 'analytic FLOPs'],
  ];
  const labelW = 490, plotW = 420, rowH = 12 + 17 * series.length, top = 58, left = 10;
  const height = top + rows.length * rowH + 50;
  const width = left + labelW + plotW + 80;
  const maxPct = Math.max(10, ...rows.flatMap((v) => series.map(([of]) => of(v))));
  const minPct = Math.min(0, ...rows.flatMap((v) => series.map(([of]) => of(v))));
  const span = maxPct - minPct;
  const x0 = left + labelW;
  const xOf = (p: number) => x0 + ((p - minPct) / span) * plotW;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="100%" height="100%" fill="white"/>`);
  parts.push(`<text x="${left}" y="20" font-size="15" font-weight="bold">${esc(`Per-step overhead over the base UNet: ${r.architecture ?? 'SD1.5'} ${r.resolution[0]}x${r.resolution[1]}, CFG batch ${r.unetBatch}`)}</text>`);
  parts.push(`<text x="${left}" y="38" fill="#555">${esc(`${r.backend.description.startsWith(r.backend.name) ? '' : `${r.backend.name}: `}${r.backend.description} | ${r.environment.date.slice(0, 10)} ${r.environment.gitCommit.slice(0, 10)}`)}</text>`);
  // Grid lines every 10 % (or 20 % when the range is wide).
  const stepPct = span > 120 ? 20 : 10;
  for (let p = Math.ceil(minPct / stepPct) * stepPct; p <= maxPct; p += stepPct) {
    const x = xOf(p).toFixed(1);
    parts.push(`<line x1="${x}" y1="${top - 6}" x2="${x}" y2="${top + rows.length * rowH}" stroke="${p === 0 ? '#333' : '#ddd'}"/>`);
    parts.push(`<text x="${x}" y="${top + rows.length * rowH + 16}" text-anchor="middle" fill="#555">${p} %</text>`);
  }
  rows.forEach((v, i) => {
    const y = top + i * rowH;
    parts.push(`<text x="${left}" y="${y + 22}">${esc(v.label)}</text>`);
    series.forEach(([of, color, what], j) => {
      const p = of(v);
      const a = xOf(Math.min(0, p)), b = xOf(Math.max(0, p));
      const by = y + 6 + j * 17;
      parts.push(`<rect x="${a.toFixed(1)}" y="${by}" width="${Math.max(1, b - a).toFixed(1)}" height="14" fill="${color}"><title>${esc(`${what}: ${p.toFixed(1)} %`)}</title></rect>`);
      parts.push(`<text x="${(b + 4).toFixed(1)}" y="${by + 11}" fill="#333">${p >= 0 ? '+' : ''}${p.toFixed(1)} %</text>`);
    });
  });
  const ly = top + rows.length * rowH + 34;
  // Legend entries left to right, each as wide as its text (about 6.5 px per character at 12 px).
  let lx = gpu ? left + 10 : x0;
  for (const [, color, what] of series) {
    parts.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${color}"/><text x="${lx + 16}" y="${ly}">${esc(what)}</text>`);
    lx += 16 + Math.ceil(what.length * 6.5) + 24;
  }
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
