// Control types from plug-in folders (Node only: the package's Node entry). A plug-in folder holds files
// (.js / .mjs) that each export `controlType: ControlType`; they are imported in name order. The library's
// own folder (the built control_types/builtin/) is such a folder too, so listing it finds every built-in
// type with no hand-kept list; `cnx --control-type-dir DIR` adds a user folder.

import { readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { assertControlType, type ControlType } from '../control_types/control_type.js';
import { ControlTypeRegistry } from '../control_types/registry.js';

/** The folder that holds the built-in plug-ins (the built control_types/builtin/). */
export function controlTypesDir(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', 'control_types', 'builtin');
}

/** Every plug-in file in `dir`, imported; a file without a valid `controlType` export is an error naming it. */
export async function listControlTypes(dir = controlTypesDir()): Promise<ControlType[]> {
  let entries: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new Error('not a folder');
    entries = readdirSync(dir);
  } catch (e) {
    throw new Error(`control type folder ${dir}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : (e as Error).message}`);
  }
  const files = entries.filter((f) => f.endsWith('.js') || f.endsWith('.mjs')).sort();
  const types: ControlType[] = [];
  for (const f of files) {
    const path = join(dir, f);
    const mod = (await import(pathToFileURL(resolve(path)).href)) as { controlType?: unknown };
    assertControlType(mod.controlType, `${path} (its export 'controlType')`);
    types.push(mod.controlType);
  }
  const names = types.map((t) => t.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new Error(`${dir}: two control types are named '${dup}'`);
  return types;
}

/** The plug-in named `name` in `dir` (default: the built-in folder); errors list the known names. */
export async function findControlType(name: string, dir = controlTypesDir()): Promise<ControlType> {
  const types = await listControlTypes(dir);
  const t = types.find((x) => x.name === name);
  if (!t) throw new Error(`unknown control type '${name}' (known: ${types.map((x) => x.name).join(', ')})`);
  return t;
}

/** A registry of the built-in types plus every type in the plug-in folders `dirs` (a clash of names is an error). */
export async function controlTypeRegistry(dirs: readonly string[] = []): Promise<ControlTypeRegistry> {
  const registry = new ControlTypeRegistry();
  for (const dir of dirs) for (const t of await listControlTypes(dir)) registry.register(t, `control type folder ${dir}`);
  return registry;
}
