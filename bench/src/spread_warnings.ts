// Is an overhead larger than the noise? Each configuration's overhead is the difference of two medians;
// when the spread of either configuration's samples (max - min, relative to its median) is as large as
// the overhead itself, the sign and size of that overhead are not established by the samples. The bench
// prints a warning per such configuration (and records it), instead of a bare negative or tiny number.

import { sampleStats } from './stats.js';

export interface SpreadInput {
  id: string;
  label: string;
  samplesMs: readonly number[];
  overheadPct: number;
  /** The configuration's extra analytic FLOPs over the base, in % (a configuration doing more work cannot be faster). */
  flopOverheadPct?: number;
}

/** Fewer timed steps than this and the spread cannot show the noise (one or two samples). */
export const MIN_STEPS_FOR_SPREAD = 3;

/** Relative spread of samples in % of their median: 100 * (max - min) / median. */
export function relativeSpreadPct(samples: readonly number[]): number {
  const s = sampleStats(samples);
  return s.median > 0 ? (100 * (s.max - s.min)) / s.median : Infinity;
}

/**
 * One warning per non-base configuration whose |overhead| is not larger than the spread of its or the
 * base's samples; one per configuration that adds work yet measured faster than the base; and one when
 * there are too few samples for the spread to mean anything.
 */
export function spreadWarnings(base: SpreadInput, others: readonly SpreadInput[]): string[] {
  const baseSpread = relativeSpreadPct(base.samplesMs);
  const out: string[] = [];
  if (base.samplesMs.length < MIN_STEPS_FOR_SPREAD) {
    out.push(`only ${base.samplesMs.length} timed step(s) per configuration: the spread cannot show the noise; use --steps ${MIN_STEPS_FOR_SPREAD} or more`);
  }
  for (const v of others) {
    if (v.overheadPct < 0 && (v.flopOverheadPct ?? 0) > 0) {
      out.push(`${v.id}: measured ${v.overheadPct.toFixed(1)} % against the base although it adds ${v.flopOverheadPct!.toFixed(1)} % FLOPs: noise, not a speed-up`);
    }
    const own = relativeSpreadPct(v.samplesMs);
    if (Math.abs(v.overheadPct) <= Math.max(own, baseSpread)) {
      out.push(`${v.id}: overhead ${v.overheadPct >= 0 ? '+' : ''}${v.overheadPct.toFixed(1)} % is within the spread of the samples ` +
        `(max-min: ${own.toFixed(1)} % of its median, base ${baseSpread.toFixed(1)} %, over ${v.samplesMs.length} steps); ` +
        'not established: run more --steps on a quiet machine');
    }
  }
  return out;
}
