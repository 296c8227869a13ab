// Command-line options described as data: parsing, range checks and --help text come from the same
// table, so the help can never disagree with what is accepted. Errors name the option, what is allowed
// and the value found.

export type OptionType = 'string' | 'number' | 'integer' | 'boolean' | 'list';

export interface OptionSpec {
  /** Long name without dashes (`steps` for --steps). */
  name: string;
  type: OptionType;
  description: string;
  /** Placeholder in the help (`N`, `FILE`). */
  metavar?: string;
  default?: string | number | boolean;
  /** Inclusive numeric range. */
  min?: number;
  max?: number;
  /** Allowed string values. */
  choices?: readonly string[];
}

export type OptionValues = Record<string, string | number | boolean | string[] | undefined>;

/** A usage error: the CLI prints it with the command's usage line and exits with status 2. */
export class UsageError extends Error {}

function nearest(name: string, names: readonly string[]): string | undefined {
  let best: string | undefined, bestD = Infinity;
  for (const n of names) {
    // Levenshtein distance, small strings.
    const d: number[][] = Array.from({ length: name.length + 1 }, (_, i) => [i, ...new Array<number>(n.length).fill(0)]);
    for (let j = 1; j <= n.length; j++) d[0]![j] = j;
    for (let i = 1; i <= name.length; i++) {
      for (let j = 1; j <= n.length; j++) {
        d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (name[i - 1] === n[j - 1] ? 0 : 1));
      }
    }
    const dist = d[name.length]![n.length]!;
    if (dist < bestD) { bestD = dist; best = n; }
  }
  return bestD <= 3 ? best : undefined;
}

/** What a numeric option accepts: optional sign, decimal digits; numbers also a fraction and an exponent. */
const INTEGER = /^[+-]?[0-9]+$/;
const DECIMAL = /^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/;

function convert(spec: OptionSpec, raw: string): string | number | boolean {
  const flag = `--${spec.name}`;
  if (spec.type === 'number' || spec.type === 'integer') {
    // Plain decimal only: Number() would also take '0x10' (16), '0b1', ' 5 ', 'Infinity' and '' (0).
    const v = (spec.type === 'integer' ? INTEGER : DECIMAL).test(raw) ? Number(raw) : NaN;
    const range = `${spec.min ?? '-inf'}, ${spec.max ?? 'inf'}`;
    if (!Number.isFinite(v) || (spec.type === 'integer' && !Number.isInteger(v))) {
      throw new UsageError(`${flag} must be ${spec.type === 'integer' ? 'an integer' : 'a number'} in [${range}], found '${raw}'`);
    }
    if ((spec.min !== undefined && v < spec.min) || (spec.max !== undefined && v > spec.max)) {
      throw new UsageError(`${flag} must be ${spec.type === 'integer' ? 'an integer' : 'a number'} in [${range}], found ${v}`);
    }
    return v;
  }
  if (spec.choices && !spec.choices.includes(raw)) {
    throw new UsageError(`${flag} must be one of ${spec.choices.join(', ')}, found '${raw}'`);
  }
  return raw;
}

/** Parse `argv` against `specs`: --name value, --name=value, --flag, --no-flag; lists repeat. */
export function parseOptions(argv: readonly string[], specs: readonly OptionSpec[]): { values: OptionValues; positional: string[]; given: ReadonlySet<string> } {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const values: OptionValues = {};
  /** Names set on the command line (values also holds defaults). */
  const given = new Set<string>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--') || a === '--') {
      if (a === '--') { positional.push(...argv.slice(i + 1)); break; }
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    let name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    let inline = eq >= 0 ? a.slice(eq + 1) : undefined;
    let spec = byName.get(name);
    if (!spec && name.startsWith('no-') && byName.get(name.slice(3))?.type === 'boolean') {
      spec = byName.get(name.slice(3));
      name = name.slice(3);
      if (inline !== undefined) throw new UsageError(`--no-${name} takes no value`);
      inline = 'false';
    }
    if (!spec) {
      const hint = nearest(name, [...byName.keys()]);
      throw new UsageError(`unknown option --${name}${hint ? ` (did you mean --${hint}?)` : ''}`);
    }
    given.add(name);
    if (spec.type === 'boolean') {
      if (inline !== undefined && inline !== 'true' && inline !== 'false') throw new UsageError(`--${name} is a flag: use --${name} or --no-${name}, found '${inline}'`);
      values[name] = inline !== 'false';
      continue;
    }
    const raw = inline ?? argv[++i];
    if (raw === undefined) throw new UsageError(`--${name} needs a value (${spec.metavar ?? spec.type})`);
    if (spec.type === 'list') values[name] = [...((values[name] as string[] | undefined) ?? []), raw];
    else values[name] = convert(spec, raw);
  }
  for (const s of specs) if (values[s.name] === undefined && s.default !== undefined) values[s.name] = s.default;
  return { values, positional, given };
}

/** The options block of a --help text. */
export function formatOptions(specs: readonly OptionSpec[]): string {
  const rows = specs.map((s) => {
    const left = `  --${s.name}${s.type === 'boolean' ? '' : ` ${s.metavar ?? s.type.toUpperCase()}`}`;
    const extra: string[] = [];
    if (s.choices) extra.push(`one of: ${s.choices.join(', ')}`);
    if (s.min !== undefined || s.max !== undefined) extra.push(`range [${s.min ?? '-inf'}, ${s.max ?? 'inf'}]`);
    if (s.default !== undefined) extra.push(`default: ${s.default === '' ? '""' : s.default}`);
    return [left, s.description + (extra.length ? ` (${extra.join('; ')})` : '')] as const;
  });
  const w = Math.min(Math.max(...rows.map(([l]) => l.length)) + 2, 34);
  return rows.map(([l, r]) => (l.length + 2 > w ? `${l}\n${' '.repeat(w)}${r}` : `${l.padEnd(w)}${r}`)).join('\n');
}
