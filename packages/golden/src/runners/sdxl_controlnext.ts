// sdxl_controlnext (ControlNeXt-SDXL): the light module, injected normalise-then-pool right after
// conv_in, scale 1.0 * args.controlnet_scale; SDXL text_time conditioning from the case inputs. A second
// run with `controlnet_cond_mismatch` (a control map of another size than the latent) checks the
// normalise-then-pool order where it matters (out.mismatch.*, inject.mismatch.*).
// Shared body: runControlNeXtCase in sd15_controlnext.ts.

import type { Runner } from '../golden_case.js';
import { runControlNeXtCase } from './sd15_controlnext.js';

export const sdxlControlNeXtRunner: Runner = (c, backend) => {
  const strength = c.args.controlnet_scale;
  if (strength !== undefined && typeof strength !== 'number') {
    throw new Error(`${c.name}: args.controlnet_scale must be a number, found ${JSON.stringify(strength)}`);
  }
  const extra: [string, string][] = 'controlnet_cond_mismatch' in c.json.inputs ? [['controlnet_cond_mismatch', 'mismatch']] : [];
  return runControlNeXtCase(c, backend, {
    variant: 'sdxl', unetKind: 'controlnext_sdxl_unet', moduleKind: 'controlnext_sdxl', strength, extraImages: extra,
  });
};
