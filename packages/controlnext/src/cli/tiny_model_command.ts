// `cnx tiny-model DIR`: write a tiny Stable Diffusion 1.5 + ControlNeXt with RANDOM weights in the real
// folder layout (node/tiny_model_folder.ts), on which every command and the library snippets run in
// seconds without a download. The images it gives are noise.

import { writeTinyModel } from '../node/tiny_model_folder.js';
import { TINY_VAES, type TinyVae } from '../pipelines/tiny_model.js';
import type { CommandIO } from './generate_command.js';
import { formatOptions, parseOptions, UsageError, type OptionSpec } from './options.js';

const OPTIONS: readonly OptionSpec[] = [
  { name: 'seed', type: 'integer', metavar: 'N', description: 'seed of the random weights', default: 0, min: 0, max: 4294967295 },
  { name: 'vae', type: 'string', metavar: 'KIND', description: 'random: a random VAE (its images are noise); block-mean: a VAE set by construction to the 8x8-block-mean codec (3 latent channels), on which `cnx train` learns pictures one can look at', default: 'random', choices: [...TINY_VAES] },
  { name: 'overwrite', type: 'boolean', description: 'write into a folder that already holds files' },
];

export const TINY_MODEL_USAGE = 'usage: cnx tiny-model DIR [--seed N] [--vae random|block-mean] [--overwrite]';

export function tinyModelHelp(): string {
  return `${TINY_MODEL_USAGE}

Write a tiny Stable Diffusion 1.5 (diffusers layout: model_index.json, unet/, vae/, text_encoder/,
tokenizer/, scheduler/) plus ControlNeXt files (controlnext/controlnet.safetensors, controlnext/unet.safetensors)
with RANDOM weights to DIR (~2.5 MB). Everything runs on it in seconds; its images are noise.

  cnx tiny-model tiny-sd15
  cnx generate --model tiny-sd15 --controlnext tiny-sd15/controlnext/controlnet.safetensors --prompt "a test" --steps 4
  cnx tiny-model shapes-sd --vae block-mean     # a base for \`cnx train --model shapes-sd\` on the shapes set

Options:
${formatOptions(OPTIONS)}`;
}

export async function runTinyModel(argv: readonly string[], io: CommandIO): Promise<number> {
  const { values, positional } = parseOptions(argv, OPTIONS);
  if (positional.length !== 1) throw new UsageError(positional.length === 0 ? 'the output folder DIR is missing' : `one folder expected, found ${positional.length}: ${positional.join(' ')}`);
  const dir = positional[0]!;
  const seed = (values['seed'] as number | undefined) ?? 0;
  const vae = ((values['vae'] as string | undefined) ?? 'random') as TinyVae;
  const written = await writeTinyModel(dir, { seed, vae, overwrite: values['overwrite'] === true });
  const bytes = written.reduce((n, f) => n + f.bytes, 0);
  io.stdout.write(`wrote ${dir}: ${written.length} files, ${(bytes / 2 ** 20).toFixed(1)} MiB, tiny SD1.5 + ControlNeXt with RANDOM weights (seed ${seed})` +
    `${vae === 'block-mean' ? ' and the block-mean VAE (set by construction)' : ''}\n`);
  return 0;
}
