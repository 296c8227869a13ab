// @cnx/bench as a library: the analytic cost model and the benchmark's configurations, for anyone who
// wants FLOP / parameter counts of SD1.5 / SDXL + control networks without running the benchmark.
export * from './flops.js';
export * from './training_cost.js';
export * from './variants.js';
export { SD15_CONTROLNET_CONFIG, SD15_SEQ_LEN, SD15_UNET_CONFIG } from './sd15_configs.js';
export * from './sdxl_variants.js';
export { SDXL_CONTROLNEXT_STRUCTURE, SDXL_CONTEXT_DIM, SDXL_POOLED_DIM, SDXL_SEQ_LEN, SDXL_UNET_CONFIG } from './sdxl_configs.js';
