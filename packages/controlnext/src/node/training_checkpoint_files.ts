// Training checkpoints as folders (ControlNeXtTrainer.checkpointFiles, training/controlnext_trainer.ts):
// written atomically (atomic_folder.ts), read back for resume. The folder also gets the control module's
// config.json, so that it loads as a module folder (`cnx generate --controlnext <dir>`, ControlNeXt.load).

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHECKPOINT_FILES } from '../training/controlnext_trainer.js';
import { writeFolderAtomic } from './atomic_folder.js';

/** Write the checkpoint files (and the module's config.json when given) to DIR, replacing an older one. */
export async function writeTrainingCheckpoint(dir: string, files: Readonly<Record<string, Uint8Array>>, moduleConfig?: Record<string, unknown>): Promise<void> {
  await writeFolderAtomic(dir, (tmp) => {
    for (const [name, bytes] of Object.entries(files)) writeFileSync(join(tmp, name), bytes);
    if (moduleConfig) writeFileSync(join(tmp, 'config.json'), JSON.stringify(moduleConfig, null, 2) + '\n');
  }, { overwrite: true, who: 'training checkpoint' });
}

/** The checkpoint files of DIR (for ControlNeXtTrainer's resume); errors name the folder and the file missing. */
export function readTrainingCheckpoint(dir: string): Record<string, Uint8Array> {
  if (!existsSync(dir)) throw new Error(`resume: checkpoint folder ${dir} does not exist`);
  const out: Record<string, Uint8Array> = {};
  for (const name of Object.values(CHECKPOINT_FILES)) {
    const p = join(dir, name);
    if (existsSync(p)) out[name] = readFileSync(p);
  }
  for (const name of [CHECKPOINT_FILES.state, CHECKPOINT_FILES.controlnext, CHECKPOINT_FILES.optimizer]) {
    if (!out[name]) throw new Error(`resume: ${dir} is not a training checkpoint (no ${name})`);
  }
  return out;
}
