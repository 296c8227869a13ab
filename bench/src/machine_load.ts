// The machine's state around a benchmark run, recorded with the results: CPU model, core count and the
// load averages (1, 5, 15 min) before the run and after it. A benchmark on a loaded machine measures the
// other processes as much as the code: the warnings below say when the numbers should not be trusted.

import { cpus, loadavg } from 'node:os';

export interface LoadSnapshot {
  /** 1, 5 and 15 minute load averages (0 where the OS has none, e.g. Windows). */
  loadAverage: [number, number, number];
  at: string;
}

export interface MachineLoad {
  cpu: string;
  cores: number;
  before: LoadSnapshot;
  after: LoadSnapshot;
}

export function loadSnapshot(now = new Date()): LoadSnapshot {
  const [a = 0, b = 0, c = 0] = loadavg();
  return { loadAverage: [a, b, c], at: now.toISOString() };
}

export function machineCpu(): { cpu: string; cores: number } {
  const c = cpus();
  return { cpu: c[0]?.model.trim() ?? 'unknown', cores: c.length };
}

/**
 * Warnings about the load: before the run, the 1-minute load average above half the cores means other
 * processes were busy; after it, the run's own threads (`ownThreads`: the backend's compute threads) are
 * in the average too, so the margin is counted above them.
 */
export function loadWarnings(m: MachineLoad, ownThreads: number): string[] {
  const out: string[] = [];
  const fmt = (l: number) => l.toFixed(2);
  const busy = 0.5 * m.cores;
  if (m.before.loadAverage[0] > busy) {
    out.push(`the machine was busy before the run: load average ${fmt(m.before.loadAverage[0])} on ${m.cores} cores ` +
      `(over ${fmt(busy)}); other processes share the CPU and the timings are unreliable`);
  }
  const afterLimit = Math.min(ownThreads, m.cores) + busy;
  if (m.after.loadAverage[0] > afterLimit) {
    out.push(`the machine was busy during the run: load average ${fmt(m.after.loadAverage[0])} after it on ${m.cores} cores ` +
      `(this run's ${Math.min(ownThreads, m.cores)} thread(s) + ${fmt(busy)} allowed); the timings are unreliable`);
  }
  return out;
}
