// The convergence experiment's output files (issue 12): results.json (every number), fidelity.svg (held-out
// IoU against step, mean and min-max band over seeds, both arms, with the no-control floor and the codec
// ceiling), loss.svg, base_loss.svg + base_training_log.csv (the base model's training log),
// base_samples.png (prompt-only base generations: rows shapes, columns colours), control_grid.png (held-out
// rows: control | target | base without control | cross_norm | zero_conv, seed 0 at the last step),
// summary.md (the tables) and base_unet.safetensors (the base model, ~0.8 MB, for --base-from; not
// rewritten by a --base-from run).

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeSafetensors, type SafetensorsEntry } from '@cnx/tensor';
import {
  SHAPE_COLOUR_NAMES, SHAPE_KINDS, lossCurveSvg, movingAverage, rgbBytesToImage, spreadPlotSvg, spreadStats, stepLogToCsv, writePng,
} from '@cnx/controlnext';
import type { ConvergenceResults, EvalPoint, ExperimentArtifacts } from './convergence_experiment.js';

/** IoU levels whose first crossing is reported per run. */
export const IOU_THRESHOLDS = [0.3, 0.5, 0.7] as const;

/** The first eval step whose held-out IoU reaches `level`, or null. */
export function stepsToReach(evals: ReadonlyArray<{ step: number; meanIoU: number }>, level: number): number | null {
  return evals.find((e) => e.meanIoU >= level)?.step ?? null;
}

/** Per arm and eval step: mean, std, min, max over seeds of a per-eval value (default: the held-out mean IoU). */
export function fidelityStats(r: ConvergenceResults, value: (e: EvalPoint) => number = (e) => e.meanIoU): Record<string, ReturnType<typeof spreadStats>> {
  return Object.fromEntries(Object.entries(r.arms).map(([arm, runs]) => [arm, spreadStats(runs.map((run) => ({ x: run.evals.map((e) => e.step), y: run.evals.map(value) })))]));
}

/** IoU with the right controls minus IoU with the shifted ones (EvalPoint.shuffledMeanIoU). */
export const controlGain = (e: EvalPoint): number => e.meanIoU - e.shuffledMeanIoU;

/** Tile equally sized RGB byte images into rows x cols with a 2-pixel grey gutter. */
export function tileImages(rows: ReadonlyArray<ReadonlyArray<Uint8Array>>, size: number): { rgb: Uint8Array; height: number; width: number } {
  const gap = 2, nr = rows.length, nc = Math.max(...rows.map((r) => r.length));
  const H = nr * size + (nr + 1) * gap, W = nc * size + (nc + 1) * gap;
  const rgb = new Uint8Array(H * W * 3).fill(96);
  rows.forEach((row, r) => row.forEach((img, c) => {
    for (let y = 0; y < size; y++) {
      const o = ((gap + r * (size + gap) + y) * W + gap + c * (size + gap)) * 3;
      rgb.set(img.subarray(y * size * 3, (y + 1) * size * 3), o);
    }
  }));
  return { rgb, height: H, width: W };
}

function fmt(v: number | null | undefined, d = 3): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d);
}

export function summaryMarkdown(r: ConvergenceResults): string {
  const stats = fidelityStats(r);
  const lines: string[] = [];
  lines.push(`# Convergence experiment: results (generated)`, '');
  lines.push(`Command: \`${r.command}\``, '');
  lines.push(`Backend: ${r.backend}. Machine: ${r.machine.cpu}, ${r.machine.cores} cores; load average before ${r.machine.loadBefore.map((x) => x.toFixed(2)).join(' / ')}, after ${r.machine.loadAfter.map((x) => x.toFixed(2)).join(' / ')}.`, '');
  lines.push(`Wall time: ${fmt(r.wall.totalS / 60, 1)} min (base model ${fmt(r.wall.baseS / 60, 1)} min, control arms ${fmt(r.wall.armsS / 60, 1)} min).`, '');
  lines.push(`Held-out set: ${r.data.heldOut.count} samples (shapes seed ${r.data.heldOut.datasetSeed}), ${r.data.imageSize} px, control '${r.data.control}'. ` +
    `Codec ceiling IoU ${fmt(r.data.ceilingIoU.mean)} (min ${fmt(r.data.ceilingIoU.min)}); base model without control ${fmt(r.base.noControlIoU.mean)}.`, '');
  const b = r.base;
  lines.push(`Base model: ${b.trainedHere ? `${b.steps} steps, ${fmt(b.msPerStep, 0)} ms/step, loss first 50 ${fmt(b.lossFirst50, 4)} -> last 50 ${fmt(b.lossLast50, 4)}` : 'loaded (--base-from)'}; ` +
    `prompt-only grid of ${b.grid.prompts.length}: colour accuracy ${fmt(b.grid.colourAccuracy, 2)} (chance 0.125), shape accuracy ${fmt(b.grid.shapeAccuracy, 2)} (chance 0.20; ` +
    `${fmt(b.grid.shapeAccuracyGivenColour, 2)} where the colour is right; the recogniser scores ${fmt(r.data.ceilingShapeAccuracy, 2)} on the codec-reconstructed targets).`, '');
  lines.push(`## Held-out IoU (mean over ${r.data.heldOut.count} samples) per eval step: mean +- std over seeds [min, max]`, '');
  const arms = Object.keys(r.arms);
  lines.push(`| step | ${arms.join(' | ')} |`, `|---:|${arms.map(() => '---|').join('')}`);
  for (const step of r.evalSteps) {
    const cells = arms.map((a) => {
      const p = stats[a]!.find((s) => s.x === step);
      return p ? `${fmt(p.mean)} +- ${fmt(p.std)} [${fmt(p.min)}, ${fmt(p.max)}] (n=${p.n})` : '-';
    });
    lines.push(`| ${step} | ${cells.join(' | ')} |`);
  }
  const gain = fidelityStats(r, controlGain), shuffled = fidelityStats(r, (e) => e.shuffledMeanIoU);
  lines.push('', `## Control gain: IoU with the right controls minus IoU with controls shifted by one sample (mean +- std over seeds [min, max]); the shifted-control IoU in brackets`, '');
  lines.push(`| step | ${arms.join(' | ')} |`, `|---:|${arms.map(() => '---|').join('')}`);
  for (const step of r.evalSteps) {
    const cells = arms.map((a) => {
      const p = gain[a]!.find((s) => s.x === step), q = shuffled[a]!.find((s) => s.x === step);
      return p && q ? `${fmt(p.mean)} +- ${fmt(p.std)} [${fmt(p.min)}, ${fmt(p.max)}] (shifted ${fmt(q.mean)})` : '-';
    });
    lines.push(`| ${step} | ${cells.join(' | ')} |`);
  }
  lines.push('', `## First eval step reaching a held-out IoU level, per seed (- = not within ${r.options.steps} steps)`, '');
  lines.push(`| arm | ${IOU_THRESHOLDS.map((t) => `IoU >= ${t}`).join(' | ')} |`, `|---|${IOU_THRESHOLDS.map(() => '---|').join('')}`);
  for (const a of arms) {
    lines.push(`| ${a} | ${IOU_THRESHOLDS.map((t) => r.arms[a]!.map((run) => stepsToReach(run.evals, t) ?? '-').join(', ')).join(' | ')} |`);
  }
  lines.push('', '## Per run', '', '| arm | seed | final IoU | best IoU | train ms/step | loss first 10 | loss last 25 | wall s |', '|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const a of arms) {
    for (const run of r.arms[a]!) {
      const m = (v: number[]) => v.reduce((x, y) => x + y, 0) / Math.max(1, v.length);
      lines.push(`| ${a} | ${run.seed} | ${fmt(run.evals.at(-1)?.meanIoU)} | ${fmt(Math.max(...run.evals.map((e) => e.meanIoU)))} | ${fmt(run.trainMsPerStep, 0)} | ${fmt(m(run.losses.slice(0, 10)), 4)} | ${fmt(m(run.losses.slice(-25)), 4)} | ${fmt(run.wallS, 0)} |`);
    }
  }
  return lines.join('\n') + '\n';
}

/** Write every output file of the experiment into `dir`; returns the file names. */
export function writeConvergenceOutputs(dir: string, a: ExperimentArtifacts): string[] {
  mkdirSync(dir, { recursive: true });
  const r = a.results;
  const files: Record<string, string | Uint8Array> = {};
  files['results.json'] = JSON.stringify(r, (_k, v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(6)) : v), 1) + '\n';
  files['summary.md'] = summaryMarkdown(r);
  const stepsX = [0, r.options.steps];
  const ref = (name: string, y: number, colour: string) => ({ name, colour, runs: [{ x: stepsX, y: [y, y] }] });
  files['fidelity.svg'] = spreadPlotSvg([
    { name: 'cross normalisation (ControlNeXt)', colour: '#1f77b4', runs: r.arms.cross_norm!.map((run) => ({ x: run.evals.map((e) => e.step), y: run.evals.map((e) => e.meanIoU) })) },
    { name: 'zero convolution (ControlNet-style)', colour: '#ff7f0e', runs: r.arms.zero_conv!.map((run) => ({ x: run.evals.map((e) => e.step), y: run.evals.map((e) => e.meanIoU) })) },
    ref('codec ceiling', r.data.ceilingIoU.mean, '#2ca02c'),
    ref('base model, no control', r.base.noControlIoU.mean, '#7f7f7f'),
  ], { title: `Held-out shape IoU vs control training step (${r.options.seeds} seeds, ${r.data.heldOut.count} samples)`, xLabel: 'control training step', yLabel: 'mean IoU vs control mask', yRange: [0, 1], showRuns: true });
  files['control_gain.svg'] = spreadPlotSvg(Object.entries(r.arms).map(([arm, runs]) => ({
    name: arm === 'cross_norm' ? 'cross normalisation (ControlNeXt)' : 'zero convolution (ControlNet-style)', colour: arm === 'cross_norm' ? '#1f77b4' : '#ff7f0e',
    runs: runs.map((run) => ({ x: run.evals.map((e) => e.step), y: run.evals.map(controlGain) })),
  })), { title: 'Control gain: IoU(right control) - IoU(control of another sample)', xLabel: 'control training step', yLabel: 'IoU gain', showRuns: true });
  const window = Math.max(1, Math.min(10, Math.floor(r.options.steps / 10)));
  files['loss.svg'] = spreadPlotSvg(Object.entries(r.arms).map(([arm, runs]) => ({
    name: arm, runs: runs.map((run) => ({ x: run.losses.map((_, i) => i), y: movingAverage(run.losses, window) })),
  })), { title: `Control training loss (moving average over ${window} steps)`, xLabel: 'step', yLabel: 'MSE (epsilon)' });
  if (a.baseLog.length) {
    files['base_training_log.csv'] = stepLogToCsv(a.baseLog.map((row) => ({ ...row })));
    files['base_loss.svg'] = lossCurveSvg(a.baseLog, { title: 'Base model training loss (all UNet parameters)', movingAverage: Math.max(1, Math.min(50, Math.floor(a.baseLog.length / 10))), logY: true });
  }
  if (r.base.trainedHere) {
    // A --base-from run does not write its (unchanged) input again.
    const entries: Record<string, SafetensorsEntry> = {};
    for (const [k, w] of a.baseWeights) entries[k] = { dtype: 'F32', shape: w.shape, data: w.data };
    files['base_unet.safetensors'] = encodeSafetensors(entries, { format: 'pt', note: 'convergence experiment base UNet (bench/src/convergence/base_model.ts)' });
  }
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);

  const S = r.data.imageSize;
  // Base prompt grid: rows SHAPE_KINDS, columns SHAPE_COLOUR_NAMES (the order the experiment generated).
  const nC = SHAPE_COLOUR_NAMES.length;
  const grid = tileImages(SHAPE_KINDS.map((_, i) => a.images.baseGrid.slice(i * nC, (i + 1) * nC)), S);
  writePng(join(dir, 'base_samples.png'), rgbBytesToImage(grid.rgb, grid.height, grid.width));
  const rows = a.images.heldOut.slice(0, 8).map((s, i) => {
    const row = [s.control, s.target, a.images.noControl[i]!];
    for (const arm of ['cross_norm', 'zero_conv']) { const im = a.images.finalBySeed0[arm]?.[i]; if (im) row.push(im); }
    return row;
  });
  const cg = tileImages(rows, S);
  writePng(join(dir, 'control_grid.png'), rgbBytesToImage(cg.rgb, cg.height, cg.width));
  return [...Object.keys(files), 'base_samples.png', 'control_grid.png'];
}
