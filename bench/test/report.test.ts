// The benchmark's statistics, option parsing and chart: the parts of `npm run bench` that do not need
// a model run.
import { describe, expect, it } from 'vitest';
import { parseBenchOptions } from '../src/bench_options.js';
import type { BenchRecord, VariantResult } from '../src/bench_record.js';
import { overheadChartSvg } from '../src/report/overhead_chart.js';
import { markdownTable } from '../src/report/table.js';
import { sampleStats } from '../src/stats.js';
import { VARIANT_IDS } from '../src/variants.js';

describe('sampleStats', () => {
  it('median, quartiles (linear interpolation) and range of unsorted samples', () => {
    const s = sampleStats([4, 1, 3, 2, 100]);
    expect(s).toMatchObject({ n: 5, median: 3, min: 1, max: 100, q1: 2, q3: 4 });
    expect(sampleStats([1, 2]).median).toBe(1.5);
    expect(() => sampleStats([])).toThrow(/no samples/);
  });
});

describe('parseBenchOptions', () => {
  it('defaults: CPU, 64 px, every configuration, f32', () => {
    const o = parseBenchOptions([]);
    if (o === 'help') throw new Error('unexpected help');
    expect(o).toMatchObject({ backend: 'wasm', resolution: [64, 64], steps: 3, warmup: 1, batch: 1, dtype: 'f32', out: undefined, wide: false });
    expect(o.variants).toEqual([...VARIANT_IDS]);
  });
  it('keeps the base in any variant subset, parses HxW', () => {
    const o = parseBenchOptions(['--variants', 'light-opt,controlnet', '--resolution', '128x192', '--backend', 'webgpu']);
    if (o === 'help') throw new Error('unexpected help');
    expect(o.variants).toEqual(['base', 'controlnet', 'light-opt']);
    expect(o.resolution).toEqual([128, 192]);
  });
  it('names the offending option and value', () => {
    expect(() => parseBenchOptions(['--resolution', '100'])).toThrow(/--resolution.*multiples of 64.*100x100/);
    expect(parseBenchOptions(['--dtype', 'f16'])).toMatchObject({ dtype: 'f16' });
    expect(() => parseBenchOptions(['--dtype', 'bf16'])).toThrow(/--dtype: expected f32 or f16, found 'bf16'/);
    expect(() => parseBenchOptions(['--variants', 'bogus'])).toThrow(/unknown 'bogus'/);
    expect(() => parseBenchOptions(['--backend', 'cuda'])).toThrow(/cpu, wasm or webgpu, found 'cuda'/);
    expect(parseBenchOptions(['--help'])).toBe('help');
  });
  it('--model sdxl: its own configurations, multiples of 32 px, unknown models and foreign ids named', () => {
    const o = parseBenchOptions(['--model', 'sdxl', '--resolution', '1024']);
    if (o === 'help') throw new Error('unexpected help');
    expect(o).toMatchObject({ model: 'sdxl', resolution: [1024, 1024], variants: ['base', 'sdxl-ref', 'sdxl-opt'] });
    const sub = parseBenchOptions(['--model', 'sdxl', '--variants', 'sdxl-opt', '--resolution', '96x64']);
    if (sub === 'help') throw new Error('unexpected help');
    expect(sub).toMatchObject({ variants: ['base', 'sdxl-opt'], resolution: [96, 64] });
    expect(() => parseBenchOptions(['--model', 'sdxl', '--resolution', '48'])).toThrow(/--resolution: SDXL needs multiples of 32 pixels .*halves it 2 times.*48x48/);
    expect(() => parseBenchOptions(['--model', 'sdxl', '--variants', 'light-opt'])).toThrow(/unknown 'light-opt' for --model sdxl; expected some of base, sdxl-ref, sdxl-opt/);
    expect(() => parseBenchOptions(['--model', 'sd3'])).toThrow(/--model: expected sd15 or sdxl, found 'sd3'/);
    expect((parseBenchOptions([]) as { model: string }).model).toBe('sd15');
  });
});

function fakeRecord(): BenchRecord {
  const v = (id: VariantResult['id'], median: number, flopPct: number): VariantResult => ({
    id, label: `<${id}>`, latencyMs: sampleStats([median, median * 1.1]), samplesMs: [median], overheadPct: (median / 100 - 1) * 100,
    stepFlops: 1e9, controlFlops: 0, prefixFlops: 0, otherFlops: 0, flopOverheadPct: flopPct, achievedGflops: 1,
    addedParams: 0, trainableParams: 0,
    memory: { liveAtStartBytes: 0, backendPeakBytes: 0, stepWorkingBytes: 0, controlWeightBytes: 0, hostPeakRssBytes: 0, hostPeakHeapBytes: 0 },
  });
  return {
    tool: 'controlnext-ts bench',
    environment: { date: '2026-01-01T00:00:00Z', gitCommit: 'abc', gitDirty: false, node: 'v20', platform: 'linux-x64', cpu: 'x', cpuCores: 2, hostMemoryBytes: 1 },
    backend: { name: 'cpu', description: 'CPU & co', timing: 'wall clock' },
    model: 'm', resolution: [64, 64], latent: [8, 8], images: 1, unetBatch: 2, steps: 1, warmup: 0, dtype: 'f32', seed: 0, buildSeconds: 0,
    variants: [v('base', 100, 0), v('controlnet', 140, 35), v('light-opt', 95, 4)],
    notes: [],
  };
}

describe('reports', () => {
  it('the SVG has one pair of bars per non-base configuration, escapes text, and shows negative overheads', () => {
    const svg = overheadChartSvg(fakeRecord());
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect((svg.match(/<rect [^>]*><title>/g) ?? []).length).toBe(4);
    expect(svg).toContain('&lt;controlnet&gt;');
    expect(svg).toContain('CPU &amp; co');
    expect(svg).not.toContain('<base>');
    expect(svg).toContain('-5.0 %');
  });
  it('GPU columns and a third bar appear only when every configuration has GPU times', () => {
    const r = fakeRecord();
    r.variants.forEach((v, i) => { v.gpuMs = sampleStats([90 + 30 * i]); v.gpuOverheadPct = i === 0 ? undefined : 33.3 * i; });
    const md = markdownTable(r).split('\n');
    expect(md[0]).toContain('GPU ms/step');
    expect(md[0]).toContain('GPU overhead');
    expect(md[3]).toContain('+33.3 %');
    const svg = overheadChartSvg(r);
    expect((svg.match(/<rect [^>]*><title>/g) ?? []).length).toBe(6); // 2 configurations x 3 bars
    expect(svg).toContain('GPU time');
    r.variants[2]!.gpuMs = undefined; // one configuration without GPU time: no GPU columns at all
    expect(markdownTable(r).split('\n')[0]).not.toContain('GPU');
    expect((overheadChartSvg(r).match(/<rect [^>]*><title>/g) ?? []).length).toBe(4);
  });
  it('the markdown table has a header, a separator and one row per configuration', () => {
    const md = markdownTable(fakeRecord()).split('\n');
    expect(md).toHaveLength(2 + 3);
    expect(md[2]).toContain('<base>');
    expect(md[3]).toContain('+40.0 %');
  });
});
