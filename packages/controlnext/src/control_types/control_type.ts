// Control types turn a user image into the control module's input: RGB in [0, 1], [1, 3, H, W], at the
// image's resolution (the caller resizes to the output size first; the ControlNeXt pipelines feed the
// control image at exactly the output pixel size, spec 3.3 / 5.3).
//
// A control type is one object (one file exporting `controlType: ControlType`). The library's own are in
// control_types/builtin/; user types are registered on a ControlTypeRegistry (registry.ts) from code, or
// loaded from a plug-in folder in Node (node/control_type_plugins.ts, `cnx --control-type-dir DIR`).

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

/** Checks that `t` is a usable control type (a plug-in file's export, a registered object); `source` names where it came from. */
export function assertControlType(t: unknown, source: string): asserts t is ControlType {
  const c = t as Partial<ControlType> | undefined;
  if (!c || typeof c !== 'object' || typeof c.name !== 'string' || !/^[a-z0-9][a-z0-9_-]*$/.test(c.name) || typeof c.prepare !== 'function') {
    throw new Error(`${source}: expected a control type { name (lower-case, [a-z0-9_-]), description, options, prepare() }, found ${c === undefined ? 'none' : typeof c === 'object' ? `an object with name ${JSON.stringify(c.name)}` : typeof c}`);
  }
  if (typeof c.description !== 'string' || !Array.isArray(c.options)) {
    throw new Error(`${source}: control type '${c.name}' needs a description string and an options list`);
  }
}
