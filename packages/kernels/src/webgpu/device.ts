// WebGPU device acquisition with an explicit, reported adapter (DESIGN.md "WebGPU without a GPU").
//
// Adapters come from a provider: navigator.gpu in browsers (browserAdapters below, the default of the
// package's main entry), Dawn in Node (device_node.ts: the adapter order gpu -> swiftshader -> lavapipe -> llvmpipe,
// the default of the Node entry, src/node.ts). This file imports nothing Node-only, so the main entry
// bundles for a browser. The device is created with the adapter's own maximum limits and the optional
// features it has (shader-f16, timestamp-query, subgroups), and the report says what was chosen and
// which adapters were skipped and why: falling back is never silent.

export type AdapterKind = 'gpu' | 'swiftshader' | 'lavapipe' | 'llvmpipe';
export const ADAPTER_KINDS: readonly AdapterKind[] = ['gpu', 'swiftshader', 'lavapipe', 'llvmpipe'];


export interface AdapterReport {
  kind: AdapterKind | 'browser';
  /** Dawn backend (vulkan, opengles, metal, d3d12) or 'browser'. */
  backend: string;
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  featureLevel: 'core' | 'compatibility';
  /** Features of the device (what the kernels may use). */
  features: string[];
  /** Features the adapter offers (a superset of `features`; shows what was not requested). */
  adapterFeatures: string[];
  /** Options the provider created its instance with (Dawn toggles such as vulkan_enable_f16_on_nvidia). */
  instanceOptions: string[];
  limits: Record<string, number>;
  /** Adapters tried before this one and why each was not used. */
  skipped: string[];
}

export interface AcquiredDevice {
  device: GPUDevice;
  adapter: GPUAdapter;
  report: AdapterReport;
  /** One line: "webgpu: <device> [<backend>, <kind>]" plus any fallback note. */
  description: string;
}

/** An adapter found by a provider, with how it was reached. */
export interface AdapterCandidate {
  adapter: GPUAdapter;
  /** Dawn backend (vulkan, opengles, metal, d3d12) or 'browser'. */
  backend: string;
  featureLevel: 'core' | 'compatibility';
  kind: AdapterKind | 'browser';
  /** Options the provider created the instance with (reported; Dawn's `create` options in Node). */
  instanceOptions?: readonly string[];
}

/**
 * Where adapters come from: navigator.gpu in a browser (browserAdapters, the default of the main entry),
 * Dawn in Node (device_node.ts, the default of the Node entry). Returns the adapter to use, or throws
 * naming every adapter tried; `skipped` receives the ones tried before it and why they were not used.
 */
export type AdapterProvider = (named: AdapterKind | undefined, skipped: string[]) => Promise<AdapterCandidate>;

export interface AcquireOptions {
  /** 'gpu' | 'swiftshader' | 'lavapipe' | 'llvmpipe'; default: env CNX_ADAPTER, else try all in order. */
  adapter?: string;
  /** Adapter source; default: navigator.gpu (the Node entry of @cnx/kernels passes Dawn's). */
  provider?: AdapterProvider;
  /** Dawn instance toggles / device toggles are the provider's business; features asked for beyond the defaults. */
  requiredFeatures?: readonly GPUFeatureName[];
}

/** Limits requested from the adapter at its own maximum (the defaults are far lower, e.g. 128 MiB bindings). */
const REQUESTED_LIMITS = [
  'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY',
  'maxStorageBuffersPerShaderStage',
] as const;
/** Limits shown in the report. */
const REPORTED_LIMITS = [...REQUESTED_LIMITS, 'maxComputeWorkgroupsPerDimension', 'maxComputeWorkgroupSizeZ',
  'maxUniformBufferBindingSize', 'minStorageBufferOffsetAlignment'] as const;
const OPTIONAL_FEATURES = ['shader-f16', 'timestamp-query', 'subgroups'] as const;

export function parseKind(value: string, from: string): AdapterKind {
  if ((ADAPTER_KINDS as readonly string[]).includes(value)) return value as AdapterKind;
  throw new Error(`${from}: unknown WebGPU adapter '${value}'; expected one of ${ADAPTER_KINDS.join(', ')}`);
}

export function isSoftware(info: GPUAdapterInfo): boolean {
  return info.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe|softpipe|warp/i.test(adapterText(info));
}

export function adapterText(info: GPUAdapterInfo): string {
  return `${info.vendor} ${info.architecture} ${info.device} ${info.description}`;
}

/** Description and device name (llvmpipe's description is only the GL version; its device names the driver). */
export function describeAdapter(info: GPUAdapterInfo): string {
  const parts = [info.description, info.device].filter((p) => p && p.length > 0);
  if (parts.length === 2 && parts[0]!.includes(parts[1]!)) parts.pop();
  return parts.join(' / ') || `${info.vendor} ${info.architecture}`.trim() || 'unknown adapter';
}

/** navigator.gpu's adapter (browsers, Deno): the default provider of the main entry. */
export const browserAdapters: AdapterProvider = async () => {
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!gpu) throw new Error('webgpu: navigator.gpu is not available here (in Node, import @cnx/kernels through its Node entry, which uses Dawn)');
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('webgpu: navigator.gpu.requestAdapter() returned null');
  return { adapter, backend: 'browser', featureLevel: 'core', kind: 'browser' };
};

/** The adapter kind named by the option, else by env CNX_ADAPTER (where there is an environment). */
export function namedAdapterKind(opts: AcquireOptions): AdapterKind | undefined {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.CNX_ADAPTER;
  return opts.adapter !== undefined ? parseKind(opts.adapter, 'option adapter') : env ? parseKind(env, 'env CNX_ADAPTER') : undefined;
}

/** Acquire a device on the preferred adapter, reporting the choice. Throws naming every adapter tried. */
export async function acquireDevice(opts: AcquireOptions = {}): Promise<AcquiredDevice> {
  const named = namedAdapterKind(opts);
  const skipped: string[] = [];
  const chosen = await (opts.provider ?? browserAdapters)(named, skipped);
  const { adapter } = chosen;
  const requiredLimits: Record<string, number> = {};
  for (const k of REQUESTED_LIMITS) requiredLimits[k] = adapter.limits[k];
  const wanted = [...OPTIONAL_FEATURES, ...(opts.requiredFeatures ?? [])];
  const requiredFeatures = [...new Set(wanted)].filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'cnx' });

  const info = adapter.info;
  const limits: Record<string, number> = {};
  for (const k of REPORTED_LIMITS) limits[k] = device.limits[k];
  const report: AdapterReport = {
    kind: chosen.kind, backend: chosen.backend, vendor: info.vendor, architecture: info.architecture,
    device: info.device, description: info.description, isFallbackAdapter: info.isFallbackAdapter,
    featureLevel: chosen.featureLevel, features: [...device.features].sort(), adapterFeatures: [...adapter.features].sort(),
    instanceOptions: [...(chosen.instanceOptions ?? [])], limits, skipped,
  };
  const fallback = skipped.length ? ` (fell back: ${skipped.join('; ')})` : '';
  const description = `webgpu: ${describeAdapter(info)} [${chosen.backend}, ${chosen.kind}${chosen.featureLevel === 'compatibility' ? ', compatibility' : ''}]${fallback}`;
  return { device, adapter, report, description };
}

/** Multi-line human-readable report (adapter, backend, features, key limits). */
export function formatAdapterReport(r: AdapterReport): string {
  const mib = (n: number | undefined): string => (n === undefined ? '?' : `${(n / 2 ** 20).toFixed(0)} MiB`);
  return [
    `adapter: ${r.vendor || '?'} | ${r.architecture || '?'} | ${r.device || '?'} | ${r.description || '?'}${r.isFallbackAdapter ? ' (fallback adapter)' : ''}`,
    `backend: ${r.backend} (${r.kind}, ${r.featureLevel})`,
    `features: ${r.features.join(', ') || 'none'}${r.features.includes('shader-f16') ? '' : ' (no shader-f16)'}`,
    ...(r.instanceOptions.length ? [`instance options: ${r.instanceOptions.join(' ')}`] : []),
    `limits: storage binding ${mib(r.limits.maxStorageBufferBindingSize)}, buffer ${mib(r.limits.maxBufferSize)}, ` +
      `workgroup storage ${r.limits.maxComputeWorkgroupStorageSize} B, invocations ${r.limits.maxComputeInvocationsPerWorkgroup}, ` +
      `storage buffers/stage ${r.limits.maxStorageBuffersPerShaderStage}, workgroups/dim ${r.limits.maxComputeWorkgroupsPerDimension}`,
    ...(r.skipped.length ? [`skipped: ${r.skipped.join('; ')}`] : []),
  ].join('\n');
}
