// `cnx`: the command-line entry (bin/cnx.js calls main()). Commands: generate, video, train, schedulers, control-types, tiny-model.
// Usage errors exit with status 2, runtime errors (bad image file, missing model file, ...) with 1;
// both print one "cnx <command>: error: ..." line naming the option or file.

import { readFileSync } from 'node:fs';
import { controlTypeRegistry } from '../node/control_type_plugins.js';
import { GENERATE_USAGE, generateHelp, runGenerate, type CommandIO } from './generate_command.js';
import { VIDEO_USAGE, videoHelp, runVideo } from './video_command.js';
import { parseOptions, UsageError, type OptionSpec } from './options.js';
import { runTinyModel, TINY_MODEL_USAGE, tinyModelHelp } from './tiny_model_command.js';
import { runTrain, TRAIN_USAGE, trainHelp } from './train_command.js';
import { SCHEDULER_NAMES } from '@cnx/unet';

const HELP = `usage: cnx <command> [options]

Commands:
  generate        prompt (+ control image) -> PNG; \`cnx generate --help\` for its options
  video           reference image + poses -> video frames (PNG) and a GIF/MP4 (SVD + ControlNeXt-SVD)
  train           train a ControlNeXt module on a dataset (or a synthetic shapes set); \`cnx train --help\`
  schedulers      list the sampler names --scheduler accepts
  control-types   list the control types --control-type accepts, with their options
  tiny-model      write a tiny RANDOM-weight SD1.5 + ControlNeXt folder (real layout) to try everything on

Run \`cnx <command> --help\` for a command's help; \`cnx --version\` prints the version.`;

async function listSchedulers(argv: readonly string[], io: CommandIO): Promise<number> {
  if (argv.length > 0) throw new UsageError(`unexpected argument '${argv[0]}' (cnx schedulers takes none)`);
  for (const [name, s] of Object.entries(SCHEDULER_NAMES)) io.stdout.write(`${name.padEnd(18)}${s.className}: ${s.description}\n`);
  return 0;
}

const CONTROL_TYPES_OPTIONS: readonly OptionSpec[] = [
  { name: 'control-type-dir', type: 'list', metavar: 'DIR', description: 'a plug-in folder of control types (repeatable)' },
];

async function listTypes(argv: readonly string[], io: CommandIO): Promise<number> {
  const { values, positional } = parseOptions(argv, CONTROL_TYPES_OPTIONS);
  if (positional.length > 0) throw new UsageError(`unexpected argument '${positional[0]}'`);
  const dirs = (values['control-type-dir'] as string[] | undefined) ?? [];
  const registry = await controlTypeRegistry(dirs).catch((e: Error) => { throw new UsageError(`--control-type-dir: ${e.message}`); });
  for (const t of registry.list()) {
    io.stdout.write(`${t.name.padEnd(14)}${t.description}\n`);
    for (const o of t.options) io.stdout.write(`${''.padEnd(16)}${o.name}: ${o.description} (default: ${o.default})\n`);
  }
  return 0;
}

const COMMANDS: Readonly<Record<string, { usage: string; help: () => string; run: (argv: readonly string[], io: CommandIO) => Promise<number> }>> = {
  generate: { usage: GENERATE_USAGE, help: generateHelp, run: runGenerate },
  video: { usage: VIDEO_USAGE, help: videoHelp, run: runVideo },
  train: { usage: TRAIN_USAGE, help: trainHelp, run: runTrain },
  schedulers: { usage: 'usage: cnx schedulers', help: () => 'usage: cnx schedulers\n\nList the sampler names --scheduler accepts.', run: (a, io) => listSchedulers(a, io) },
  'control-types': {
    usage: 'usage: cnx control-types [--control-type-dir DIR ...]',
    help: () => 'usage: cnx control-types [--control-type-dir DIR ...]\n\nList the control types --control-type accepts (the built-in ones and those of each plug-in folder), with their options (--control-option KEY=VALUE).',
    run: (a, io) => listTypes(a, io),
  },
  'tiny-model': { usage: TINY_MODEL_USAGE, help: tinyModelHelp, run: runTinyModel },
};

/** The package version (package.json next to dist/ and src/). */
export function cnxVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

export async function main(argv: readonly string[], io: CommandIO = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--version' || cmd === 'version') {
    io.stdout.write(`cnx ${cnxVersion()} (@cnx/controlnext; node ${process.versions.node})\n`);
    return 0;
  }
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    io.stdout.write(HELP + '\n');
    return cmd === undefined ? 2 : 0;
  }
  const command = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined; // 'toString' is no command
  if (!command) {
    io.stderr.write(`cnx: error: unknown command '${cmd}' (commands: ${Object.keys(COMMANDS).join(', ')})\n${HELP}\n`);
    return 2;
  }
  if (cmd !== 'generate' && cmd !== 'video' && cmd !== 'train' && (rest.includes('--help') || rest.includes('-h'))) {
    io.stdout.write(command.help() + '\n');
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (e) {
    const usage = e instanceof UsageError;
    io.stderr.write(`cnx ${cmd}: error: ${(e as Error).message}\n${usage ? `${command.usage}\n(see \`cnx ${cmd} --help\`)\n` : ''}`);
    if (process.env['CNX_DEBUG'] && e instanceof Error && e.stack) io.stderr.write(e.stack + '\n');
    return usage ? 2 : 1;
  }
}
