// WebGPU adapters in Node from Dawn (the `webgpu` npm package), in an explicit, reported order
// (DESIGN.md "WebGPU without a GPU"). Node-only: reached from the package's Node entry (src/node.ts).
//
// Node gets WebGPU from the `webgpu` npm package (Dawn); browsers from navigator.gpu. In Node the
// adapters are tried in this order unless one is named (option `adapter` or env CNX_ADAPTER):
//   1. 'gpu'         a real GPU through Dawn's default backend (Vulkan with the system ICDs on Linux, plus
//                    NVIDIA's container-mounted ICD through VK_ADD_DRIVER_FILES when no ICD env is set);
//                    software adapters found this way (SwiftShader, llvmpipe, lavapipe) are rejected here.
//   2. 'swiftshader' SwiftShader's Vulkan driver from Debian's chromium-common package: Dawn option
//                    backend=vulkan with VK_ICD_FILENAMES pointed at vk_swiftshader_icd.json (set only
//                    when the env var is unset and the file exists).
//   3. 'lavapipe'    Mesa's Vulkan software driver (lavapipe, named "llvmpipe" in its adapter info): Dawn
//                    option backend=vulkan with VK_ICD_FILENAMES pointed at Mesa's lvp_icd*.json (or
//                    CNX_LAVAPIPE_ICD) while the instance is created, then restored, so that it does not
//                    leak into other instances. Needs Mesa 25 or newer: Dawn requires
//                    shader{Sampled,Storage}ImageArrayDynamicIndexing, which Debian 12's lavapipe (Mesa
//                    22.3) lacks; bookworm-backports has 25.0 (.ci/run installs it). The one software
//                    adapter here with `shader-f16` (lavapipe exposes shaderFloat16 and 16-bit storage), so
//                    the f16-compute kernels run and are tested on it.
//   4. 'llvmpipe'    Mesa llvmpipe through OpenGL ES: Dawn option backend=opengles, EGL_PLATFORM=surfaceless,
//                    requestAdapter({ featureLevel: 'compatibility' }); LIBGL_ALWAYS_SOFTWARE=1 and glvnd
//                    pointed at Mesa's EGL where unset, so that a GPU vendor's EGL is not picked instead.
// Each kind checks that the adapter it got is what it claims (a swiftshader/llvmpipe name).
// Vulkan instances ('gpu' on Linux/Windows, 'swiftshader') enable the Dawn adapter toggle
// vulkan_enable_f16_on_nvidia: Dawn hides `shader-f16` on NVIDIA's Vulkan driver unless it is asked for
// (a guard for conformance failures of f16 on some NVIDIA drivers, crbug.com/42251215); the f16 kernels
// are checked against the CPU reference by their tests on the adapter in use. It does nothing on other
// drivers. The report lists the instance options and the features the device got.
// Dawn reads the environment when `create()` runs, so env vars are set before each create that needs them.
//
// Probed on the development machine (Debian 12, no GPU, 2026-11): 'gpu' finds no adapter (Debian 12's
// lavapipe is too old for Dawn: "Vulkan shaderUniform*ArrayDynamicIndexing required"); 'lavapipe' with
// Mesa 25.0.7 from bookworm-backports (2026-12): "llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)",
// Vulkan, core, shader-f16, subgroups, timestamp-query (with it installed, 'gpu' finds lavapipe and skips
// it as a software adapter, saying so); 'swiftshader'
// works ("google | swiftshader | SwiftShader driver 5.0.0", 1 GiB bindings, subgroups, timestamp-query,
// no shader-f16); 'llvmpipe' works with libegl1 libgles2 libegl-mesa0 libgl1-mesa-dri installed
// ("llvmpipe (LLVM 15.0.6, 256 bits)", OpenGL ES 3.2 Mesa 22.3.6, compatibility mode, 128 MiB bindings).
//
// Falling back is never silent: the description says which adapter was preferred and why it was skipped.

import { adapterText, describeAdapter, isSoftware, ADAPTER_KINDS, type AdapterCandidate, type AdapterKind, type AdapterProvider } from './device.js';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
/** Mesa lavapipe's Vulkan driver manifest (Debian mesa-vulkan-drivers: lvp_icd.x86_64.json in 22.3, lvp_icd.json in 25.0). */
const LAVAPIPE_ICDS = ['/usr/share/vulkan/icd.d/lvp_icd.json', '/usr/share/vulkan/icd.d/lvp_icd.x86_64.json', '/usr/share/vulkan/icd.d/lvp_icd.aarch64.json'];
/** Vulkan ICDs of GPU drivers mounted by container runtimes outside the loader's default search path. */
const CONTAINER_GPU_ICDS = ['/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json'];
/** Mesa's glvnd EGL vendor file (Debian libegl-mesa0). */
const MESA_EGL_VENDOR = '/usr/share/glvnd/egl_vendor.d/50_mesa.json';
/** Dawn options of every Vulkan instance (see the header). */
export const VULKAN_INSTANCE_OPTIONS: readonly string[] = ['enable-dawn-features=vulkan_enable_f16_on_nvidia'];

function defaultDawnBackend(): string {
  return process.platform === 'darwin' ? 'metal' : process.platform === 'win32' ? 'd3d12' : 'vulkan';
}

interface DawnModule { create(options: string[]): GPU; globals: object }
let dawn: Promise<DawnModule> | undefined;

async function loadDawn(): Promise<DawnModule> {
  // Imported lazily so that browser bundles never touch the native module.
  // 'webgpu' is an optional peer dependency of the published packages: say how to get it when absent.
  dawn ??= import('webgpu').then((m) => {
    Object.assign(globalThis, m.globals); // GPUBufferUsage, GPUMapMode, ... as in browsers
    return m as unknown as DawnModule;
  }, (e: unknown) => {
    dawn = undefined;
    const code = (e as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes("'webgpu'")) {
      throw new Error("WebGPU in Node needs Dawn from the npm package 'webgpu' (an optional peer dependency of @cnx/kernels): " +
        "`npm install webgpu`; or use createBackend('wasm') / createBackend('cpu')");
    }
    throw e;
  });
  return dawn;
}

type Candidate = Omit<AdapterCandidate, 'kind'>;

// Every GPU instance that create() returns stays referenced for the life of the process (one per option
// set, reused): when the JS object of an instance is garbage-collected, Dawn destroys the native instance
// under devices still in use, and the process dies at random later (segfaults, "futex facility returned
// an unexpected error code", pthread mutex assertions; reproduced with 300 read-backs after dropping it).
const instances = new Map<string, GPU>();

function dawnInstance(create: DawnModule['create'], options: string[]): GPU {
  const key = options.join(' ');
  let gpu = instances.get(key);
  if (!gpu) instances.set(key, (gpu = create(options)));
  return gpu;
}

/**
 * Linux only, and only when no VK_* variable names driver files: a reason when no Vulkan driver
 * manifest (*.json) exists in the directories the Vulkan loader searches (Vulkan-Loader
 * docs/LoaderDriverInterface.md, "Driver Discovery on Linux": $XDG_CONFIG_DIRS, /etc, $XDG_DATA_HOME,
 * $XDG_DATA_DIRS, each + /vulkan/icd.d), else undefined (probe Dawn as usual).
 */
async function missingVulkanDrivers(): Promise<string | undefined> {
  const env = process.env;
  if (process.platform !== 'linux' || env.VK_ICD_FILENAMES || env.VK_DRIVER_FILES || env.VK_ADD_DRIVER_FILES) return undefined;
  const { readdirSync } = await import('node:fs');
  const split = (v: string | undefined, dflt: string) => (v && v.length > 0 ? v : dflt).split(':').filter((d) => d.length > 0);
  const home = env.XDG_DATA_HOME || (env.HOME ? `${env.HOME}/.local/share` : undefined);
  const dirs = [
    ...split(env.XDG_CONFIG_DIRS, '/etc/xdg'), '/etc', '/usr/local/etc', ...(home ? [home] : []), ...split(env.XDG_DATA_DIRS, '/usr/local/share:/usr/share'),
  ].map((d) => `${d}/vulkan/icd.d`);
  for (const d of dirs) {
    try {
      if (readdirSync(d).some((f) => f.endsWith('.json'))) return undefined;
    } catch { /* absent or unreadable: the loader skips it too */ }
  }
  return `no Vulkan driver installed (no ICD manifest in ${[...new Set(dirs)].join(', ')}); Dawn not probed`;
}

/** Try one adapter kind in Node; returns the adapter or a reason it is not there. */
async function tryNodeAdapter(kind: AdapterKind): Promise<Candidate | string> {
  const { create: createDawn } = await loadDawn();
  const create = (options: string[]): GPU => dawnInstance(createDawn, options);
  const { existsSync } = await import('node:fs');
  if (kind === 'gpu') {
    // NVIDIA's container runtime mounts the driver's Vulkan ICD outside the loader's search path; add it
    // (VK_ADD_DRIVER_FILES adds to, rather than replaces, the system ICDs) when nothing was configured.
    const env = process.env;
    if (!env.VK_ICD_FILENAMES && !env.VK_DRIVER_FILES && !env.VK_ADD_DRIVER_FILES) {
      const found = CONTAINER_GPU_ICDS.filter((f) => existsSync(f));
      if (found.length) env.VK_ADD_DRIVER_FILES = found.join(':');
    }
    // With no Vulkan driver manifest anywhere the loader searches, Dawn can find nothing and only prints
    // "Warning: vkCreateInstance: Found no drivers!" (which reads like a failure before the software
    // fallback works): skip the probe and say why.
    const noDriver = await missingVulkanDrivers();
    if (noDriver) return `gpu: ${noDriver}`;
    const instanceOptions = defaultDawnBackend() === 'vulkan' ? [...VULKAN_INSTANCE_OPTIONS] : [];
    const adapter = await create(instanceOptions).requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) return `gpu: no adapter from Dawn's default backend (${defaultDawnBackend()})`;
    if (isSoftware(adapter.info)) return `gpu: the default backend found only a software adapter (${describeAdapter(adapter.info)})`;
    return { adapter, backend: defaultDawnBackend(), featureLevel: 'core', instanceOptions };
  }
  if (kind === 'swiftshader') {
    if (!process.env.VK_ICD_FILENAMES) {
      if (!existsSync(SWIFTSHADER_ICD)) return `swiftshader: ${SWIFTSHADER_ICD} not found (Debian package chromium-common) and VK_ICD_FILENAMES unset`;
      process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    }
    const instanceOptions = ['backend=vulkan', ...VULKAN_INSTANCE_OPTIONS];
    const adapter = await create(instanceOptions).requestAdapter();
    if (!adapter) return `swiftshader: no Vulkan adapter with VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES}`;
    if (!/swiftshader/i.test(adapterText(adapter.info))) {
      return `swiftshader: VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES} gives ${describeAdapter(adapter.info)}, not SwiftShader`;
    }
    return { adapter, backend: 'vulkan', featureLevel: 'core', instanceOptions };
  }
  if (kind === 'lavapipe') {
    const icd = process.env.CNX_LAVAPIPE_ICD ?? LAVAPIPE_ICDS.find((f) => existsSync(f));
    if (!icd) return `lavapipe: no Mesa lavapipe driver (${LAVAPIPE_ICDS.join(', ')}; Debian package mesa-vulkan-drivers, Mesa 25+) and CNX_LAVAPIPE_ICD unset`;
    if (!existsSync(icd)) return `lavapipe: CNX_LAVAPIPE_ICD=${icd} does not exist`;
    const instanceOptions = ['backend=vulkan', ...VULKAN_INSTANCE_OPTIONS, 'adapter=llvmpipe'];
    // The loader reads VK_ICD_FILENAMES when Dawn creates its Vulkan instance (at the first request).
    const saved = process.env.VK_ICD_FILENAMES;
    process.env.VK_ICD_FILENAMES = icd;
    let adapter: GPUAdapter | null;
    try {
      adapter = await create(instanceOptions).requestAdapter();
    } finally {
      if (saved === undefined) delete process.env.VK_ICD_FILENAMES;
      else process.env.VK_ICD_FILENAMES = saved;
    }
    if (!adapter) {
      return `lavapipe: Dawn accepted no adapter from ${icd} (Dawn needs Mesa 25+: older lavapipe lacks ` +
        'shaderSampledImageArrayDynamicIndexing; Debian 12: mesa-vulkan-drivers from bookworm-backports)';
    }
    if (!/llvmpipe|lavapipe/i.test(adapterText(adapter.info))) return `lavapipe: ${icd} gives ${describeAdapter(adapter.info)}, not lavapipe`;
    return { adapter, backend: 'vulkan', featureLevel: 'core', instanceOptions };
  }
  // Mesa's EGL, software rasteriser, no display. On machines whose glvnd would pick a vendor driver
  // (NVIDIA), point it at Mesa's EGL; all only where not configured already.
  process.env.EGL_PLATFORM ??= 'surfaceless';
  process.env.LIBGL_ALWAYS_SOFTWARE ??= '1';
  if (!process.env.__EGL_VENDOR_LIBRARY_FILENAMES && existsSync(MESA_EGL_VENDOR)) process.env.__EGL_VENDOR_LIBRARY_FILENAMES = MESA_EGL_VENDOR;
  const adapter = await create(['backend=opengles']).requestAdapter({ featureLevel: 'compatibility' });
  if (!adapter) return 'llvmpipe: no OpenGL ES adapter (needs libegl1 libgles2 libegl-mesa0 libgl1-mesa-dri)';
  if (!/llvmpipe/i.test(adapterText(adapter.info))) return `llvmpipe: the OpenGL ES adapter is ${describeAdapter(adapter.info)}, not llvmpipe`;
  return { adapter, backend: 'opengles', featureLevel: 'compatibility', instanceOptions: ['backend=opengles'] };
}


/** Dawn's adapters in the order of the header (or only the named kind). */
export const dawnAdapters: AdapterProvider = async (named, skipped) => {
  for (const kind of named ? [named] : ADAPTER_KINDS) {
    let got: Candidate | string;
    try {
      got = await tryNodeAdapter(kind);
    } catch (e) {
      got = `${kind}: ${e instanceof Error ? e.message : String(e)}`;
    }
    if (typeof got === 'string') skipped.push(got);
    else return { ...got, kind };
  }
  throw new Error(`webgpu: no adapter (${named ? `CNX_ADAPTER/option asked for '${named}'` : `tried ${ADAPTER_KINDS.join(', ')}`}): ${skipped.join('; ')}`);
};
