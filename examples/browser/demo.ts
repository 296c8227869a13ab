// The browser demo (examples/browser/index.html; `npm run demo` bundles it and serves it on localhost):
// Stable Diffusion 1.5 + ControlNeXt generating in the page, on the browser's WebGPU adapter (or the CPU
// reference backend), from
//  - the tiny random model (tinyModelFiles: no download),
//  - a diffusers folder at a URL (plus ControlNeXt's files at their URLs): every file goes through the
//    Cache API, so a second visit reads the weights from the browser's storage instead of the network,
//  - a diffusers folder picked on this computer (plus ControlNeXt's files),
// with a progress bar (download, model build, denoising steps, decode) and the adapter shown. The model
// is built from bytes with pipelineFromFiles, the browser counterpart of loadPipeline; only the public
// API of the packages is used. test/browser/demo.test.ts drives this page in headless Chromium.

import { createBackend } from '@cnx/kernels';
import {
  imageToTensor, pipelineFromFiles, resizeImage, rgbaToImage, splitTinyModelFiles, tensorToImages, tinyModelFiles,
  type DiffusionPipeline,
} from '@cnx/controlnext';
import type { Backend } from '@cnx/tensor';
import type { ModelFiles } from '@cnx/unet';

const CACHE_NAME = 'cnx-model-files-v1';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const input = (id: string) => $<HTMLInputElement>(id);
const logEl = $('log'), statusEl = $('status'), progressEl = $<HTMLProgressElement>('progress');

function log(msg: string): void {
  logEl.textContent += `${msg}\n`;
  logEl.scrollTop = logEl.scrollHeight;
}

/** Progress in [0, 1] with a status line; yields to the browser so the bar repaints. */
async function progress(value: number, status: string): Promise<void> {
  progressEl.value = Math.max(0, Math.min(1, value));
  statusEl.textContent = status;
  await new Promise((r) => setTimeout(r, 0));
}

// ------------------------------------------------------------------------------------------ files

/** Counters of the last load: files read from the Cache API and files downloaded (then stored). */
const cacheStats = { hits: 0, stored: 0, bytes: 0 };

/** The bytes at `url`: from the Cache API when there, else downloaded (with progress) and stored. Optional files: undefined on 404. */
async function fetchCached(url: string, optional: boolean, onBytes: (received: number, total: number) => void): Promise<Uint8Array | undefined> {
  const cache = 'caches' in globalThis ? await caches.open(CACHE_NAME) : undefined;
  const hit = await cache?.match(url);
  if (hit) {
    cacheStats.hits++;
    const bytes = new Uint8Array(await hit.arrayBuffer());
    cacheStats.bytes += bytes.byteLength;
    return bytes;
  }
  const res = await fetch(url);
  if (!res.ok) {
    if (optional && res.status === 404) return undefined;
    throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  }
  const total = Number(res.headers.get('content-length')) || 0;
  const chunks: Uint8Array[] = [];
  let received = 0;
  const reader = res.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.byteLength;
    onBytes(received, total);
  }
  const bytes = new Uint8Array(received);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.byteLength; }
  await cache?.put(url, new Response(bytes, { headers: { 'content-type': res.headers.get('content-type') ?? 'application/octet-stream' } }));
  cacheStats.stored++;
  cacheStats.bytes += bytes.byteLength;
  return bytes;
}

/** The files of a diffusers SD1.5 folder that pipelineFromFiles reads, as [path, optional] (weights chosen below). */
const SD_FILES: readonly (readonly [string, boolean])[] = [
  ['unet/config.json', false], ['vae/config.json', false], ['text_encoder/config.json', false],
  ['tokenizer/vocab.json', false], ['tokenizer/merges.txt', false], ['tokenizer/special_tokens_map.json', true],
  ['tokenizer/tokenizer_config.json', true], ['scheduler/scheduler_config.json', false],
];
const WEIGHTS: Readonly<Record<string, readonly string[]>> = {
  unet: ['diffusion_pytorch_model.safetensors'], vae: ['diffusion_pytorch_model.safetensors'], text_encoder: ['model.safetensors'],
};
const fp16Name = (name: string) => name.replace(/\.safetensors$/, '.fp16.safetensors');

interface ModelSource { key: string; sd: ModelFiles; controlnext?: ModelFiles; controlnextUnet?: Uint8Array }

async function fromUrl(base: string, cnxUrl: string, cnxUnetUrl: string, preferFp16: boolean): Promise<ModelSource> {
  const root = base.replace(/\/+$/, '');
  const files: Record<string, Uint8Array> = {};
  const jobs: { path: string; url: string; optional: boolean }[] = SD_FILES.map(([path, optional]) => ({ path, url: `${root}/${path}`, optional }));
  let done = 0;
  const fetchOne = async (url: string, optional: boolean) => fetchCached(url, optional, (r, t) => {
    void progress(0.4 * (done / (jobs.length + 3)), `downloading ${url.split('/').slice(-2).join('/')}: ${(r / 2 ** 20).toFixed(1)}${t ? ` / ${(t / 2 ** 20).toFixed(1)}` : ''} MiB`);
  });
  for (const j of jobs) {
    const bytes = await fetchOne(j.url, j.optional);
    if (bytes) files[j.path] = bytes;
    done++;
  }
  for (const [folder, [name]] of Object.entries(WEIGHTS)) {
    const order = preferFp16 ? [fp16Name(name!), name!] : [name!];
    let got: Uint8Array | undefined;
    for (const [i, n] of order.entries()) {
      got = await fetchOne(`${root}/${folder}/${n}`, i < order.length - 1);
      if (got) { files[`${folder}/${n}`] = got; break; }
    }
    done++;
  }
  const src: ModelSource = { key: `url:${root}|${cnxUrl}|${cnxUnetUrl}|${preferFp16}`, sd: files };
  if (cnxUrl) src.controlnext = { 'controlnet.safetensors': (await fetchOne(cnxUrl, false))! };
  if (cnxUnetUrl) src.controlnextUnet = await fetchOne(cnxUnetUrl, false);
  log(`files: ${cacheStats.hits} from the browser cache, ${cacheStats.stored} downloaded and stored (${(cacheStats.bytes / 2 ** 20).toFixed(1)} MiB)`);
  return src;
}

async function fromPickedFiles(folder: FileList, cnxFiles: FileList): Promise<ModelSource> {
  if (folder.length === 0) throw new Error('pick the diffusers folder (the one holding unet/, vae/, text_encoder/, tokenizer/, scheduler/)');
  const sd: Record<string, Uint8Array> = {};
  for (const f of Array.from(folder)) {
    // webkitRelativePath is '<picked folder>/unet/config.json': drop the first segment.
    const rel = f.webkitRelativePath.split('/').slice(1).join('/');
    if (/^(unet|vae|text_encoder|tokenizer|scheduler)\//.test(rel)) sd[rel] = new Uint8Array(await f.arrayBuffer());
  }
  const src: ModelSource = { key: `files:${Array.from(folder).map((f) => `${f.webkitRelativePath}:${f.size}:${f.lastModified}`).join(',')}`, sd };
  for (const f of Array.from(cnxFiles)) {
    const bytes = new Uint8Array(await f.arrayBuffer());
    if (f.name === 'unet.safetensors') src.controlnextUnet = bytes;
    else src.controlnext = { 'controlnet.safetensors': bytes };
  }
  return src;
}

async function tinySource(): Promise<ModelSource> {
  const { sd, controlnext, controlnextUnet } = splitTinyModelFiles(await tinyModelFiles({ seed: 0 }));
  return { key: 'tiny', sd, controlnext, controlnextUnet };
}

// ------------------------------------------------------------------------------------------ generation

let current: { backendName: string; backend: Backend } | undefined;
let loaded: { key: string; pipeline: DiffusionPipeline } | undefined;

/** The backend (kept across generations: its compiled pipelines are reused) and the pipeline of `source`. */
async function pipelineFor(source: ModelSource, backendName: string, t0: number): Promise<{ backend: Backend; pipeline: DiffusionPipeline }> {
  if (current?.backendName !== backendName) {
    loaded?.pipeline.dispose();
    loaded = undefined;
    current?.backend.destroy();
    await progress(0.4, `acquiring the ${backendName} backend`);
    const backend = await createBackend(backendName);
    current = { backendName, backend };
    $('adapter').textContent = backend.description.split('\n')[0]!;
  }
  const { backend } = current;
  if (loaded?.key !== source.key) {
    loaded?.pipeline.dispose();
    await progress(0.45, 'building the models from the files');
    const prefer = input('prefer-fp16').checked ? 'fp16' : 'fp32';
    const { pipeline } = pipelineFromFiles(source.sd, backend, { prefer, controlnext: source.controlnext, controlnextUnet: source.controlnextUnet });
    loaded = { key: source.key, pipeline };
    log(`model built in ${((performance.now() - t0) / 1000).toFixed(1)} s on ${backend.description.split('\n')[0]}`);
  }
  return { backend, pipeline: loaded.pipeline };
}

/** The picked control image resized to size x size; without one, a radial gradient (near in the middle, a depth-map stand-in). */
async function controlImageFor(size: number, backend: Backend) {
  const file = input('control').files?.[0];
  if (!file) {
    const planes = new Float32Array(3 * size * size);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const v = Math.max(0, 1 - Math.hypot(x - size / 2, y - size / 2) / (size / Math.SQRT2));
        for (let c = 0; c < 3; c++) planes[c * size * size + y * size + x] = v;
      }
    }
    return backend.fromRaw(planes, [1, 3, size, size]);
  }
  const bitmap = await createImageBitmap(file);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d')!;
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  return imageToTensor(resizeImage(rgbaToImage(rgba, bitmap.width, bitmap.height), size, size), backend);
}

async function generate(): Promise<void> {
  const t0 = performance.now();
  cacheStats.hits = cacheStats.stored = cacheStats.bytes = 0;
  const sourceKind = (document.querySelector('input[name=source]:checked') as HTMLInputElement).value;
  const backendName = $<HTMLSelectElement>('backend').value;
  await progress(0, 'reading the model files');
  const source = sourceKind === 'tiny' ? await tinySource()
    : sourceKind === 'url' ? await fromUrl(input('model-url').value.trim(), input('cnx-url').value.trim(), input('cnx-unet-url').value.trim(), input('prefer-fp16').checked)
      : await fromPickedFiles(input('model-folder').files!, input('cnx-files').files!);
  const { backend, pipeline } = await pipelineFor(source, backendName, t0);
  const size = Number($<HTMLSelectElement>('size').value);
  const steps = Number(input('steps').value);
  const controlImage = pipeline.components.control ? await controlImageFor(size, backend) : undefined;
  const ts = performance.now();
  await progress(0.5, `denoising: step 0/${steps}`);
  const { images, latents } = await pipeline.generate({
    prompt: input('prompt').value, negativePrompt: input('negative').value, numInferenceSteps: steps,
    guidanceScale: Number(input('guidance').value), seed: Number(input('seed').value), height: size, width: size,
    controlImage, controlScale: Number(input('control-scale').value),
    onStepEnd: async (s) => {
      await backend.sync();
      const per = (performance.now() - ts) / 1000 / (s.index + 1);
      await progress(0.5 + 0.45 * ((s.index + 1) / s.total), `denoising: step ${s.index + 1}/${s.total}, ${per.toFixed(2)} s/step, ETA ${(per * (s.total - s.index - 1)).toFixed(0)} s`);
    },
  });
  await progress(0.97, 'decoding');
  const [image] = await tensorToImages(images);
  images.dispose();
  latents.dispose();
  controlImage?.dispose();
  const canvas = $<HTMLCanvasElement>('out');
  canvas.width = size;
  canvas.height = size;
  const ctx = canvas.getContext('2d')!;
  const pixels = ctx.createImageData(size, size);
  for (let i = 0; i < size * size; i++) {
    for (let c = 0; c < 3; c++) pixels.data[i * 4 + c] = Math.round(255 * image!.get(Math.floor(i / size), i % size, c));
    pixels.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(pixels, 0, 0);
  const seconds = (performance.now() - t0) / 1000;
  log(`generated ${size}x${size}, ${steps} steps, seed ${input('seed').value} in ${seconds.toFixed(1)} s`);
  await progress(1, `done in ${seconds.toFixed(1)} s`);
}

$('cache-name').textContent = CACHE_NAME;
$('clear-cache').addEventListener('click', async () => {
  const removed = 'caches' in globalThis ? await caches.delete(CACHE_NAME) : false;
  log(removed ? `cleared ${CACHE_NAME}` : 'nothing cached');
});
$('generate').addEventListener('click', async () => {
  const button = $<HTMLButtonElement>('generate');
  button.disabled = true;
  try {
    await generate();
  } catch (e) {
    statusEl.textContent = `error: ${e instanceof Error ? e.message : String(e)}`;
    log(statusEl.textContent);
  } finally {
    button.disabled = false;
  }
});
if (!('gpu' in navigator)) {
  $('adapter').textContent = 'this browser has no WebGPU (navigator.gpu); the cpu backend still works';
  $<HTMLSelectElement>('backend').value = 'cpu';
}
statusEl.textContent = 'idle';
document.title = `${document.title} (ready)`;
