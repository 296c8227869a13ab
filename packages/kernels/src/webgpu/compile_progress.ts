// Progress of shader compiles on slow adapters (issue 15: on SwiftShader `cnx generate` and the golden
// runner sat silent for about two minutes while the first step's pipelines compiled). The WebGPU backend
// compiles asynchronously and records commands meanwhile (webgpu_backend.ts), so a sampling loop's steps
// are all queued at once and the wait happens at the first read; this module watches the backend's
// compile counters and reports "compiling GPU pipelines N/M" while compiles are outstanding.
// Browser-safe (timers only); any backend without compileStatus reports nothing.

import type { CompileStatus } from './pipeline_cache.js';

export interface CompileProgress extends CompileStatus {
  /** Seconds since compiles became outstanding (this burst). */
  seconds: number;
  /** The burst is over: every requested compile has settled. */
  done: boolean;
}

interface HasCompileStatus { readonly compileStatus: CompileStatus }

function hasCompileStatus(b: object): b is HasCompileStatus {
  return 'compileStatus' in b;
}

/**
 * Poll `backend`'s compile counters every `intervalMs` and call `report` while compiles are outstanding,
 * and once when a burst ends. Returns stop(). The timer does not keep a Node process alive.
 */
export function watchCompiles(backend: object, report: (p: CompileProgress) => void, intervalMs = 500): () => void {
  if (!hasCompileStatus(backend)) return () => undefined;
  let since: number | undefined;
  const poll = () => {
    const s = backend.compileStatus;
    const outstanding = s.settled < s.requested;
    if (outstanding) {
      since ??= performance.now();
      report({ ...s, seconds: (performance.now() - since) / 1000, done: false });
    } else if (since !== undefined) {
      report({ ...s, seconds: (performance.now() - since) / 1000, done: true });
      since = undefined;
    }
  };
  const timer = setInterval(poll, intervalMs) as { unref?: () => void };
  timer.unref?.();
  return () => clearInterval(timer as Parameters<typeof clearInterval>[0]);
}

export interface TextStream {
  isTTY?: boolean;
  write(s: string): boolean;
}

/**
 * A report function for watchCompiles writing to a text stream. On a terminal: one self-rewriting line
 * "compiling GPU pipelines N/M (Ss)" cleared when done. Elsewhere (logs): a line once compiles have
 * been outstanding for `quietSeconds`, then every `everySeconds`, and a summary when that burst ends.
 */
export function compileProgressPrinter(stream: TextStream, opts: { quietSeconds?: number; everySeconds?: number } = {}): (p: CompileProgress) => void {
  const quiet = opts.quietSeconds ?? 2, every = opts.everySeconds ?? 10;
  let lastLine = -Infinity, printed = false;
  return (p) => {
    const text = `compiling GPU pipelines ${p.settled}/${p.requested} (${Math.round(p.seconds)} s; shaders compile slowly on software adapters)`;
    if (stream.isTTY) {
      if (p.done) {
        if (printed) stream.write('\r\x1b[K');
        printed = false;
      } else if (p.seconds >= quiet) {
        stream.write(`\r${text}\x1b[K`);
        printed = true;
      }
      return;
    }
    if (p.done) {
      if (printed) stream.write(`compiled ${p.requested} GPU pipelines in ${Math.round(p.seconds)} s\n`);
      printed = false;
      lastLine = -Infinity;
      return;
    }
    if (p.seconds >= quiet && p.seconds - lastLine >= every) {
      stream.write(`${text}\n`);
      lastLine = p.seconds;
      printed = true;
    }
  };
}
