// Progress of a sampling loop. On a terminal: one self-rewriting line with a bar, the step, it/s and
// the ETA. Elsewhere (pipes, CI logs): nothing per step, so the output stays quiet and parseable;
// the caller prints one result line at the end.

export interface ProgressReporter {
  /** Called after step `done` of `total` finished. */
  update(done: number, total: number): void;
  /** Finish the line (terminal) and return the loop's wall time in seconds. */
  finish(): number;
}

/** Seconds as "1m05s" / "12s". */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const r = Math.round(s);
  return r >= 60 ? `${Math.floor(r / 60)}m${String(r % 60).padStart(2, '0')}s` : `${r}s`;
}

/** The progress line for `done` of `total` steps after `elapsed` seconds. */
export function progressLine(done: number, total: number, elapsed: number, width = 24): string {
  const filled = Math.round((done / total) * width);
  const rate = elapsed > 0 ? done / elapsed : 0;
  const eta = rate > 0 ? (total - done) / rate : Infinity;
  const itS = rate >= 1 ? `${rate.toFixed(2)} it/s` : rate > 0 ? `${(1 / rate).toFixed(2)} s/it` : '- it/s';
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] step ${done}/${total}  ${itS}  ETA ${formatDuration(eta)}`;
}

export interface ProgressStream {
  isTTY?: boolean;
  write(s: string): boolean;
}

export function createProgress(stream: ProgressStream, now: () => number = () => performance.now()): ProgressReporter {
  const t0 = now();
  let drew = false;
  return {
    update(done, total) {
      if (!stream.isTTY) return;
      stream.write(`\r${progressLine(done, total, (now() - t0) / 1000)}\x1b[K`);
      drew = true;
    },
    finish() {
      if (drew) stream.write('\n');
      return (now() - t0) / 1000;
    },
  };
}
