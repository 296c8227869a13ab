// @cnx/controlnext: ControlNeXt control modules and injection, the diffusers ControlNet baseline, and
// control types. (Pipelines / CLI / schedulers live beside these files and export themselves below.)
export * from './variants.js';
export * from './injection.js';
export * from './control_module.js';
export * from './down_path_module.js';
export * from './controlnext_sd15.js';
export * from './controlnext_light.js';
export * from './load_control_module.js';
export * from './controlnext.js';
export * from './control_type.js';
export * from './canny_edges.js';
export * from './schedulers/index.js';
export * from './partial_unet.js';
export * from './controlnet.js';
export * from './pipeline.js';
export * from './pipeline_control.js';
export * from './lora.js';
export * from './images.js';
export * from './pipeline_loading.js';
export * from './tiny_model.js';
export { main } from './cli.js';
export * from './cli/options.js';
export * from './progress.js';
export * from './svd/svd_scheduler.js';
export * from './svd/controlnext_svd_modules.js';
export * from './svd/controlnext_svd.js';
export * from './svd/svd_pipeline.js';
