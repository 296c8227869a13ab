// controlnext_training (ControlNeXt-SD1.5-Training): the light module (its float scale from the
// module folder's config.json `controlnext_scale`), injected pool-then-normalise after down_blocks[0].
// Shared body: runControlNeXtCase in sd15_controlnext.ts.

import type { Runner } from '../golden_case.js';
import { runControlNeXtCase } from './sd15_controlnext.js';

export const sd15ControlNeXtTrainingRunner: Runner = (c, backend) =>
  runControlNeXtCase(c, backend, { variant: 'sd15_training', unetKind: 'controlnext_training_unet', moduleKind: 'controlnext_training' });
