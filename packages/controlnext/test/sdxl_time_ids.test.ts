// SDXL's micro-conditioning rows (sdxlTimeIdRows) as the reference pipelines build them: text-to-image
// (StableDiffusionXLPipeline / StableDiffusionXLControlNeXtPipeline: negative sizes only when both are
// given, cat([neg, pos]).repeat(B, 1) pairing) and image-to-image (StableDiffusionXLImg2ImgPipeline:
// negative sizes default to the positive ones, the positive crops on the negative side, or the aesthetic
// scores with requires_aesthetics_score; rows neg x B then pos x B).

import { describe, expect, it } from 'vitest';
import { sdxlTimeIdRows } from '@cnx/controlnext';

const setup = { height: 64, width: 48, cfg: true, imageToImage: false, requiresAestheticsScore: false };

describe('sdxlTimeIdRows', () => {
  it('text-to-image defaults: (h, w), (0, 0), (h, w) on both sides', () => {
    expect(sdxlTimeIdRows({}, { ...setup, batch: 1 })).toEqual([[64, 48, 0, 0, 64, 48], [64, 48, 0, 0, 64, 48]]);
  });
  it('text-to-image, B = 2, distinct negatives: rows alternate neg, pos (the reference repeat, not the UNet batch order)', () => {
    const pos = [1024, 768, 32, 16, 64, 48], neg = [512, 384, 8, 0, 1024, 1024];
    const rows = sdxlTimeIdRows({
      originalSize: [1024, 768], cropsCoordsTopLeft: [32, 16], negativeOriginalSize: [512, 384], negativeCropsCoordsTopLeft: [8, 0], negativeTargetSize: [1024, 1024],
    }, { ...setup, batch: 2 });
    expect(rows).toEqual([neg, pos, neg, pos]);
  });
  it('text-to-image: one negative size alone does not switch the negative side; no CFG: B positive rows', () => {
    const rows = sdxlTimeIdRows({ negativeOriginalSize: [1, 2], negativeCropsCoordsTopLeft: [3, 4] }, { ...setup, batch: 1 });
    expect(rows).toEqual([[64, 48, 0, 0, 64, 48], [64, 48, 0, 0, 64, 48]]);
    expect(sdxlTimeIdRows({ targetSize: [32, 32] }, { ...setup, cfg: false, batch: 3 })).toEqual(Array(3).fill([64, 48, 0, 0, 32, 32]));
  });
  it('image-to-image: negative original / target default to the positive ones, the positive crops on both; neg x B then pos x B', () => {
    const rows = sdxlTimeIdRows({ cropsCoordsTopLeft: [4, 2], negativeCropsCoordsTopLeft: [9, 9], negativeTargetSize: [8, 8] },
      { ...setup, imageToImage: true, batch: 2 });
    expect(rows).toEqual([[64, 48, 4, 2, 8, 8], [64, 48, 4, 2, 8, 8], [64, 48, 4, 2, 64, 48], [64, 48, 4, 2, 64, 48]]);
  });
  it('image-to-image with requires_aesthetics_score: original + crops + score (6.0 / 2.5 by default), negative crops on the negative side', () => {
    const rows = sdxlTimeIdRows({ negativeCropsCoordsTopLeft: [9, 9], aestheticScore: 7 },
      { ...setup, imageToImage: true, requiresAestheticsScore: true, batch: 1 });
    expect(rows).toEqual([[64, 48, 9, 9, 2.5], [64, 48, 0, 0, 7]]);
  });
  it('a malformed pair is an error naming the option', () => {
    expect(() => sdxlTimeIdRows({ originalSize: [1] as unknown as [number, number] }, { ...setup, batch: 1 })).toThrow(/originalSize must be a pair of numbers \[h, w\], found \[1\]/);
  });
});
