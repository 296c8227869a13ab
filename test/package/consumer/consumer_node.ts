// A Node project's use of the published packages (test/package/pack_install.test.ts type-checks this file
// against the installed tarballs with skipLibCheck: false, then runs it): write the tiny model folder,
// load it as a real SD1.5 + ControlNeXt folder, generate, write a PNG, print a summary of the image.
import { CpuBackend, ops } from '@cnx/tensor';
import { backendNames, createBackend } from '@cnx/kernels';
import { UNet2DConditionModel } from '@cnx/unet';
import { imageToTensor, loadPipeline, readImage, tensorToImages, writePng, writeTinyModel } from '@cnx/controlnext';

const dir = process.argv[2] ?? 'tiny-sd15';
await writeTinyModel(dir, { seed: 2 });
const backend = await createBackend('wasm');
const { pipeline } = loadPipeline(dir, backend, {
  controlnext: `${dir}/controlnext/controlnet.safetensors`,
  controlnextUnet: `${dir}/controlnext/unet.safetensors`,
});
const controlImage = imageToTensor(readImage(`${dir}/controlnext/example_condition.png`), backend);
const { images } = await pipeline.generate({ prompt: 'a room', seed: 7, numInferenceSteps: 2, controlImage });
const data = await images.data();
const [image] = await tensorToImages(images);
writePng(`${dir}-out.png`, image!);
let sum = 0, sumSq = 0;
for (const v of data) { sum += v; sumSq += v * v; }
pipeline.dispose();
backend.destroy();

// The CPU reference backend and a model class, through the public API.
const cpu = new CpuBackend();
const y = ops.add(cpu.fromRaw(Float32Array.of(1, 2), [2]), cpu.fromRaw(Float32Array.of(3, 4), [2]));
const added = Array.from(await y.data());
const unet = UNet2DConditionModel.fromFolder(`${dir}/unet`, cpu);
const params = unet.numParameters();
unet.dispose();

// WebGPU needs the optional peer 'webgpu' in Node; without it the error says so.
let webgpu = 'available';
try {
  (await createBackend('webgpu')).destroy();
} catch (e) {
  webgpu = (e as Error).message;
}
console.log(JSON.stringify({ shape: images.shape, sum, sumSq, added, params, backends: backendNames(), webgpu }));
