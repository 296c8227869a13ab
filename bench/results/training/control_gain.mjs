// Does a trained checkpoint USE its control? Measured on the training objective itself, so that neither the
// random tiny VAE's decoder nor the sampler stands in between: for held-out shapes samples (indices after the
// training set) and fixed noise, the denoising loss mse(unet(noisy, t, text, control), noise) with
//   true     each sample's own control image,
//   shuffled the control of another held-out sample (same batch, rolled by one),
//   none     no control injected at all,
// and the correlation of the implied clean latents x0 = (noisy - sqrt(1 - ac) eps) / sqrt(ac) with the target's.
// A module that carries the shape gives true < shuffled in loss and true > shuffled in x0 correlation.
//
// usage (after npm run build, from the repository root):
//   node bench/results/training/control_gain.mjs CHECKPOINT_DIR [RESOLUTION=96] [COUNT=48] [START=1024] [BASE_DIR]
// The base model is BASE_DIR, default the tiny one (seed 0), as `cnx train --model tiny` trains it.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPipeline, shapeSample, trainingNoiseSchedule, SD15_SCHEDULER_CONFIG, writeTinyModel } from '@cnx/controlnext';
import { createBackend } from '@cnx/kernels';
import { noGrad, ops } from '@cnx/tensor';

const [ckpt, resArg, countArg, startArg, baseArg] = process.argv.slice(2);
if (!ckpt) { console.error('usage: node control_gain.mjs CHECKPOINT_DIR [RESOLUTION] [COUNT] [START]'); process.exit(2); }
const R = Number(resArg ?? 96), N = Number(countArg ?? 48), START = Number(startArg ?? 1024);
const be = await createBackend('wasm');
const base = mkdtempSync(join(tmpdir(), 'cnx-gain-'));
if (!baseArg) await writeTinyModel(join(base, 'm'), { seed: 0 });
const { pipeline } = loadPipeline(baseArg ?? join(base, 'm'), be, { controlnext: ckpt, controlnextUnet: join(ckpt, 'unet.safetensors') });
const { unet, vae, textEncoder, control } = pipeline.components;
const cnx = control.controlnext;
const ac = trainingNoiseSchedule(SD15_SCHEDULER_CONFIG).alphasCumprod;

// xorshift normal noise, fixed
let st = 12345;
const uni = () => { st ^= st << 13; st >>>= 0; st ^= st >>> 17; st ^= st << 5; st >>>= 0; return (st + 0.5) / 4294967296; };
const normal = (n) => Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(uni())) * Math.cos(2 * Math.PI * uni()));

function corr(a, b) {
  let ma = 0, mb = 0; for (let i = 0; i < a.length; i++) { ma += a[i]; mb += b[i]; } ma /= a.length; mb /= b.length;
  let ab = 0, aa = 0, bb = 0; for (let i = 0; i < a.length; i++) { const x = a[i] - ma, y = b[i] - mb; ab += x * y; aa += x * x; bb += y * y; }
  return ab / Math.sqrt(aa * bb);
}

const B = 8;
const T = [50, 200, 500, 800];
const acc = Object.fromEntries(T.map((t) => [t, { true: [0, 0], shuffled: [0, 0], none: [0, 0] }]));
for (let g = 0; g < N; g += B) {
  const samples = Array.from({ length: B }, (_, k) => shapeSample(START + g + k, { size: R, seed: 0 }));
  const planar = (bytes, norm) => { const o = new Float32Array(3 * R * R); for (let c = 0; c < 3; c++) for (let p = 0; p < R * R; p++) o[c * R * R + p] = norm ? bytes[3 * p + c] / 127.5 - 1 : bytes[3 * p + c] / 255; return o; };
  const cat = (arrs) => { const o = new Float32Array(arrs.reduce((n, a) => n + a.length, 0)); let off = 0; for (const a of arrs) { o.set(a, off); off += a.length; } return o; };
  const x = be.fromRaw(cat(samples.map((s) => planar(s.target, true))), [B, 3, R, R]);
  const post = noGrad(() => vae.encode(x));
  const lat = Float32Array.from(await post.mean.data(), (v) => v * vae.scalingFactor);
  const lshape = post.mean.shape;
  [x, post.mean, post.logvar, post.std].forEach((t) => t.dispose());
  const ctrlTrue = cat(samples.map((s) => planar(s.control, false)));
  const per = 3 * R * R;
  const ctrlShuf = cat(samples.map((_, k) => ctrlTrue.subarray(((k + 1) % B) * per, ((k + 1) % B + 1) * per)));
  const text = noGrad(() => textEncoder.encode(samples.map((s) => s.prompt)));
  for (const t of T) {
    const noise = normal(lat.length);
    const a = Math.sqrt(ac[t]), s = Math.sqrt(1 - ac[t]);
    const noisy = Float32Array.from(lat, (v, i) => a * v + s * noise[i]);
    for (const mode of ['true', 'shuffled', 'none']) {
      const nt = be.fromRaw(noisy, lshape), tt = be.fromRaw(new Float32Array(B).fill(t), [B]);
      let hooks, img, ctrl;
      if (mode !== 'none') {
        img = be.fromRaw(mode === 'true' ? ctrlTrue : ctrlShuf, [B, 3, R, R]);
        ctrl = noGrad(() => cnx.control(img, tt));
        hooks = cnx.hooks(ctrl, B);
      }
      const pred = noGrad(() => unet.forward(nt, tt, text, hooks ? { hooks: hooks.hooks } : {}));
      hooks?.dispose(); img?.dispose(); ctrl?.out.dispose();
      const p = await pred.data();
      [pred, nt, tt].forEach((q) => q.dispose());
      let mse = 0; for (let i = 0; i < p.length; i++) mse += (p[i] - noise[i]) ** 2;
      const x0 = Float32Array.from(p, (e, i) => (noisy[i] - s * e) / a);
      const n1 = lat.length / B;
      let c = 0; for (let k = 0; k < B; k++) c += corr(x0.subarray(k * n1, (k + 1) * n1), lat.subarray(k * n1, (k + 1) * n1));
      acc[t][mode][0] += mse / p.length * B;
      acc[t][mode][1] += c;
    }
  }
  text.dispose();
}
console.log(`checkpoint ${ckpt}, base ${baseArg ?? 'tiny (seed 0)'}: ${N} held-out shapes samples (indices ${START}..${START + N - 1}) at ${R}px, fixed noise`);
console.log('t,loss_true,loss_shuffled,loss_none,x0_corr_true,x0_corr_shuffled,x0_corr_none');
for (const t of T) {
  const r = acc[t];
  console.log([t, r.true[0] / N, r.shuffled[0] / N, r.none[0] / N, r.true[1] / N, r.shuffled[1] / N, r.none[1] / N].map((v, i) => i === 0 ? v : v.toFixed(4)).join(','));
}
pipeline.dispose();
be.destroy();
rmSync(base, { recursive: true, force: true });
