// Research task: a cross-normalisation variant with a clamp, as a NEW fused op (float64 CPU reference +
// WGSL kernel) defined outside the library, and a ControlNeXt variant that injects with it. One file,
// public API only (defineOp / runOp1 from @cnx/tensor; the kernel helpers of @cnx/kernels).
//
// x [N, C, h, w] feature; control [Nc, C, h', w'] (Nc = N or 1); scale s: a number or [N]; clamp m > 0:
//   c      = adaptive_avg_pool2d(control[nc], (h, w))
//   mu, sigma of x[n] and of c over C*h*w (unbiased std, as ControlNeXt's pool-then-norm)
//   z      = clamp((c - mu_c) / (sigma_c + eps), -m, m)       <- the new part: bounded control outliers
//   y[n]   = x[n] + s[n] * (z * sigma_x + mu_x)
// With m = Infinity it equals the library's crossNorm(order 'pool_then_norm') (checked by the test).
//
// WebGPU: one workgroup per sample (an example, not tuned): the shifted two-pass moments of x[n] and of
// the pooled control (wgslMoments.chunkMomentsWgsl over the whole sample), then the apply loop.

import { gridFor, packUniforms, wgslMath, wgslMoments, type GpuContext } from '@cnx/kernels';
import { defineOp, expectF32, expectRank, f32, formatShape, poolBins, runOp1, type Tensor } from '@cnx/tensor';
import { variants, type ControlNeXtVariant, type InjectionMethod } from '@cnx/controlnext';

export interface ClampedCrossNormParams {
  eps: number;
  /** Bound m of the normalised control (> 0; Infinity: no clamp). */
  clamp: number;
  /** The scale when no [N] scale tensor is given. */
  scale: number;
}

const WG = 256;

/** The kernel source (pure function of whether the scale is a tensor). */
export function clampedCrossNormWgsl(scaleTensor: boolean): string {
  const moments = (name: string, value: string) => /* wgsl */ `
  var ${name}Mean: f32;
  var ${name}Std: f32;
  {
    let pilot = ${value.replace(/\be\b/g, '0u')};
    let start = 0u;
    let end = u.len;${wgslMoments.chunkMomentsWgsl({ first: value })}
    ${name}Mean = pilot + dmean;
    ${name}Std = sqrt(m2 / (count - 1.0));
  }`;
  return /* wgsl */ `
struct U { n: u32, nc: u32, c: u32, h: u32, w: u32, hc: u32, wc: u32, len: u32, eps: f32, clampv: f32, scale: f32, pad: u32 }
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> Ctl: array<f32>;
${scaleTensor ? '@group(0) @binding(2) var<storage, read> S: array<f32>;' : ''}
@group(0) @binding(${scaleTensor ? 3 : 2}) var<storage, read_write> Y: array<f32>;
@group(0) @binding(${scaleTensor ? 4 : 3}) var<uniform> u: U;
const WG = ${WG}u;
var<workgroup> red: array<f32, WG>;
${wgslMath.WORKGROUP_SUM}

// Mean of control[nc] over the adaptive-pool bin of element e = (ch, i, j) of [C, h, w].
fn pooled(nc: u32, e: u32) -> f32 {
  let j = e % u.w;
  let i = (e / u.w) % u.h;
  let ch = e / (u.w * u.h);
  let y0 = (i * u.hc) / u.h;
  let y1 = ((i + 1u) * u.hc + u.h - 1u) / u.h;
  let x0 = (j * u.wc) / u.w;
  let x1 = ((j + 1u) * u.wc + u.w - 1u) / u.w;
  var s = 0.0;
  for (var y = y0; y < y1; y++) {
    for (var x = x0; x < x1; x++) { s += Ctl[((nc * u.c + ch) * u.hc + y) * u.wc + x]; }
  }
  return s / f32((y1 - y0) * (x1 - x0));
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let n = wid.x + wid.y * nwg.x;
  if (n >= u.n) { return; }
  let nc = select(n, 0u, u.nc == 1u);
  let base = n * u.len;
${moments('x', 'X[base + e]')}
${moments('c', 'pooled(nc, e)')}
  let s = ${scaleTensor ? 'S[n]' : 'u.scale'};
  for (var e = tid; e < u.len; e += WG) {
    let z = clamp((pooled(nc, e) - cMean) / (cStd + u.eps), -u.clampv, u.clampv);
    Y[base + e] = X[base + e] + s * (z * xStd + xMean);
  }
}`;
}

function clampedCrossNormWebgpu(ctx: GpuContext, x: Tensor, control: Tensor, scale: Tensor | undefined, p: ClampedCrossNormParams): Tensor {
  const [N, C, h, w] = x.shape as [number, number, number, number];
  const [Nc, , hc, wc] = control.shape as [number, number, number, number];
  const y = ctx.empty(x.shape);
  const bindings = scale ? [x, control, scale, y] : [x, control, y];
  ctx.dispatch({
    label: 'examples_clamped_cross_norm', code: clampedCrossNormWgsl(scale !== undefined), bindings,
    uniforms: packUniforms([
      ['u32', N], ['u32', Nc], ['u32', C], ['u32', h], ['u32', w], ['u32', hc], ['u32', wc], ['u32', C * h * w],
      // f32 has no Infinity literal in WGSL; the largest f32 clamps nothing.
      ['f32', p.eps], ['f32', Number.isFinite(p.clamp) ? p.clamp : 3.4e38], ['f32', p.scale], ['u32', 0],
    ]),
    workgroups: gridFor(N, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
  return y;
}

/** Mean and unbiased std of a[start, start + len) in float64. */
function meanStd(a: ArrayLike<number>, start: number, len: number): [number, number] {
  let mu = 0;
  for (let i = start; i < start + len; i++) mu += a[i]!;
  mu /= len;
  let ss = 0;
  for (let i = start; i < start + len; i++) ss += (a[i]! - mu) ** 2;
  return [mu, Math.sqrt(ss / (len - 1))];
}

/** Inputs [x, control, scale?]; the output has x's shape. */
export const clampedCrossNormOp = defineOp<ClampedCrossNormParams>({
  name: 'examples.clamped_cross_norm',
  outputs([x, control, scale], p) {
    const op = 'clampedCrossNorm';
    expectF32(op, [x, control, scale], ['feature', 'control', 'scale']);
    const xs = expectRank(op, x, 4, 'feature [N, C, h, w]').shape;
    const cs = expectRank(op, control, 4, 'control [N, C, h, w]').shape;
    if (xs[1] !== cs[1] || (cs[0] !== xs[0] && cs[0] !== 1)) throw new Error(`${op}: control ${formatShape(cs)} does not match feature ${formatShape(xs)} (channels must agree, batch N or 1)`);
    if (scale && (scale.shape.length !== 1 || scale.shape[0] !== xs[0])) throw new Error(`${op}: expected a per-sample scale [${xs[0]}], found ${formatShape(scale.shape)}`);
    if (!(p.clamp > 0)) throw new Error(`${op}: expected a clamp bound > 0, found ${p.clamp}`);
    if (xs[1]! * xs[2]! * xs[3]! < 2) throw new Error(`${op}: the std of a sample needs at least 2 values, found ${formatShape(xs)}`);
    return f32(xs);
  },
  cpu([x, control, scale], p) {
    const [N, C, h, w] = x!.shape as [number, number, number, number];
    const [Nc, , hc, wc] = control!.shape as [number, number, number, number];
    const X = x!.data, Ctl = control!.data, S = scale?.data;
    const per = C * h * w;
    const rows = poolBins(hc, h), cols = poolBins(wc, w);
    const pooled = new Float64Array(Nc * per);
    for (let nc = 0; nc < Nc * C; nc++) {
      for (let i = 0; i < h; i++) {
        for (let j = 0; j < w; j++) {
          const [y0, y1] = rows[i]!, [x0, x1] = cols[j]!;
          let s = 0;
          for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) s += Ctl[(nc * hc + yy) * wc + xx]!;
          pooled[(nc * h + i) * w + j] = s / ((y1 - y0) * (x1 - x0));
        }
      }
    }
    const out = new Float32Array(N * per);
    for (let n = 0; n < N; n++) {
      const nc = Nc === 1 ? 0 : n;
      const [mx, sx] = meanStd(X, n * per, per);
      const [mc, sc] = meanStd(pooled, nc * per, per);
      const s = S ? S[n]! : p.scale;
      for (let e = 0; e < per; e++) {
        const z = Math.min(p.clamp, Math.max(-p.clamp, (pooled[nc * per + e]! - mc) / (sc + p.eps)));
        out[n * per + e] = X[n * per + e]! + s * (z * sx + mx);
      }
    }
    return [out];
  },
  kernels: { webgpu: (ctx: GpuContext, [x, control, scale], p) => [clampedCrossNormWebgpu(ctx, x!, control!, scale, p)] },
});

/** The op as a function: x + s * (clamp((c - mu_c) / (sigma_c + eps), -m, m) * sigma_x + mu_x). */
export function clampedCrossNorm(x: Tensor, control: Tensor, opts: { eps: number; clamp: number; scale: number | Tensor }): Tensor {
  const scaleTensor = typeof opts.scale === 'number' ? undefined : opts.scale;
  return runOp1(clampedCrossNormOp, [x, control, scaleTensor], { eps: opts.eps, clamp: opts.clamp, scale: typeof opts.scale === 'number' ? opts.scale : 0 });
}

/** An injection method using the op with bound `clamp`. */
export function clampedCrossNormMethod(clamp: number): InjectionMethod {
  return {
    name: `clamped_cross_norm(${clamp})`,
    inject: (x, control, scale, { variant }) => clampedCrossNorm(x, control, { eps: variant.eps, clamp, scale }),
  };
}

/** ControlNeXt-SD1.5 (release module, after the mid block) with the control clamped to +-2 sigma. */
export const sd15ClampedVariant: ControlNeXtVariant = {
  ...variants.sd15,
  name: 'sd15_clamped_2',
  description: 'SD1.5 release variant whose normalised control is clamped to [-2, 2] (research variant)',
  method: clampedCrossNormMethod(2),
};
