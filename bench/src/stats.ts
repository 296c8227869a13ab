// Summary statistics of timing samples: median and spread (min/max and the interquartile range).

export interface SampleStats {
  n: number;
  median: number;
  mean: number;
  min: number;
  max: number;
  /** First and third quartiles (linear interpolation between order statistics, numpy's default). */
  q1: number;
  q3: number;
}

function quantile(sorted: readonly number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function sampleStats(samples: readonly number[]): SampleStats {
  if (samples.length === 0) throw new Error('sampleStats: no samples');
  const s = [...samples].sort((a, b) => a - b);
  return {
    n: s.length,
    median: quantile(s, 0.5),
    mean: s.reduce((a, b) => a + b, 0) / s.length,
    min: s[0]!,
    max: s[s.length - 1]!,
    q1: quantile(s, 0.25),
    q3: quantile(s, 0.75),
  };
}
