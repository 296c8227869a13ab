// A browser project's use of the published packages (bundler resolution with the "browser" condition,
// DOM types, no @types/node): type-checked by test/package/pack_install.test.ts with skipLibCheck: false.
import { createBackend } from '@cnx/kernels';
import { pipelineFromFiles, splitTinyModelFiles, tensorToImages, tinyModelFiles } from '@cnx/controlnext';
import type { Tensor } from '@cnx/tensor';
import { createScheduler } from '@cnx/unet';

export async function generateInPage(canvas: HTMLCanvasElement): Promise<Tensor> {
  const backend = await createBackend('webgpu');
  const { sd, controlnext, controlnextUnet } = splitTinyModelFiles(await tinyModelFiles());
  const { pipeline } = pipelineFromFiles(sd, backend, { controlnext, controlnextUnet, scheduler: 'euler' });
  const { images } = await pipeline.generate({ prompt: 'a cat', numInferenceSteps: 2, height: 64, width: 64 });
  const [img] = await tensorToImages(images);
  const ctx = canvas.getContext('2d')!;
  const pixels = ctx.createImageData(img!.shape[1]!, img!.shape[0]!);
  for (let i = 0; i < pixels.width * pixels.height; i++) {
    for (let c = 0; c < 3; c++) pixels.data[i * 4 + c] = Math.round(255 * Number(img!.data[i * 3 + c]));
    pixels.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(pixels, 0, 0);
  void createScheduler;
  return images;
}
