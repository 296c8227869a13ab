// @cnx/controlnext: ControlNeXt control modules and injection (controlnext/), the diffusers ControlNet
// baseline (controlnet/), control types (control_types/), the pipelines (pipelines/: images, and video with
// Stable Video Diffusion + ControlNeXt-SVD), pose keypoints and video files (video/), LoRA, images and the
// CLI (cli/). Schedulers live in @cnx/unet beside the models.
export * from './controlnext/variants.js';
export * from './controlnext/injection.js';
export * from './controlnext/cross_norm.js';
export * from './controlnext/cross_norm_backward.js';
export * as crossNormBackwardKernel from './controlnext/cross_norm_backward_wgsl.js';
export * from './controlnext/control_module.js';
export * from './controlnext/down_path_module.js';
export * from './controlnext/controlnext_sd15.js';
export * from './controlnext/controlnext_light.js';
export * from './controlnext/load_control_module.js';
export * from './controlnext/controlnext.js';
export * from './control_types/control_type.js';
export * from './control_types/canny_edges.js';
export * from './controlnext/partial_unet.js';
export * from './controlnet/controlnet.js';
export * from './pipelines/pipeline.js';
export * from './pipelines/pipeline_control.js';
export * from './lora.js';
export * from './images.js';
export * from './pipelines/pipeline_loading.js';
export * from './pipelines/tiny_model.js';
export { main } from './cli/main.js';
export * from './cli/options.js';
export * from './cli/progress.js';
export * from './controlnext/controlnext_svd_modules.js';
export * from './controlnext/controlnext_svd.js';
export * from './pipelines/svd_pipeline.js';
export * from './pipelines/svd_preflight.js';
export * from './pipelines/tiny_svd_model.js';
export * from './pipelines/load_svd_pipeline_node.js';
export * from './video/pose_keypoints.js';
export * from './video/pose_render.js';
export * from './video/video_io_node.js';
