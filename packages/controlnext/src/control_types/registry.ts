// The control types a CLI or an application can use, by name: the library's built-in ones (a typed list,
// so a browser bundle has them without listing a folder) plus whatever user code registers. A registry
// is an object the caller owns; nothing registers itself on import.
//
//   const types = new ControlTypeRegistry().register(scribble);   // scribble: a user ControlType
//   const x = await types.get('scribble').prepare(image, backend);

import { controlType as canny } from './builtin/canny.js';
import { controlType as depth } from './builtin/depth.js';
import { controlType as mask } from './builtin/mask.js';
import { controlType as passthrough } from './builtin/passthrough.js';
import { controlType as pose } from './builtin/pose.js';
import { assertControlType, type ControlType } from './control_type.js';

/** The library's control types (every file of control_types/builtin/, checked by a test). */
export const builtinControlTypes: readonly ControlType[] = [canny, depth, mask, passthrough, pose];

export class ControlTypeRegistry {
  private readonly types = new Map<string, ControlType>();

  /** Starts with `initial` (default: the built-in types). */
  constructor(initial: readonly ControlType[] = builtinControlTypes) {
    for (const t of initial) this.register(t);
  }

  /** Add a control type; a name already present is an error naming where (`source`) the new one came from. */
  register(type: ControlType, source = 'register'): this {
    assertControlType(type, source);
    if (this.types.has(type.name)) throw new Error(`${source}: a control type named '${type.name}' is already registered`);
    this.types.set(type.name, type);
    return this;
  }

  has(name: string): boolean { return this.types.has(name); }

  /** The type called `name`; errors list the known names. */
  get(name: string): ControlType {
    const t = this.types.get(name);
    if (!t) throw new Error(`unknown control type '${name}' (known: ${this.names().join(', ')})`);
    return t;
  }

  names(): string[] { return [...this.types.keys()].sort(); }

  list(): ControlType[] { return this.names().map((n) => this.types.get(n)!); }
}
