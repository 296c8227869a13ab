// The Node entry of @cnx/controlnext (package.json exports, condition "node"): everything of the main
// entry, plus what needs Node: PNG/JPEG files (node/image_files.ts, pngjs), a pipeline from a model folder
// on disk (node/pipeline_loading.ts; SVD: node/svd_pipeline_loading.ts), video and pose files (node/video_files.ts),
// control-type plug-in folders (node/control_type_plugins.ts) and the
// `cnx` CLI (cli/). Only this file and what it imports may touch Node-only modules.

export * from './index.js';
export * from './node/image_files.js';
export * from './node/pipeline_loading.js';
export * from './node/control_type_plugins.js';
export * from './node/svd_pipeline_loading.js';
export * from './node/video_files.js';
export { main } from './cli/main.js';
export * from './cli/options.js';
export * from './cli/progress.js';
export * from './node/tiny_model_folder.js';
export * from './node/fill50k_dataset.js';
export * from './node/training_checkpoint_files.js';
export * from './node/atomic_folder.js';
