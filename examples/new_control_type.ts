// A new control type, used end to end: the 'scribble' type of control_types/scribble.ts (one file
// outside the library) registered from code, turning an image into a scribble map, which then drives a
// ControlNeXt generation. Writes the map and the generated image.
//
//   node examples/dist/new_control_type.js [--image PNG] [--model DIR --controlnext FILE] [--steps N] [--size PX] [--out DIR]
//
// The same type as a plug-in folder of the CLI, with no code at all:
//   npx cnx generate --control-type-dir examples/dist/control_types --control-type scribble --control-image in.png ...
// Without --image it draws an input (a bright square and disc on a dark background); without --model it
// runs on the tiny random model. test/examples_scripts.test.ts runs it.

import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ndarray from 'ndarray';
import { ControlTypeRegistry, readImage, resizeImage, tensorToImages, toRgbImage, writePng, type RgbImage } from '@cnx/controlnext';
import { controlType as scribble } from './control_types/scribble.js';
import { exampleArgs, openExample } from './example_model.js';

/** A size x size test input with clear edges: a bright square and a disc on a dark background. */
export function shapesImage(size: number): RgbImage {
  const data = new Float32Array(size * size * 3).fill(0.1);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const inSquare = x > size * 0.15 && x < size * 0.45 && y > size * 0.2 && y < size * 0.6;
      const inDisc = Math.hypot(x - size * 0.68, y - size * 0.62) < size * 0.2;
      if (inSquare || inDisc) data.fill(0.9, (y * size + x) * 3, (y * size + x) * 3 + 3);
    }
  }
  return { data, height: size, width: size };
}

export async function main(argv: string[]): Promise<void> {
  const a = await exampleArgs(argv, { steps: 4, size: 128 }, { image: { type: 'string' }, thickness: { type: 'string' } });
  const { backend, pipeline } = await openExample(a);
  const types = new ControlTypeRegistry().register(scribble); // the built-in types plus ours
  const rgb = a.values.image ? toRgbImage(resizeImage(readImage(a.values.image), a.size, a.size)) : shapesImage(a.size);
  const control = await types.get('scribble').prepare(rgb, backend, { thickness: Number(a.values.thickness ?? 2) }); // [1, 3, H, W] in [0, 1]
  const map = await control.data();
  writePng(join(a.out, 'scribble_map.png'), ndarray(Float32Array.from({ length: a.size * a.size * 3 }, (_, i) => map[Math.floor(i / 3)]!), [a.size, a.size, 3]));
  const { images, latents } = await pipeline.generate({ prompt: 'a cozy room', controlImage: control, numInferenceSteps: a.steps, seed: 3 });
  writePng(join(a.out, 'scribble_out.png'), (await tensorToImages(images))[0]!);
  console.log(`control types: ${types.names().join(', ')}; wrote scribble_map.png, scribble_out.png`);
  for (const t of [images, latents, control]) t.dispose();
  pipeline.dispose();
  backend.destroy();
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main(process.argv.slice(2));
