// Training logs as CSV and plots as SVG, with no dependency (issue 12: `cnx train` writes a loss curve as
// CSV and SVG; the convergence experiment plots fidelity against step for two arms with the spread over
// seeds). Browser-safe and pure: everything returns strings; writing files is the caller's business.
//
// CSV: RFC 4180 (comma separated, '\n' line ends, a field quoted when it holds a comma, quote or line
// break, quotes doubled inside); numbers written with full precision (String(n)), so a parsed log gives
// back the same numbers; NaN and +-Infinity written as NaN, Infinity, -Infinity; an absent value is an
// empty field.
//
// SVG: a line plot with axes, "nice" ticks (1, 2, 5 x 10^k; decades on a log axis), axis labels, a title
// and a legend. Lines break at non-finite points (a diverged loss shows as a gap, never as a jump to the
// edge). Bands (min/max or mean +- std over runs) are filled polygons under their series' mean line.

/** One logged training step; columns beyond these are allowed through StepLogCsv's columns. */
export type StepLogRow = Record<string, number | string | undefined>;

/** The default per-step log columns (`cnx train`): step, loss, learning rate, iterations per second, elapsed seconds. */
export const DEFAULT_STEP_LOG_COLUMNS = ['step', 'loss', 'lr', 'it_per_s', 'elapsed_s'] as const;

function csvField(v: number | string | undefined): string {
  if (v === undefined) return '';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : String(v);
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** One CSV line (with its '\n') of the given values. */
export function csvLine(values: ReadonlyArray<number | string | undefined>): string {
  return values.map(csvField).join(',') + '\n';
}

/**
 * A CSV writer for per-step logs with fixed columns: header() once, then line(row) per step (append the
 * strings to a file or keep them). A row key that is not a column is an error (a typo would otherwise
 * silently drop a value); a column missing from a row is an empty field.
 */
export class StepLogCsv {
  readonly columns: readonly string[];
  constructor(columns: readonly string[] = DEFAULT_STEP_LOG_COLUMNS) {
    if (columns.length === 0) throw new Error('StepLogCsv: no columns');
    const seen = new Set<string>();
    for (const c of columns) {
      if (!c || /[",\r\n]/.test(c)) throw new Error(`StepLogCsv: column names must be non-empty, without commas, quotes or line breaks; found '${c}'`);
      if (seen.has(c)) throw new Error(`StepLogCsv: column '${c}' appears twice`);
      seen.add(c);
    }
    this.columns = [...columns];
  }
  header(): string {
    return csvLine(this.columns);
  }
  line(row: StepLogRow): string {
    for (const k of Object.keys(row)) {
      if (!this.columns.includes(k)) throw new Error(`StepLogCsv: row has key '${k}', which is not a column (columns: ${this.columns.join(', ')})`);
    }
    return csvLine(this.columns.map((c) => row[c]));
  }
}

/** A whole CSV text: header and one line per row. */
export function stepLogToCsv(rows: readonly StepLogRow[], columns: readonly string[] = DEFAULT_STEP_LOG_COLUMNS): string {
  const w = new StepLogCsv(columns);
  return w.header() + rows.map((r) => w.line(r)).join('');
}

/** Split CSV text into records of fields (RFC 4180 quoting); errors name the line. */
export function parseCsvRecords(text: string): string[][] {
  const records: string[][] = [];
  let rec: string[] = [], field = '', quoted = false, line = 1, i = 0, fieldStarted = false;
  while (i < text.length) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') { field += '"'; i += 2; continue; }
        quoted = false; i++;
        if (i < text.length && !/[,\r\n]/.test(text[i]!)) throw new Error(`CSV line ${line}: unexpected '${text[i]}' after a closing quote`);
        continue;
      }
      if (ch === '\n') line++;
      field += ch; i++;
      continue;
    }
    if (ch === '"') {
      if (field !== '') throw new Error(`CSV line ${line}: a quote inside an unquoted field`);
      quoted = true; fieldStarted = true; i++;
    } else if (ch === ',') {
      rec.push(field); field = ''; fieldStarted = true; i++;
    } else if (ch === '\r' || ch === '\n') {
      if (fieldStarted || field !== '' || rec.length) { rec.push(field); records.push(rec); }
      rec = []; field = ''; fieldStarted = false;
      i += ch === '\r' && text[i + 1] === '\n' ? 2 : 1;
      line++;
    } else {
      field += ch; fieldStarted = true; i++;
    }
  }
  if (quoted) throw new Error(`CSV line ${line}: unterminated quoted field`);
  if (fieldStarted || field !== '' || rec.length) { rec.push(field); records.push(rec); }
  return records;
}

/**
 * Parse a step log written by StepLogCsv: numeric fields become numbers (NaN, Infinity included), empty
 * fields are absent, other text stays a string. A row with a different field count is an error naming
 * its line (1-based, the header is line 1).
 */
export function parseStepLogCsv(text: string): { columns: string[]; rows: StepLogRow[] } {
  const records = parseCsvRecords(text);
  if (records.length === 0) throw new Error('step log CSV: empty (expected a header line)');
  const columns = records[0]!;
  const rows = records.slice(1).map((rec, k) => {
    if (rec.length !== columns.length) throw new Error(`step log CSV line ${k + 2}: expected ${columns.length} fields (${columns.join(', ')}), found ${rec.length}`);
    const row: StepLogRow = {};
    rec.forEach((f, c) => {
      if (f === '') return;
      const n = f === 'NaN' ? NaN : Number(f);
      row[columns[c]!] = f !== 'NaN' && (Number.isNaN(n) || f.trim() !== f) ? f : n;
    });
    return row;
  });
  return { columns, rows };
}

// ---------------------------------------------------------------------------------------------------
// SVG plots

/** Trailing moving average over the last `window` finite values (non-finite values are skipped; NaN until one is seen). */
export function movingAverage(values: readonly number[], window: number): number[] {
  if (!Number.isInteger(window) || window < 1) throw new Error(`movingAverage: window must be an integer >= 1, found ${window}`);
  const out: number[] = [], buf: number[] = [];
  let sum = 0;
  for (const v of values) {
    if (Number.isFinite(v)) {
      buf.push(v); sum += v;
      if (buf.length > window) sum -= buf.shift()!;
    }
    out.push(buf.length ? sum / buf.length : NaN);
  }
  return out;
}

/** Ticks at 1, 2, 5 x 10^k covering [lo, hi], about `target` of them. */
export function niceTicks(lo: number, hi: number, target = 6): { ticks: number[]; step: number } {
  if (!(Number.isFinite(lo) && Number.isFinite(hi)) || hi < lo) throw new Error(`niceTicks: bad range [${lo}, ${hi}]`);
  if (hi === lo) { const d = lo === 0 ? 1 : Math.abs(lo) * 0.1; lo -= d; hi += d; }
  const raw = (hi - lo) / Math.max(target - 1, 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  // The 1-2-5 step whose interval count is nearest (in ratio) to the one asked for.
  const want = Math.max(target - 1, 1);
  const step = [1, 2, 5, 10].map((m) => m * mag).reduce((best, s) =>
    (Math.abs(Math.log((hi - lo) / s / want)) < Math.abs(Math.log((hi - lo) / best / want)) ? s : best));
  const ticks: number[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) ticks.push(Number((k * step).toPrecision(12)));
  return { ticks, step };
}

function formatTick(v: number, step: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-4) return v.toExponential(Math.max(0, Math.min(6, Math.round(-Math.log10(step / a))))).replace('e+', 'e');
  const decimals = Math.max(0, Math.min(10, -Math.floor(Math.log10(step) + 1e-9)));
  return v.toFixed(decimals);
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Ten distinguishable colours (matplotlib's tab10). */
export const PLOT_COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'] as const;

export interface PlotLine {
  /** Legend text; absent: not in the legend. */
  name?: string;
  x: readonly number[];
  y: readonly number[];
  colour?: string;
  /** Stroke width in pixels (default 1.5). */
  width?: number;
  opacity?: number;
  dash?: string;
}

export interface PlotBand {
  name?: string;
  x: readonly number[];
  lo: readonly number[];
  hi: readonly number[];
  colour?: string;
  /** Fill opacity (default 0.2). */
  opacity?: number;
}

export interface PlotOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  /** Pixel size of the whole image (default 720 x 440). */
  width?: number;
  height?: number;
  /** Logarithmic y axis (every plotted y value must then be > 0). */
  logY?: boolean;
  /** Fixed axis ranges (default: the data's, y padded by 5 %). */
  xRange?: readonly [number, number];
  yRange?: readonly [number, number];
}

/** The general plot: bands first (underneath), then lines, axes, ticks, labels, legend. */
export function linePlotSvg(plot: { lines: readonly PlotLine[]; bands?: readonly PlotBand[] }, opts: PlotOptions = {}): string {
  const W = opts.width ?? 720, H = opts.height ?? 440;
  if (!(W >= 200 && H >= 150)) throw new Error(`linePlotSvg: width x height must be at least 200 x 150, found ${W} x ${H}`);
  const bands = plot.bands ?? [];
  for (const l of plot.lines) if (l.x.length !== l.y.length) throw new Error(`linePlotSvg: line '${l.name ?? ''}' has ${l.x.length} x values and ${l.y.length} y values`);
  for (const b of bands) {
    if (b.x.length !== b.lo.length || b.x.length !== b.hi.length) throw new Error(`linePlotSvg: band '${b.name ?? ''}' has ${b.x.length} x, ${b.lo.length} lo and ${b.hi.length} hi values`);
  }
  const logY = opts.logY ?? false;
  const xs: number[] = [], ys: number[] = [];
  const take = (x: number, y: number) => {
    if (!Number.isFinite(x) || !Number.isFinite(y)) return;
    if (logY && y <= 0) throw new Error(`linePlotSvg: logY needs y > 0, found ${y} at x = ${x}`);
    xs.push(x); ys.push(y);
  };
  for (const l of plot.lines) l.x.forEach((x, i) => take(x, l.y[i]!));
  for (const b of bands) b.x.forEach((x, i) => { take(x, b.lo[i]!); take(x, b.hi[i]!); });
  if (xs.length === 0 && !(opts.xRange && opts.yRange)) throw new Error('linePlotSvg: no finite points to plot');
  let [x0, x1] = opts.xRange ?? [Math.min(...xs), Math.max(...xs)];
  if (x0 === x1) { x0 -= 0.5; x1 += 0.5; }
  const ty = (v: number) => (logY ? Math.log10(v) : v);
  let [y0, y1] = opts.yRange ? [ty(opts.yRange[0]), ty(opts.yRange[1])] : [Math.min(...ys.map(ty)), Math.max(...ys.map(ty))];
  if (!opts.yRange) {
    const pad = (y1 - y0) * 0.05 || (logY ? 0.1 : Math.abs(y0) * 0.1 || 0.5);
    y0 -= pad; y1 += pad;
  }
  if (!(x1 > x0 && y1 > y0)) throw new Error(`linePlotSvg: empty axis range x [${x0}, ${x1}], y [${y0}, ${y1}]`);

  // Plot area: left margin for y tick labels and the y label, bottom for x ticks and label, right for the legend.
  const named = [...bands.filter((b) => b.name), ...plot.lines.filter((l) => l.name)];
  const legendW = named.length ? Math.min(260, 30 + 7 * Math.max(...named.map((n) => n.name!.length))) : 0;
  const L = 70, R = W - 20 - legendW, T = opts.title ? 40 : 20, B = H - 50;
  if (R - L < 60) throw new Error(`linePlotSvg: a width of ${W} leaves no room for the plot beside the legend`);
  const px = (x: number) => L + ((x - x0) / (x1 - x0)) * (R - L);
  const py = (y: number) => B - ((ty(y) - y0) / (y1 - y0)) * (B - T);
  const f = (v: number) => v.toFixed(2);

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`);
  if (opts.title) out.push(`<text x="${f((L + R) / 2)}" y="24" text-anchor="middle" font-size="15">${escapeXml(opts.title)}</text>`);

  // Grid and ticks.
  const xt = niceTicks(x0, x1, Math.max(3, Math.round((R - L) / 90)));
  let yTicks: Array<{ v: number; label: string }>;
  if (logY) {
    const d0 = Math.floor(y0), d1 = Math.ceil(y1);
    const mult = d1 - d0 <= 2 ? [1, 2, 5] : [1];
    yTicks = [];
    for (let d = d0; d <= d1; d++) for (const m of mult) {
      const v = m * 10 ** d, lv = Math.log10(v);
      if (lv >= y0 - 1e-9 && lv <= y1 + 1e-9) yTicks.push({ v, label: formatTick(v, 10 ** Math.min(d, 0) * m) });
    }
  } else {
    const t = niceTicks(y0, y1, Math.max(3, Math.round((B - T) / 60)));
    yTicks = t.ticks.map((v) => ({ v, label: formatTick(v, t.step) }));
  }
  out.push('<g class="grid" stroke="#e6e6e6" stroke-width="1">');
  for (const v of xt.ticks) if (v >= x0 && v <= x1) out.push(`<line x1="${f(px(v))}" y1="${T}" x2="${f(px(v))}" y2="${B}"/>`);
  for (const { v } of yTicks) out.push(`<line x1="${L}" y1="${f(py(v))}" x2="${R}" y2="${f(py(v))}"/>`);
  out.push('</g>');

  // Bands, then lines, clipped to the plot area.
  out.push(`<defs><clipPath id="plot-area"><rect x="${L}" y="${T}" width="${R - L}" height="${B - T}"/></clipPath></defs>`);
  out.push('<g clip-path="url(#plot-area)">');
  bands.forEach((b, k) => {
    const colour = b.colour ?? PLOT_COLOURS[k % PLOT_COLOURS.length]!;
    // One polygon per run of consecutive finite points.
    let run: number[] = [];
    const flush = () => {
      if (run.length) {
        const pts = [...run.map((i) => `${f(px(b.x[i]!))},${f(py(b.hi[i]!))}`), ...run.reverse().map((i) => `${f(px(b.x[i]!))},${f(py(b.lo[i]!))}`)];
        out.push(`<polygon class="band" data-name="${escapeXml(b.name ?? '')}" points="${pts.join(' ')}" fill="${colour}" fill-opacity="${b.opacity ?? 0.2}" stroke="none"/>`);
      }
      run = [];
    };
    b.x.forEach((x, i) => (Number.isFinite(x) && Number.isFinite(b.lo[i]!) && Number.isFinite(b.hi[i]!) ? run.push(i) : flush()));
    flush();
  });
  plot.lines.forEach((l, k) => {
    const colour = l.colour ?? PLOT_COLOURS[k % PLOT_COLOURS.length]!;
    let d = '', pen = false;
    l.x.forEach((x, i) => {
      const y = l.y[i]!;
      if (!Number.isFinite(x) || !Number.isFinite(y)) { pen = false; return; }
      d += `${pen ? 'L' : 'M'}${f(px(x))},${f(py(y))}`;
      pen = true;
    });
    if (d) {
      out.push(`<path class="series" data-name="${escapeXml(l.name ?? '')}" d="${d}" fill="none" stroke="${colour}" stroke-width="${l.width ?? 1.5}"` +
        `${l.opacity !== undefined ? ` stroke-opacity="${l.opacity}"` : ''}${l.dash ? ` stroke-dasharray="${l.dash}"` : ''} stroke-linejoin="round"/>`);
    }
  });
  out.push('</g>');

  // Axes, tick marks and labels.
  out.push(`<g class="axes" stroke="#333" stroke-width="1"><line x1="${L}" y1="${B}" x2="${R}" y2="${B}"/><line x1="${L}" y1="${T}" x2="${L}" y2="${B}"/></g>`);
  out.push('<g class="x-ticks" text-anchor="middle">');
  for (const v of xt.ticks) {
    if (v < x0 || v > x1) continue;
    out.push(`<line x1="${f(px(v))}" y1="${B}" x2="${f(px(v))}" y2="${B + 5}" stroke="#333"/><text x="${f(px(v))}" y="${B + 18}">${formatTick(v, xt.step)}</text>`);
  }
  out.push('</g><g class="y-ticks" text-anchor="end">');
  for (const { v, label } of yTicks) {
    out.push(`<line x1="${L - 5}" y1="${f(py(v))}" x2="${L}" y2="${f(py(v))}" stroke="#333"/><text x="${L - 8}" y="${f(py(v) + 4)}">${label}</text>`);
  }
  out.push('</g>');
  if (opts.xLabel) out.push(`<text class="x-label" x="${f((L + R) / 2)}" y="${H - 12}" text-anchor="middle">${escapeXml(opts.xLabel)}</text>`);
  if (opts.yLabel) out.push(`<text class="y-label" transform="translate(16 ${f((T + B) / 2)}) rotate(-90)" text-anchor="middle">${escapeXml(opts.yLabel)}</text>`);

  // Legend: one entry per named line or band (a swatch for a band, a stroke for a line).
  if (named.length) {
    const lx = R + 15;
    out.push('<g class="legend">');
    let yy = T + 10;
    bands.forEach((b, k) => {
      if (!b.name) return;
      out.push(`<rect x="${lx}" y="${yy - 8}" width="20" height="10" fill="${b.colour ?? PLOT_COLOURS[k % PLOT_COLOURS.length]}" fill-opacity="${b.opacity ?? 0.2}"/><text x="${lx + 26}" y="${yy + 1}">${escapeXml(b.name)}</text>`);
      yy += 18;
    });
    plot.lines.forEach((l, k) => {
      if (!l.name) return;
      out.push(`<line x1="${lx}" y1="${yy - 3}" x2="${lx + 20}" y2="${yy - 3}" stroke="${l.colour ?? PLOT_COLOURS[k % PLOT_COLOURS.length]}" stroke-width="${l.width ?? 1.5}"` +
        `${l.dash ? ` stroke-dasharray="${l.dash}"` : ''}/><text x="${lx + 26}" y="${yy + 1}">${escapeXml(l.name)}</text>`);
      yy += 18;
    });
    out.push('</g>');
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}

export interface LossCurveOptions extends PlotOptions {
  /** Also draw the trailing moving average over this many steps (0 or absent: none). */
  movingAverage?: number;
  /** Legend name of the raw series (default 'loss'). */
  name?: string;
}

/**
 * A single-series loss curve: the raw values (thin, light when a moving average is drawn) and optionally
 * their trailing moving average. `points` are {step, loss} rows (e.g. parsed from the step log CSV).
 */
export function lossCurveSvg(points: ReadonlyArray<{ step: number; loss: number }>, opts: LossCurveOptions = {}): string {
  if (points.length === 0) throw new Error('lossCurveSvg: no points');
  const x = points.map((p) => p.step), y = points.map((p) => p.loss);
  const name = opts.name ?? 'loss';
  const ma = opts.movingAverage ?? 0;
  const colour = PLOT_COLOURS[0];
  const lines: PlotLine[] = ma > 0
    ? [{ name, x, y, colour, width: 1, opacity: 0.35 }, { name: `${name} (moving average, ${ma} steps)`, x, y: movingAverage(y, ma), colour, width: 2 }]
    : [{ name, x, y, colour }];
  return linePlotSvg({ lines }, { xLabel: 'step', yLabel: name, ...opts });
}

/** One series of a spread plot: several runs (e.g. seeds), each its own x and y. */
export interface SpreadSeries {
  name: string;
  runs: ReadonlyArray<{ x: readonly number[]; y: readonly number[] }>;
  colour?: string;
}

/**
 * Per x value over the runs that have it (finite values only): mean, min, max and (population) standard
 * deviation, with the count. Runs sampled at the same x values give one entry per x.
 */
export function spreadStats(runs: SpreadSeries['runs']): Array<{ x: number; mean: number; min: number; max: number; std: number; n: number }> {
  const byX = new Map<number, number[]>();
  runs.forEach((r, k) => {
    if (r.x.length !== r.y.length) throw new Error(`spreadStats: run ${k} has ${r.x.length} x values and ${r.y.length} y values`);
    r.x.forEach((x, i) => {
      const y = r.y[i]!;
      if (!Number.isFinite(x) || !Number.isFinite(y)) return;
      const list = byX.get(x) ?? [];
      list.push(y);
      byX.set(x, list);
    });
  });
  return [...byX.entries()].sort((a, b) => a[0] - b[0]).map(([x, v]) => {
    const mean = v.reduce((s, t) => s + t, 0) / v.length;
    const std = Math.sqrt(v.reduce((s, t) => s + (t - mean) ** 2, 0) / v.length);
    return { x, mean, min: Math.min(...v), max: Math.max(...v), std, n: v.length };
  });
}

export interface SpreadPlotOptions extends PlotOptions {
  /** The band around each mean line: min..max over runs (default) or mean +- one standard deviation. */
  band?: 'minmax' | 'std';
  /** Also draw each run thinly (default false). */
  showRuns?: boolean;
}

/** Multi-series plot: per series a mean line over its runs and a band (min/max or +-std), with a legend. */
export function spreadPlotSvg(series: readonly SpreadSeries[], opts: SpreadPlotOptions = {}): string {
  if (series.length === 0) throw new Error('spreadPlotSvg: no series');
  const band = opts.band ?? 'minmax';
  if (band !== 'minmax' && band !== 'std') throw new Error(`spreadPlotSvg: band must be 'minmax' or 'std', found '${String(band)}'`);
  const lines: PlotLine[] = [], bands: PlotBand[] = [];
  series.forEach((s, k) => {
    if (s.runs.length === 0) throw new Error(`spreadPlotSvg: series '${s.name}' has no runs`);
    const colour = s.colour ?? PLOT_COLOURS[k % PLOT_COLOURS.length]!;
    const st = spreadStats(s.runs);
    const x = st.map((p) => p.x);
    const label = `${s.name} (mean of ${s.runs.length}${band === 'minmax' ? ', min-max' : ', +-1 std'})`;
    bands.push({ x, lo: st.map((p) => (band === 'minmax' ? p.min : p.mean - p.std)), hi: st.map((p) => (band === 'minmax' ? p.max : p.mean + p.std)), colour });
    if (opts.showRuns) for (const r of s.runs) lines.push({ x: r.x, y: r.y, colour, width: 0.75, opacity: 0.4 });
    lines.push({ name: label, x, y: st.map((p) => p.mean), colour, width: 2 });
  });
  return linePlotSvg({ lines, bands }, opts);
}
