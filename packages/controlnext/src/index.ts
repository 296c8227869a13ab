// @cnx/controlnext, the main (browser-safe) entry: ControlNeXt control modules and injection
// (controlnext/), the diffusers ControlNet baseline (controlnet/), control types (control_types/), the
// pipelines (pipelines/: images, and video with Stable Video Diffusion + ControlNeXt-SVD), pose keypoints
// and their renderer (video/), LoRA and images as arrays and tensors. Nothing here imports a Node module (a
// test bundles it with esbuild for the browser). The Node entry (node.ts: exports condition "node") adds
// PNG/JPEG files, loading a pipeline from a folder, control-type plug-in folders and the CLI (node/, cli/).
// Schedulers live in @cnx/unet beside the models.
export * from './controlnext/variants.js';
export * from './controlnext/injection.js';
export {
  checkSameChannels, injectionMethods, resolveInjectionMethod, type InjectionContext, type InjectionMethod, type InjectionMethodName,
} from './controlnext/injection_methods.js';
export * from './controlnext/cross_norm.js';
export * from './controlnext/cross_norm_backward.js';
export { crossNormBackwardOp } from './controlnext/cross_norm_backward_op.js';
export * as crossNormBackwardKernel from './controlnext/cross_norm_backward_wgsl.js';
export * from './controlnext/control_module.js';
export * from './controlnext/down_path_module.js';
export * from './controlnext/controlnext_sd15.js';
export * from './controlnext/controlnext_light.js';
export * from './controlnext/load_control_module.js';
export * from './controlnext/controlnext.js';
export * from './control_types/control_type.js';
export * from './control_types/registry.js';
export * from './control_types/canny_edges.js';
export * from './controlnext/partial_unet.js';
export * from './controlnet/controlnet.js';
export * from './pipelines/pipeline.js';
export * from './pipelines/call_queue.js';
export * from './pipelines/finite_guard.js';
export * from './pipelines/pipeline_control.js';
export * from './pipelines/prompt_encoder.js';
export * from './pipelines/sdxl_prompt_encoder.js';
export * from './pipelines/sdxl_pipeline.js';
export * from './pipelines/pipeline_from_files.js';
export * from './pipelines/pipeline_assembly.js';
export * from './pipelines/model_index.js';
export * from './lora.js';
export * from './images.js';
export * from './pipelines/block_mean_vae.js';
export * from './pipelines/tiny_model.js';
export * from './pipelines/tiny_model_files.js';
export * from './controlnext/controlnext_svd_modules.js';
export * from './controlnext/controlnext_svd.js';
export * from './pipelines/svd_pipeline.js';
export * from './pipelines/svd_preflight.js';
export * from './pipelines/tiny_svd_model.js';
export * from './video/pose_keypoints.js';
export * from './video/pose_render.js';
export * from './training/shapes.js';
export * from './training/shape_iou.js';
export * from './training/loss_curve.js';
export * from './training/training_batches.js';
export * from './training/controlnext_trainer.js';
