// Prints the analytic FLOP / parameter table (bench/README.md's table) for a resolution:
//   node bench/dist/flops_main.js [--resolution 512] [--images 1]
import { parseArgs } from 'node:util';
import { flopTableMarkdown } from './variants.js';

const { values } = parseArgs({ options: { resolution: { type: 'string', default: '512' }, images: { type: 'string', default: '1' } } });
const r = Number(values.resolution), images = Number(values.images);
if (!Number.isInteger(r) || r % 64 !== 0 || r <= 0) throw new Error(`--resolution: expected a positive multiple of 64 pixels, found '${values.resolution}'`);
console.log(`SD1.5, ${r}x${r} pixels, ${images} image(s) per prompt, CFG (UNet batch ${2 * images}), per denoising step:\n`);
console.log(flopTableMarkdown({ resolution: [r, r], images }));
