// Step logs and plots (training/loss_curve.ts): CSV round-trips every number exactly (NaN, infinities,
// absent values, quoted text), bad rows name their key or line; the SVG plots are well-formed, map data
// to the plot area the right way up, break lines at non-finite points, and draw a mean line with a band
// per series whose statistics are those of the runs.

import { describe, expect, it } from 'vitest';
import {
  StepLogCsv, linePlotSvg, lossCurveSvg, movingAverage, niceTicks, parseCsvRecords, parseStepLogCsv, spreadPlotSvg, spreadStats,
  stepLogToCsv,
} from '@cnx/controlnext';

/** Balanced tags, attribute values quoted, only the five XML entities: enough to catch broken output. */
function expectWellFormed(svg: string) {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z][\w-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)) {
    const [, close, name, , selfClose] = m;
    if (selfClose) continue;
    if (close) expect(stack.pop(), `closing </${name}>`).toBe(name);
    else stack.push(name!);
  }
  expect(stack).toEqual([]);
  // Every '<' starts a tag the regex accepted.
  const tags = [...svg.matchAll(/<(\/?)([a-zA-Z][\w-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)].length;
  expect((svg.match(/</g) ?? []).length).toBe(tags);
  expect(svg.replace(/&(amp|lt|gt|quot|apos);/g, '')).not.toMatch(/&/);
}

/** The (x, y) screen points of the path(s) of the series named `name`, split at each 'M'. */
function pathSegments(svg: string, name: string): Array<Array<[number, number]>> {
  const m = svg.match(new RegExp(`<path class="series" data-name="${name.replace(/[()+]/g, '\\$&')}" d="([^"]*)"`));
  expect(m, `series ${name}`).not.toBeNull();
  return m![1]!.split('M').filter(Boolean).map((seg) => seg.split('L').map((p) => p.split(',').map(Number) as [number, number]));
}

describe('step log CSV', () => {
  it('round-trips numbers exactly, including NaN, infinities, absent values and quoted text', () => {
    const rows = [
      { step: 1, loss: 0.1 + 0.2, lr: 1e-5, it_per_s: 3.25, elapsed_s: 0.3 },
      { step: 2, loss: NaN, lr: 1e-5, it_per_s: Infinity },
      { step: 3, loss: -Infinity, lr: 5e-324, note: 'a "quoted", comma\nline' },
    ];
    const columns = ['step', 'loss', 'lr', 'it_per_s', 'elapsed_s', 'note'];
    const text = stepLogToCsv(rows, columns);
    expect(text.split('\n')[0]).toBe('step,loss,lr,it_per_s,elapsed_s,note');
    expect(text).toContain('"a ""quoted"", comma\nline"');
    const back = parseStepLogCsv(text);
    expect(back.columns).toEqual(columns);
    expect(back.rows).toEqual(rows);
    expect(parseCsvRecords('a,b\r\n1,"x\r\ny"\r\n,\n')).toEqual([['a', 'b'], ['1', 'x\r\ny'], ['', '']]);
  });

  it('writes lines incrementally and refuses unknown keys, bad columns and malformed files', () => {
    const w = new StepLogCsv();
    expect(w.header()).toBe('step,loss,lr,it_per_s,elapsed_s\n');
    expect(w.line({ step: 5, loss: 0.5 })).toBe('5,0.5,,,\n');
    expect(() => w.line({ step: 1, los: 2 })).toThrow(/key 'los', which is not a column \(columns: step, loss, lr, it_per_s, elapsed_s\)/);
    expect(() => new StepLogCsv(['a', 'a'])).toThrow(/column 'a' appears twice/);
    expect(() => new StepLogCsv(['a,b'])).toThrow(/without commas/);
    expect(() => parseStepLogCsv('step,loss\n1,2\n3\n')).toThrow(/line 3: expected 2 fields \(step, loss\), found 1/);
    expect(() => parseCsvRecords('a,"b\n')).toThrow(/unterminated quoted field/);
    expect(() => parseCsvRecords('a,"b"c\n')).toThrow(/line 1: unexpected 'c' after a closing quote/);
    expect(() => parseStepLogCsv('')).toThrow(/empty/);
  });
});

describe('plots', () => {
  it('moving average and nice ticks', () => {
    expect(movingAverage([1, 2, 3, 4, 5], 2)).toEqual([1, 1.5, 2.5, 3.5, 4.5]);
    const ma = movingAverage([NaN, 2, NaN, 4], 3);
    expect(ma[0]).toBeNaN();
    expect(ma.slice(1)).toEqual([2, 2, 3]);
    expect(() => movingAverage([1], 0)).toThrow(/window must be an integer >= 1, found 0/);
    for (const [lo, hi] of [[0, 1000], [0.013, 0.0171], [-3, 7], [5, 5]] as const) {
      const { ticks, step } = niceTicks(lo, hi);
      expect(ticks.length).toBeGreaterThanOrEqual(2);
      expect(ticks.length).toBeLessThanOrEqual(12);
      const mant = step / 10 ** Math.floor(Math.log10(step));
      expect([1, 2, 5].some((m) => Math.abs(mant - m) < 1e-9)).toBe(true);
      for (const t of ticks) expect(Math.abs(t / step - Math.round(t / step))).toBeLessThan(1e-6);
      if (hi > lo) {
        expect(ticks[0]!).toBeGreaterThanOrEqual(lo - 1e-12);
        expect(ticks[0]! - step).toBeLessThan(lo);
        expect(ticks.at(-1)! + step).toBeGreaterThan(hi);
      }
    }
    expect(niceTicks(0, 1000).step).toBe(200);
  });

  it('loss curve: well-formed, right way up, legend and labels, moving average, gaps at NaN', () => {
    const pts = Array.from({ length: 100 }, (_, i) => ({ step: i + 1, loss: i === 40 ? NaN : 1 / (1 + 0.1 * i) + 0.01 * Math.sin(i) }));
    const svg = lossCurveSvg(pts, { title: 'loss <tiny> & co', movingAverage: 10 });
    expectWellFormed(svg);
    expect(svg).toContain('loss &lt;tiny&gt; &amp; co');
    expect(svg).toContain('>step</text>');
    expect(svg).toContain('loss (moving average, 10 steps)');
    const segs = pathSegments(svg, 'loss');
    expect(segs.length).toBe(2); // broken at step 41
    const flat = segs.flat();
    expect(flat.length).toBe(99);
    for (let i = 1; i < flat.length; i++) expect(flat[i]![0]).toBeGreaterThan(flat[i - 1]![0]);
    // The largest loss (step 1) is highest on screen (smallest y), the smallest is lowest.
    const finite = pts.filter((p) => Number.isFinite(p.loss));
    const iMax = finite.findIndex((p) => p.loss === Math.max(...finite.map((q) => q.loss)));
    const iMin = finite.findIndex((p) => p.loss === Math.min(...finite.map((q) => q.loss)));
    expect(flat[iMax]![1]).toBe(Math.min(...flat.map((p) => p[1])));
    expect(flat[iMin]![1]).toBe(Math.max(...flat.map((p) => p[1])));
    const maSegs = pathSegments(svg, 'loss (moving average, 10 steps)');
    expect(maSegs.length).toBe(1); // the moving average skips the NaN
    // Log axis: decade ticks, and non-positive values refused.
    const logSvg = lossCurveSvg([{ step: 0, loss: 10 }, { step: 1, loss: 0.01 }], { logY: true });
    expectWellFormed(logSvg);
    for (const t of ['>10</text>', '>1</text>', '>0.1</text>', '>0.01</text>']) expect(logSvg).toContain(t);
    expect(() => lossCurveSvg([{ step: 0, loss: 0 }], { logY: true })).toThrow(/logY needs y > 0, found 0 at x = 0/);
    expect(() => lossCurveSvg([])).toThrow(/no points/);
    expect(() => linePlotSvg({ lines: [{ x: [NaN], y: [1] }] })).toThrow(/no finite points/);
  });

  it('spread plot: mean line and band per series from the runs, std or min-max', () => {
    const mk = (seed: number, scale: number) => ({ x: [0, 100, 200, 300], y: [0, 1, 2, 3].map((k) => scale * (1 - Math.exp(-k)) + 0.05 * seed) });
    const series = [
      { name: 'cross norm', runs: [mk(0, 0.9), mk(1, 0.9), mk(2, 0.9)] },
      { name: 'zero conv', runs: [mk(0, 0.5), mk(1, 0.5), { x: [0, 100, 200], y: [0.1, 0.2, NaN] }] },
    ];
    const st = spreadStats(series[1]!.runs);
    expect(st.map((p) => p.n)).toEqual([3, 3, 2, 2]);
    expect(st[3]!.mean).toBeCloseTo((0.5 * (1 - Math.exp(-3)) * 2 + 0.05) / 2, 12);
    expect(st[0]!.min).toBe(0);
    expect(st[0]!.max).toBe(0.1);
    expect(st[0]!.std).toBeCloseTo(Math.sqrt(((0 - 0.05) ** 2 + 0 + 0.05 ** 2) / 3), 12);
    for (const band of ['minmax', 'std'] as const) {
      const svg = spreadPlotSvg(series, { band, title: 'fidelity', xLabel: 'step', yLabel: 'IoU', showRuns: true });
      expectWellFormed(svg);
      expect((svg.match(/<polygon class="band"/g) ?? []).length).toBe(2);
      const tag = band === 'minmax' ? 'min-max' : '+-1 std';
      expect(svg).toContain(`cross norm (mean of 3, ${tag})`);
      expect(svg).toContain(`zero conv (mean of 3, ${tag})`);
      // The mean line lies inside its band at every x (screen y between the band's top and bottom).
      const mean = pathSegments(svg, `cross norm (mean of 3, ${tag})`).flat();
      const poly = svg.match(/<polygon class="band" data-name="" points="([^"]*)"/)![1]!.split(' ').map((p) => p.split(',').map(Number));
      const n = poly.length / 2;
      expect(n).toBe(4);
      for (let i = 0; i < n; i++) {
        const top = poly[i]!, bottom = poly[2 * n - 1 - i]!;
        expect(top[0]).toBeCloseTo(mean[i]![0], 6);
        expect(top[1]! <= mean[i]![1] + 1e-9 && mean[i]![1] <= bottom[1]! + 1e-9).toBe(true);
      }
    }
    expect(() => spreadPlotSvg([{ name: 'x', runs: [] }])).toThrow(/series 'x' has no runs/);
    expect(() => spreadPlotSvg(series, { band: 'iqr' as 'std' })).toThrow(/band must be 'minmax' or 'std', found 'iqr'/);
  });
});
