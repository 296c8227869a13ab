// Control types turn a user image into the control module's input: RGB in [0, 1], [1, 3, H, W], at the
// image's resolution (the caller resizes to the output size first; the ControlNeXt pipelines feed the
// control image at exactly the output pixel size, spec 3.3 / 5.3).
//
// Plug-ins: every file in control_types/builtin/ exports `controlType: ControlType`. They are found by listing
// that directory (listControlTypes), so adding a type is one new file; there is no hand-kept list.

import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Backend, Tensor } from '@cnx/tensor';

/** A decoded image: interleaved RGB rows, [H, W, 3], values in [0, 1]. */
export interface RgbImage {
  data: Float32Array;
  height: number;
  width: number;
}

export type ControlTypeOptions = Readonly<Record<string, number | string | boolean | undefined>>;

export interface ControlOptionInfo {
  name: string;
  description: string;
  default: number | string | boolean | 'auto';
}

export interface ControlType {
  /** CLI name (`--control-type canny`). */
  readonly name: string;
  readonly description: string;
  readonly options: readonly ControlOptionInfo[];
  /** The module input [1, 3, H, W] in [0, 1] on `backend`, for an image of the same H x W. */
  prepare(image: RgbImage, backend: Backend, opts?: ControlTypeOptions): Promise<Tensor>;
}

/** Checks that `image.data` holds H*W*3 values; errors name what was expected and found. */
export function assertRgbImage(what: string, image: RgbImage): void {
  const { height: H, width: W, data } = image;
  if (!Number.isInteger(H) || !Number.isInteger(W) || H <= 0 || W <= 0) throw new Error(`${what}: expected a positive integer height and width, found ${H}x${W}`);
  if (data.length !== H * W * 3) throw new Error(`${what}: expected ${H}x${W}x3 = ${H * W * 3} RGB values, found ${data.length}`);
}

/** A planar [1, 3, H, W] tensor from three planes (or one plane repeated), values as given. */
export function planesToTensor(backend: Backend, planes: readonly Float32Array[], height: number, width: number): Tensor {
  const hw = height * width;
  const out = new Float32Array(3 * hw);
  for (let c = 0; c < 3; c++) out.set(planes[planes.length === 1 ? 0 : c]!, c * hw);
  return backend.fromRaw(out, [1, 3, height, width]);
}

/** Luma (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B, the weights of OpenCV's RGB2GRAY), in [0, 1]. */
export function luma(image: RgbImage): Float32Array {
  const n = image.height * image.width;
  const out = new Float32Array(n);
  const d = image.data;
  for (let i = 0; i < n; i++) out[i] = 0.299 * d[3 * i]! + 0.587 * d[3 * i + 1]! + 0.114 * d[3 * i + 2]!;
  return out;
}

/** A numeric option (undefined -> fallback); errors name the option and the value found. */
export function numberOption(opts: ControlTypeOptions | undefined, name: string, fallback: number): number {
  const v = opts?.[name];
  if (v === undefined) return fallback;
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  if (!Number.isFinite(n)) throw new Error(`control option '${name}': expected a number, found ${JSON.stringify(v)}`);
  return n;
}

export function booleanOption(opts: ControlTypeOptions | undefined, name: string, fallback: boolean): boolean {
  const v = opts?.[name];
  if (v === undefined) return fallback;
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new Error(`control option '${name}': expected true/false, found ${JSON.stringify(v)}`);
}

/** The folder that holds the built-in plug-ins (the built control_types/builtin/ next to this module). */
export function controlTypesDir(): string {
  return join(dirname(fileURLToPath(import.meta.url)), 'builtin');
}

/** Every plug-in file in control_types/builtin/, imported; a file without a valid `controlType` export is an error. */
export async function listControlTypes(dir = controlTypesDir()): Promise<ControlType[]> {
  const files = readdirSync(dir).filter((f) => f.endsWith('.js')).sort();
  const types: ControlType[] = [];
  for (const f of files) {
    const mod = (await import(pathToFileURL(join(dir, f)).href)) as { controlType?: ControlType };
    const t = mod.controlType;
    if (!t || typeof t.name !== 'string' || typeof t.prepare !== 'function') {
      throw new Error(`${join(dir, f)}: expected an export 'controlType' with a name and prepare(), found ${t === undefined ? 'none' : typeof t}`);
    }
    types.push(t);
  }
  const names = types.map((t) => t.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new Error(`${dir}: two control types are named '${dup}'`);
  return types;
}

/** The plug-in named `name`; errors list the known names. */
export async function findControlType(name: string, dir = controlTypesDir()): Promise<ControlType> {
  const types = await listControlTypes(dir);
  const t = types.find((x) => x.name === name);
  if (!t) throw new Error(`unknown control type '${name}' (known: ${types.map((x) => x.name).join(', ')})`);
  return t;
}
