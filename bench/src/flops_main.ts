// Prints the analytic FLOP / parameter table (bench/README.md's tables) for a resolution:
//   node bench/dist/flops_main.js [--model sd15|sdxl] [--resolution 512] [--images 1]
import { parseArgs } from 'node:util';
import { sdxlFlopTableMarkdown } from './sdxl_variants.js';
import { flopTableMarkdown } from './variants.js';

const { values } = parseArgs({ options: { model: { type: 'string', default: 'sd15' }, resolution: { type: 'string' }, images: { type: 'string', default: '1' } } });
const model = values.model;
if (model !== 'sd15' && model !== 'sdxl') throw new Error(`--model: expected sd15 or sdxl, found '${model}'`);
const mult = model === 'sdxl' ? 32 : 64;
const r = Number(values.resolution ?? (model === 'sdxl' ? '1024' : '512')), images = Number(values.images);
if (!Number.isInteger(r) || r % mult !== 0 || r <= 0) throw new Error(`--resolution: expected a positive multiple of ${mult} pixels, found '${values.resolution}'`);
console.log(`${model === 'sdxl' ? 'SDXL' : 'SD1.5'}, ${r}x${r} pixels, ${images} image(s) per prompt, CFG (UNet batch ${2 * images}), per denoising step:\n`);
console.log(model === 'sdxl' ? sdxlFlopTableMarkdown({ resolution: [r, r], images }) : flopTableMarkdown({ resolution: [r, r], images }));
