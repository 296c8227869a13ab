// Scheduler construction by diffusers class name (as in a scheduler_config.json's `_class_name`) or by
// the short names the CLI accepts. A short name may fix some keys (e.g. `dpmpp_2m_karras` sets
// use_karras_sigmas), the rest come from the model's scheduler config, as diffusers'
// `XScheduler.from_config(pipe.scheduler.config, **overrides)` does.

import { DDIMScheduler } from './ddim.js';
import { DPMSolverMultistepScheduler } from './dpm_solver_multistep.js';
import { EulerDiscreteScheduler } from './euler.js';
import { EulerAncestralDiscreteScheduler } from './euler_ancestral.js';
import { PNDMScheduler } from './pndm.js';
import type { Scheduler, SchedulerClassName } from './scheduler.js';
import type { SchedulerConfigJson } from './scheduler_config.js';
import { UniPCMultistepScheduler } from './unipc_multistep.js';

const constructors: Readonly<Record<SchedulerClassName, new (json: SchedulerConfigJson) => Scheduler>> = {
  DDIMScheduler,
  EulerDiscreteScheduler,
  EulerAncestralDiscreteScheduler,
  DPMSolverMultistepScheduler,
  PNDMScheduler,
  UniPCMultistepScheduler,
};

interface ShortName {
  className: SchedulerClassName;
  overrides: SchedulerConfigJson;
  description: string;
}

/** Short scheduler names (CLI `--scheduler`). */
export const SCHEDULER_NAMES: Readonly<Record<string, ShortName>> = {
  unipc: { className: 'UniPCMultistepScheduler', overrides: {}, description: 'UniPC bh2 (ControlNeXt default)' },
  ddim: { className: 'DDIMScheduler', overrides: {}, description: 'DDIM (eta 0)' },
  euler: { className: 'EulerDiscreteScheduler', overrides: {}, description: 'Euler' },
  euler_a: { className: 'EulerAncestralDiscreteScheduler', overrides: {}, description: 'Euler ancestral (stochastic)' },
  dpmpp_2m: {
    className: 'DPMSolverMultistepScheduler', overrides: { algorithm_type: 'dpmsolver++', solver_order: 2 }, description: 'DPM-Solver++ 2M',
  },
  dpmpp_2m_karras: {
    className: 'DPMSolverMultistepScheduler',
    overrides: { algorithm_type: 'dpmsolver++', solver_order: 2, use_karras_sigmas: true },
    description: 'DPM-Solver++ 2M with Karras sigmas',
  },
  pndm: { className: 'PNDMScheduler', overrides: { skip_prk_steps: true }, description: 'PNDM/PLMS (SD1.5 default)' },
};

export function isSchedulerClassName(name: string): name is SchedulerClassName {
  return Object.hasOwn(constructors, name);
}

/** A name createScheduler accepts: a short name (SCHEDULER_NAMES' own keys) or a class name. */
export function isSchedulerName(name: string): boolean {
  return Object.hasOwn(SCHEDULER_NAMES, name) || isSchedulerClassName(name);
}

/**
 * A scheduler by class name or short name, configured from `config` (a scheduler_config.json; keys the
 * class does not know are ignored). Unknown names are an error listing the known ones.
 */
export function createScheduler(name: string, config: SchedulerConfigJson = {}): Scheduler {
  if (isSchedulerClassName(name)) return new constructors[name](config);
  // Own keys only: 'toString' or '__proto__' must not find Object.prototype's members.
  const short = Object.hasOwn(SCHEDULER_NAMES, name) ? SCHEDULER_NAMES[name] : undefined;
  if (!short) {
    throw new Error(`unknown scheduler '${name}' (known: ${Object.keys(SCHEDULER_NAMES).join(', ')}, ` +
      `or a class name: ${Object.keys(constructors).join(', ')})`);
  }
  return new constructors[short.className]({ ...config, ...short.overrides });
}

/** The scheduler a scheduler_config.json describes (its `_class_name`). */
export function schedulerFromConfig(config: SchedulerConfigJson, source = 'scheduler config'): Scheduler {
  const cls = config['_class_name'];
  if (typeof cls !== 'string' || !isSchedulerClassName(cls)) {
    throw new Error(`${source}: "_class_name" must be one of ${Object.keys(constructors).join(', ')}, found ${JSON.stringify(cls)?.slice(0, 80)}`);
  }
  return new constructors[cls](config);
}
