// Progress on stderr while the benchmark runs (stdout stays the result table). On a terminal one line
// is rewritten in place; otherwise (CI logs, pipes) each update is its own line.

export class Progress {
  private readonly tty = process.stderr.isTTY === true;
  private readonly t0 = performance.now();
  private last = '';

  constructor(private readonly quiet = false) {}

  update(msg: string): void {
    if (this.quiet) return;
    const line = `[${((performance.now() - this.t0) / 1000).toFixed(1).padStart(6)} s] ${msg}`;
    if (this.tty) {
      process.stderr.write(`\r\x1b[2K${line}`);
      this.last = line;
    } else {
      process.stderr.write(`${line}\n`);
    }
  }

  /** A line that stays (a finished stage). */
  log(msg: string): void {
    if (this.quiet) return;
    if (this.tty && this.last) process.stderr.write('\r\x1b[2K');
    this.last = '';
    process.stderr.write(`[${((performance.now() - this.t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
  }

  done(): void {
    if (this.tty && this.last) process.stderr.write('\r\x1b[2K');
    this.last = '';
  }
}
