// Where a benchmark ran: recorded with every result so numbers are never compared across machines blindly.

import { execFileSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';

export interface RunEnvironment {
  date: string;
  gitCommit: string;
  gitDirty: boolean;
  node: string;
  platform: string;
  cpu: string;
  cpuCores: number;
  hostMemoryBytes: number;
}

function git(args: string[]): string | undefined {
  try {
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

export function runEnvironment(): RunEnvironment {
  const c = cpus();
  return {
    date: new Date().toISOString(),
    // CNX_GIT_COMMIT: for copies of the tree without .git (e.g. a remote benchmark machine).
    gitCommit: git(['rev-parse', 'HEAD']) ?? process.env.CNX_GIT_COMMIT ?? 'unknown (not a git checkout)',
    gitDirty: (git(['status', '--porcelain', '--untracked-files=no']) ?? '') !== '',
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpu: c[0]?.model ?? 'unknown',
    cpuCores: c.length,
    hostMemoryBytes: totalmem(),
  };
}
