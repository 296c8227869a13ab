// `node bench/dist/svd/main.js`: the per-step cost of ControlNeXt-SVD over Stable Video Diffusion's UNet
// alone, reference path (the repo's: module on the CFG-doubled frames, whole module every step) vs ours
// (module once per window on the F frames, prefix cached), with FLOPs COUNTED from the same code on a
// shape-only backend (counting_backend.ts). One step = one window of F frames under CFG (UNet batch 2F).
// Timing is round-robin over configurations (warm-up rounds untimed), wall time per step to queue drain.
// Writes bench/results/svd-<backend>-<W>x<H>x<F>.json and prints a table. --flops-only counts without
// running (any size, no device needed). --help lists the flags.

import { mkdirSync, writeFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBackend } from '@cnx/kernels';
import { maxBindingBytes } from '@cnx/unet';
import { RandomWeights, ShapeRecorder, type Backend, type WeightSource } from '@cnx/tensor';
import { CountingBackend } from './counting_backend.js';
import {
  buildSvdModels, disposeSvdInputs, makeSvdInputs, SVD_CONFIG_IDS, SVD_LABELS, svdRunner, type SvdConfigId, type SvdGeometry,
} from './svd_step.js';

const RESULTS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'results');

const HELP = `usage: node bench/dist/svd/main.js [options]

Per-step overhead of ControlNeXt-SVD (v2, v1) over the SVD-xt UNet, reference path vs ours, with
counted FLOPs. Real architectures, random weights. One step = one window of F frames under CFG.

  --backend NAME           cpu (float64 reference), wasm (fast CPU), webgpu (default cpu)   --adapter NAME
  --width PX --height PX   (default 64 x 64; 576 x 1024 is ControlNeXt-SVD-v2's size)
  --frames N               frames per window (default 4; the v1 script uses 14)
  --steps N --warmup N     timed and warm-up rounds (default 2 and 1)
  --configs LIST           subset of ${SVD_CONFIG_IDS.join(',')} (default svd-base,svd-v2-ref,svd-v2-ours)
  --fp16                   16-bit weight storage (halves the 6 GB of the f32 UNet; widening per op is timed too)
  --flops-only             count FLOPs and memory only, at any size, without running
  --out DIR                results folder (default bench/results)`;

interface Opts {
  backend: string; adapter?: string; width: number; height: number; frames: number; steps: number; warmup: number;
  configs: SvdConfigId[]; fp16: boolean; flopsOnly: boolean; out: string;
}

function parse(argv: readonly string[]): Opts | undefined {
  const o: Opts = {
    backend: 'cpu', width: 64, height: 64, frames: 4, steps: 2, warmup: 1,
    configs: ['svd-base', 'svd-v2-ref', 'svd-v2-ours'], fp16: false, flopsOnly: false, out: RESULTS_DIR,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!, next = () => { const v = argv[++i]; if (v === undefined) throw new Error(`${a} needs a value`); return v; };
    const int = (lo: number) => { const v = Number(next()); if (!Number.isInteger(v) || v < lo) throw new Error(`${a} must be an integer >= ${lo}`); return v; };
    switch (a) {
      case '--help': case '-h': return undefined;
      case '--backend': o.backend = next(); break;
      case '--adapter': o.adapter = next(); break;
      case '--width': o.width = int(64); break;
      case '--height': o.height = int(64); break;
      case '--frames': o.frames = int(1); break;
      case '--steps': o.steps = int(1); break;
      case '--warmup': o.warmup = int(0); break;
      case '--configs': {
        const list = next().split(',');
        for (const c of list) if (!(SVD_CONFIG_IDS as readonly string[]).includes(c)) throw new Error(`--configs: unknown '${c}' (known: ${SVD_CONFIG_IDS.join(', ')})`);
        o.configs = list as SvdConfigId[];
        break;
      }
      case '--fp16': o.fp16 = true; break;
      case '--flops-only': o.flopsOnly = true; break;
      case '--out': o.out = resolve(next()); break;
      default: throw new Error(`unknown option ${a} (see --help)`);
    }
  }
  for (const [k, v] of [['width', o.width], ['height', o.height]] as const) if (v % 64 !== 0) throw new Error(`--${k} must be a multiple of 64 (8 px per latent x 8 for the UNet's three downsamplings), found ${v}`);
  if (!o.configs.includes('svd-base')) o.configs.unshift('svd-base');
  return o;
}

export interface SvdCount {
  stepFlops: number;
  prefixFlops: number;
  /** Peak bytes of activations during a step (above the weights), and the largest single tensor. */
  stepPeakBytes: number;
  largestTensorBytes: number;
  largestTensorShape: number[];
  weightBytes: number;
}

/** FLOPs and memory of each configuration at geometry g, counted on the shape-only backend. */
export function countSvd(g: SvdGeometry, ids: readonly SvdConfigId[], fp16: boolean): Map<SvdConfigId, SvdCount> {
  const out = new Map<SvdConfigId, SvdCount>();
  for (const id of ids) {
    const b = new CountingBackend();
    const recs = new Map<number, ShapeRecorder>();
    const m = buildSvdModels(b, (k) => { const r = recs.get(k) ?? new ShapeRecorder(); recs.set(k, r); return r; }, [id]);
    const x = makeSvdInputs(b, g);
    const weightBytes = 4 * recs.get(1)!.parameterCount() * (fp16 ? 0.5 : 1);
    const r = svdRunner(id, m, x, b);
    b.resetCounts();
    r.prepare?.();
    const prefixFlops = b.flops();
    b.resetCounts();
    b.resetPeak();
    const base = b.memory().liveBytes;
    b.largest = { bytes: 0, shape: [] };
    r.step(0.25 * Math.log(20)).dispose();
    out.set(id, {
      stepFlops: b.flops(), prefixFlops, stepPeakBytes: b.memory().peakBytes - base, largestTensorBytes: b.largest.bytes,
      largestTensorShape: b.largest.shape, weightBytes,
    });
    r.dispose();
  }
  return out;
}

const GiB = 2 ** 30;
const fmtG = (f: number) => (f / 1e9).toFixed(1);
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2; };

async function main(argv: readonly string[]): Promise<number> {
  let o: Opts | undefined;
  try {
    o = parse(argv);
  } catch (e) {
    process.stderr.write(`svd bench: error: ${(e as Error).message}\n`);
    return 2;
  }
  if (!o) { process.stdout.write(HELP + '\n'); return 0; }
  const g: SvdGeometry = { height: o.height, width: o.width, frames: o.frames };
  const counts = countSvd(g, o.configs, o.fp16);
  const base = counts.get('svd-base')!;
  const res = `${o.width}x${o.height} (WxH) x ${o.frames} frames, UNet batch ${2 * o.frames}`;
  process.stderr.write(`counted: base ${fmtG(base.stepFlops)} GFLOP/step, weights ${(base.weightBytes / GiB).toFixed(2)} GiB (UNet), step activations peak ${(base.stepPeakBytes / GiB).toFixed(2)} GiB\n`);

  const record: Record<string, unknown> = {
    what: 'ControlNeXt-SVD per-step overhead over the SVD-xt UNet (one window, CFG), real architectures, random weights',
    geometry: g, fp16: o.fp16, date: new Date().toISOString(), node: process.version,
    configs: Object.fromEntries([...counts].map(([id, c]) => [id, {
      label: SVD_LABELS[id], stepGflop: c.stepFlops / 1e9, prefixGflop: c.prefixFlops / 1e9,
      flopOverheadPct: (100 * (c.stepFlops - base.stepFlops)) / base.stepFlops, largestTensorBytes: c.largestTensorBytes,
      largestTensorShape: c.largestTensorShape, stepPeakBytes: c.stepPeakBytes,
    }])),
  };
  if (!o.flopsOnly) {
    const backend: Backend = await createBackend(o.backend, { adapter: o.adapter, weightDtype: o.fp16 ? 'f16' : 'f32' });
    process.stderr.write(`backend: ${backend.description}\n`);
    record['backend'] = backend.description;
    try {
      const limit = maxBindingBytes(backend);
      for (const [id, c] of counts) {
        if (c.largestTensorBytes > limit) throw new Error(`${id}: ${res} needs a ${(c.largestTensorBytes / GiB).toFixed(2)} GiB tensor [${c.largestTensorShape.join(', ')}], above this adapter's maxStorageBufferBindingSize of ${(limit / GiB).toFixed(2)} GiB; use fewer --frames or a smaller size`);
      }
      const need = base.weightBytes * 1.1 + Math.max(...[...counts.values()].map((c) => c.stepPeakBytes));
      if (backend.name !== 'webgpu' && need > totalmem()) throw new Error(`${res} needs about ${(need / GiB).toFixed(1)} GiB of host memory, this machine has ${(totalmem() / GiB).toFixed(1)} GiB; try --fp16 or a smaller size`);
      const ws = (k: number): WeightSource => new RandomWeights({ seed: k }); // 16-bit storage: the backend's weightDtype
      process.stderr.write('building models (random weights)...\n');
      const models = buildSvdModels(backend, ws, o.configs);
      const inputs = makeSvdInputs(backend, g);
      const runners = new Map(o.configs.map((id) => [id, svdRunner(id, models, inputs, backend)] as const));
      const prefixMs = new Map<SvdConfigId, number>();
      for (const [id, r] of runners) {
        if (!r.prepare) continue;
        const t0 = performance.now();
        r.prepare();
        await backend.sync();
        prefixMs.set(id, performance.now() - t0);
      }
      // Wall time to queue drain; on the CPU backend also the process CPU time (all threads), which other
      // processes on a shared machine disturb far less than the wall clock.
      const times = new Map<SvdConfigId, number[]>(o.configs.map((id) => [id, []]));
      const cpuTimes = new Map<SvdConfigId, number[]>(o.configs.map((id) => [id, []]));
      for (let round = 0; round < o.warmup + o.steps; round++) {
        for (const [id, r] of runners) {
          const t = 0.25 * Math.log(700 / (1 + 30 * round));
          const c0 = process.cpuUsage();
          const t0 = performance.now();
          const y = r.step(t);
          await backend.sync();
          const ms = performance.now() - t0;
          const cu = process.cpuUsage(c0);
          const cpuMs = (cu.user + cu.system) / 1000;
          y.dispose();
          if (round >= o.warmup) { times.get(id)!.push(ms); cpuTimes.get(id)!.push(cpuMs); }
          process.stderr.write(`${round < o.warmup ? 'warm-up' : 'timed'} round ${round + 1}: ${id} ${ms.toFixed(0)} ms wall, ${cpuMs.toFixed(0)} ms CPU\n`);
        }
      }
      const baseMs = median(times.get('svd-base')!), baseCpu = median(cpuTimes.get('svd-base')!);
      for (const id of o.configs) {
        const c = (record['configs'] as Record<string, Record<string, unknown>>)[id]!;
        const ms = median(times.get(id)!), cpu = median(cpuTimes.get(id)!);
        Object.assign(c, {
          msPerStep: ms, samplesMs: times.get(id), overheadPct: (100 * (ms - baseMs)) / baseMs, prefixMs: prefixMs.get(id),
          ...(backend.name !== 'webgpu' ? { cpuMsPerStep: cpu, cpuSamplesMs: cpuTimes.get(id), cpuOverheadPct: (100 * (cpu - baseCpu)) / baseCpu } : {}),
        });
      }
      runners.forEach((r) => r.dispose());
      disposeSvdInputs(inputs);
      models.unet.dispose(); models.v1?.dispose(); models.v2?.dispose();
    } finally {
      backend.destroy();
    }
  }
  const cfgs = record['configs'] as Record<string, Record<string, number | string>>;
  const rows = o.configs.map((id) => {
    const c = cfgs[id]!;
    const t = typeof c['msPerStep'] === 'number' ? `${(c['msPerStep'] as number).toFixed(0)} ms` : '-';
    const pct = (k: string) => (typeof c[k] === 'number' ? `${(c[k] as number) >= 0 ? '+' : ''}${(c[k] as number).toFixed(1)} %` : '-');
    const ov = pct('overheadPct');
    const cpu = typeof c['cpuMsPerStep'] === 'number' ? ` | ${((c['cpuMsPerStep'] as number) / 1000).toFixed(1)} s | ${pct('cpuOverheadPct')}` : '';
    const fo = id === 'svd-base' ? '-' : `+${(c['flopOverheadPct'] as number).toFixed(1)} %`;
    const pre = (c['prefixGflop'] as number) > 0 ? `${(c['prefixGflop'] as number).toFixed(1)} GFLOP` : '-';
    return `| ${SVD_LABELS[id]} | ${(c['stepGflop'] as number).toFixed(1)} | ${fo} | ${pre} | ${t} | ${ov}${cpu} |`;
  });
  const cpuCols = typeof cfgs['svd-base']?.['cpuMsPerStep'] === 'number';
  const table = [`SVD per-step cost, ${res}${record['backend'] ? `, ${record['backend']}` : ' (counted only)'}`, '',
    `| configuration | GFLOP/step | FLOP overhead | prefix (once) | time/step | overhead |${cpuCols ? ' CPU time/step | CPU-time overhead |' : ''}`,
    `|---|---:|---:|---:|---:|---:|${cpuCols ? '---:|---:|' : ''}`, ...rows].join('\n');
  process.stdout.write(table + '\n');
  mkdirSync(o.out, { recursive: true });
  const file = join(o.out, `svd-${o.flopsOnly ? 'flops' : o.backend}-${o.width}x${o.height}x${o.frames}.json`);
  writeFileSync(file, JSON.stringify({ ...record, table }, null, 2) + '\n');
  process.stderr.write(`wrote ${file}\n`);
  return 0;
}

main(process.argv.slice(2)).then((c) => { process.exitCode = c; }, (e: Error) => {
  process.stderr.write(`svd bench: error: ${e.message}\n`);
  process.exitCode = 1;
});
